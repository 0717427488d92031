"""``ciyuan keys``: API keys, shown once at creation and stored only as hashes.

Keys for fleets carry a scope (model globs, APIs), an expiry, tags, and per-key rate-limit
numbers; ``rotate`` issues a replacement with the same settings and lets the old key work for
an overlap window, so clients can be redeployed without an outage.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final

import typer

from ciyuan import apikeys
from ciyuan.cli.context import cli_context, opened_store
from ciyuan.cli.output import JsonOption, console, emit, fail, table
from ciyuan.clock import US_PER_S, datetime_to_us, us_to_datetime
from ciyuan.errors import InvalidRequest
from ciyuan.keycache import publish_revocation
from ciyuan.metering.ports import ApiKeyRecord, KeyOptions

group = typer.Typer(help="Create, list, rotate and revoke API keys.", no_args_is_help=True)

APIS: Final = ("chat", "completions", "embeddings", "responses", "anthropic_messages")
TAGS_MAX: Final = 32
TAG_CHARS_MAX: Final = 128
_DURATION: Final = re.compile(r"(\d+)([smhdw])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def key_json(record: ApiKeyRecord) -> dict[str, Any]:
    def iso(us: int | None) -> str | None:
        return us_to_datetime(us).isoformat() if us is not None else None

    return {
        "id": record.id,
        "prefix": record.prefix,
        "account": record.account_name,
        "label": record.label,
        "created": iso(record.created_us),
        "revoked": iso(record.revoked_us),
        "expires": iso(record.expires_us),
        "models": list(record.models) if record.models is not None else None,
        "apis": list(record.apis) if record.apis is not None else None,
        "tags": dict(record.metadata),
        "rpm": record.rpm,
        "tpm": record.tpm,
        "concurrency": record.concurrency_max,
        "rotated_from": record.rotated_from_id,
    }


def parse_duration_s(text: str) -> int:
    """``90s``, ``30m``, ``1h``, ``2d``, ``1w`` or combinations (``1h30m``) → seconds."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise InvalidRequest(f"{text!r} is not a duration such as 90s, 30m, 1h or 2d")
    return sum(int(number) * _UNIT_S[unit] for number, unit in parts)


def parse_expiry_us(text: str) -> int:
    """A date (``2026-12-31``: the key works through that whole UTC day) or an ISO datetime
    with a zone (``2026-12-31T18:00:00Z``)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime_to_us(datetime(day.year, day.month, day.day, tzinfo=UTC)) + (
                int(timedelta(days=1).total_seconds()) * US_PER_S
            )
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a date (2026-12-31) or an ISO datetime") from None
    if moment.tzinfo is None:
        raise InvalidRequest(f"{text!r} has no time zone; add Z or +00:00")
    return datetime_to_us(moment)


def parse_tags(pairs: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or len(pair) > TAG_CHARS_MAX:
            raise InvalidRequest(f"tag {pair!r} is not NAME=VALUE (at most {TAG_CHARS_MAX} chars)")
        tags[name] = value
    if len(tags) > TAGS_MAX:
        raise InvalidRequest(f"at most {TAGS_MAX} tags per key")
    return tags


def key_options(
    models: list[str], apis: list[str], expires: str | None, tags: list[str],
    rpm: int | None, tpm: int | None, concurrency: int | None,
) -> KeyOptions:  # fmt: skip
    # Repeated options and comma lists both work: --apis chat,embeddings.
    models = [m.strip() for item in models for m in item.split(",") if m.strip()]
    apis = [a.strip() for item in apis for a in item.split(",") if a.strip()]
    unknown = sorted(set(apis) - set(APIS))
    if unknown:
        raise InvalidRequest(f"unknown API {unknown[0]!r}; choose from {', '.join(APIS)}")
    return KeyOptions(
        expires_us=parse_expiry_us(expires) if expires else None,
        models=tuple(models) if models else None,
        apis=tuple(dict.fromkeys(apis)) if apis else None,
        metadata=parse_tags(tags),
        rpm=rpm,
        tpm=tpm,
        concurrency_max=concurrency,
    )


@group.command("create")
def create(
    ctx: typer.Context,
    account: Annotated[str, typer.Option("--account", help="Account the key spends from.")],
    label: Annotated[
        str | None, typer.Option("--label", help="A note to recognise the key by.")
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option("--models", help="Allowed model glob, e.g. 'gpt-4o*' (repeatable)."),
    ] = None,
    apis: Annotated[
        list[str] | None,
        typer.Option("--apis", help=f"Allowed API (repeatable): {', '.join(APIS)}."),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="Last day (2026-12-31, UTC) or ISO datetime with zone."),
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", help="NAME=VALUE tag for reports (repeatable).")
    ] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", min=1, help="Requests per minute.")] = None,
    tpm: Annotated[
        int | None, typer.Option("--tpm", min=1, help="Model tokens per minute.")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", min=1, help="Requests in flight at once.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Create an API key. The key is printed once and cannot be shown again."""
    try:
        options = key_options(models or [], apis or [], expires, tags or [], rpm, tpm, concurrency)
    except InvalidRequest as error:
        fail(error, as_json=as_json)
    new = apikeys.generate()
    with opened_store(ctx, as_json=as_json) as store:
        owner = store.get_account(account)
        record = store.create_api_key(owner.id, new.prefix, new.hash_hex, label, options)
    if as_json:
        emit({"key": new.secret.reveal(), **key_json(record)}, as_json=True)
        return
    console.print(f"created API key [bold]{record.prefix}[/bold] for account {owner.name}")
    console.print("Store it now: it is shown only once.")
    print(new.secret.reveal())


@group.command("list")
def list_(
    ctx: typer.Context,
    account: Annotated[
        str | None, typer.Option("--account", help="Only this account's keys.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """List API keys by prefix with scopes, tags and expiry (the secret is never stored)."""
    with opened_store(ctx, as_json=as_json) as store:
        owner_id = store.get_account(account).id if account else None
        records = store.list_api_keys(owner_id)
    rows = [key_json(r) for r in records]
    emit(
        {"keys": rows},
        as_json=as_json,
        human=table(
            "API keys",
            ["Prefix", "Account", "Label", "Models", "APIs", "Tags", "Expires", "Revoked"],
            [
                [
                    r["prefix"],
                    r["account"],
                    r["label"],
                    ",".join(r["models"] or ["*"]),
                    ",".join(r["apis"] or ["*"]),
                    ",".join(f"{k}={v}" for k, v in r["tags"].items()),
                    r["expires"] or "",
                    r["revoked"] or "",
                ]
                for r in rows
            ],
        ),
    )


@group.command("rotate")
def rotate(
    ctx: typer.Context,
    prefix_or_id: Annotated[str, typer.Argument(help="The key's prefix (ck-…) or id (key_…).")],
    overlap: Annotated[
        str, typer.Option("--overlap", help="How long the old key keeps working: 1h, 30m, 2d.")
    ] = "1h",
    as_json: bool = JsonOption,
) -> None:
    """Issue a new key with the same account, scopes, tags and limits; the old key expires
    after the overlap. The new key is printed once."""
    try:
        overlap_s = parse_duration_s(overlap)
    except InvalidRequest as error:
        fail(error, as_json=as_json)
    new = apikeys.generate()
    with opened_store(ctx, as_json=as_json) as store:
        old, record = store.rotate_api_key(
            prefix_or_id, new.prefix, new.hash_hex, overlap_s=overlap_s
        )
    if as_json:
        emit({"key": new.secret.reveal(), **key_json(record), "old": key_json(old)}, as_json=True)
        return
    console.print(
        f"rotated [bold]{old.prefix}[/bold] → [bold]{record.prefix}[/bold]; the old key "
        f"expires at {key_json(old)['expires']}"
    )
    console.print("Store the new key now: it is shown only once.")
    print(new.secret.reveal())


@group.command("revoke")
def revoke(
    ctx: typer.Context,
    prefix_or_id: Annotated[str, typer.Argument(help="The key's prefix (ck-…) or id (key_…).")],
    as_json: bool = JsonOption,
) -> None:
    """Revoke an API key: refused at once by gateways sharing Redis, by all within the auth TTL."""
    with opened_store(ctx, as_json=as_json) as store:
        record = store.revoke_api_key(prefix_or_id)
    redis_url = cli_context(ctx).settings().redis
    if redis_url:
        publish_revocation(redis_url, record.prefix)
    emit(
        {"key": key_json(record)},
        as_json=as_json,
        human=f"revoked API key [bold]{record.prefix}[/bold]",
    )


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="keys")

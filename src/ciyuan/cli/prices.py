"""``ciyuan prices``: list the catalog, import price lists, set an operator price.

Operator prices live in a TOML prices file (``--file``, ``CIYUAN_PRICES_FILE``, default
``ciyuan-prices.toml`` in the working directory) layered over the shipped catalog. Every change
is a new version taking effect on a date that is today or later: a version dated in the past
would re-price requests that were already charged.
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any

import typer

from ciyuan.cli.output import JsonOption, emit, fail, table
from ciyuan.errors import CiyuanError
from ciyuan.pricing.catalog import Catalog, ModelPrice
from ciyuan.pricing.errors import PriceError
from ciyuan.pricing.imports import FORMATS, ImportFormat, read_prices
from ciyuan.pricing.model_price import RATE_NAMES, UNSET
from ciyuan.pricing.money import (
    Amount,
    MoneyError,
    nanos_per_token_to_per_million,
    per_million_to_nanos_per_token,
)
from ciyuan.pricing.operator_file import add_operator_prices, plan_operator_prices

group = typer.Typer(help="The price catalog: list, import and set prices.", no_args_is_help=True)

PricesFileOption = typer.Option(
    "--file",
    envvar="CIYUAN_PRICES_FILE",
    help="The operator prices file layered over the shipped catalog.",
)
DEFAULT_PRICES_FILE = Path("ciyuan-prices.toml")


def price_row(price: ModelPrice, catalog: Catalog) -> dict[str, Any]:
    """One price as JSON: every rate per million tokens, as exact decimal strings."""
    return {
        "model": price.model,
        "provider": price.provider,
        "effective_from": price.effective_from.isoformat(),
        "layer": "operator" if price in catalog.operator_prices else "shipped",
        "source": price.source,
        "per_million": {
            name: nanos_per_token_to_per_million(price.rate(name)) for name in RATE_NAMES
        },
        "call_fee": str(price.call_fee),
        "batch_ratio": None if price.batch_ratio is None else str(price.batch_ratio),
        "tiers": [
            {
                "above_input_tokens": tier.above_input_tokens,
                "per_million": {
                    name: nanos_per_token_to_per_million(tier.rate(name)) for name in RATE_NAMES
                },
            }
            for tier in price.tiers
        ],
        "aliases": list(price.aliases),
    }


@group.command("list")
def list_prices(
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    model: Annotated[str | None, typer.Option(help="Only models matching this glob.")] = None,
    at: Annotated[
        str | None, typer.Option(help="Prices in force on this date (YYYY-MM-DD).")
    ] = None,
    history: Annotated[
        bool, typer.Option(help="Every version, not just the one in force.")
    ] = False,
    prices_file: Annotated[Path, PricesFileOption] = DEFAULT_PRICES_FILE,
    as_json: bool = JsonOption,
) -> None:
    """List prices per million tokens, with their effective date and source."""
    try:
        catalog = Catalog.load(operator_file=prices_file)
        when = _moment(at) if at else None
    except CiyuanError as error:
        fail(error, as_json=as_json)
    if history:
        prices = [v for name in catalog.models() for v in catalog.versions(name)]
    else:
        prices = catalog.current(when)
    prices = [
        p
        for p in prices
        if (provider is None or p.provider == provider)
        and (model is None or fnmatch.fnmatchcase(p.model, model))
    ]
    rows = [price_row(p, catalog) for p in prices]
    human = table(
        "USD per million tokens",
        ["model", "provider", "from", "input", "cached", "output", "layer"],
        [
            (
                r["model"],
                r["provider"],
                r["effective_from"],
                r["per_million"]["input"],
                r["per_million"]["cache_read"],
                r["per_million"]["output"],
                r["layer"],
            )
            for r in rows
        ],
    )
    emit({"prices": rows, "count": len(rows)}, as_json=as_json, human=human)


@group.command("import")
def import_prices(
    source_file: Annotated[Path, typer.Argument(help="The file to import.", metavar="FILE")],
    format: Annotated[str, typer.Option("--format", help=f"One of: {', '.join(FORMATS)}.")],
    effective_from: Annotated[
        str | None, typer.Option("--from", help="Effective date (YYYY-MM-DD); default today.")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="Import only this provider.")] = None,
    model: Annotated[
        str | None, typer.Option(help="Import only models matching this glob.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Check and report; write nothing.")] = False,
    prices_file: Annotated[Path, PricesFileOption] = DEFAULT_PRICES_FILE,
    as_json: bool = JsonOption,
) -> None:
    """Import a LiteLLM, OpenRouter, TOML or CSV price list as new operator versions."""
    try:
        if format not in FORMATS:
            raise PriceError(f"--format must be one of {', '.join(FORMATS)}", param="format")
        start = _start_date(effective_from)
        try:
            text = source_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PriceError(f"cannot read {source_file}: {exc}") from exc
        imported = read_prices(
            text,
            format=_as_format(format),
            origin=source_file.name,
            effective_from=start,
            provider=provider,
            model_glob=model,
        )
        _refuse_past(imported.prices)
        catalog = Catalog.load(operator_file=prices_file)
        if dry_run:
            result = plan_operator_prices(catalog, imported.prices)
        else:
            result = add_operator_prices(prices_file, imported.prices, catalog=catalog)
    except CiyuanError as error:
        fail(error, as_json=as_json)
    data = {
        "file": str(prices_file),
        "dry_run": dry_run,
        "added": [p.model for p in result.added],
        "unchanged": list(result.unchanged),
        "skipped": list(imported.skipped),
    }
    verb = "would add" if dry_run else "added"
    emit(
        data,
        as_json=as_json,
        human=f"{verb} {len(result.added)} prices to {prices_file}; "
        f"{len(result.unchanged)} unchanged, {len(imported.skipped)} skipped",
    )


@group.command("set")
def set_price(
    model: Annotated[str, typer.Argument(help="Model name as clients send it.")],
    input: Annotated[str, typer.Option("--input", help="USD per million input tokens.")],
    output: Annotated[str, typer.Option("--output", help="USD per million output tokens.")],
    cache_read: Annotated[str | None, typer.Option(help="USD/M cached input (read).")] = None,
    cache_write_5m: Annotated[str | None, typer.Option(help="USD/M 5-minute cache write.")] = None,
    cache_write_1h: Annotated[str | None, typer.Option(help="USD/M 1-hour cache write.")] = None,
    reasoning: Annotated[str | None, typer.Option(help="USD/M reasoning output.")] = None,
    audio_input: Annotated[str | None, typer.Option(help="USD/M audio input.")] = None,
    audio_output: Annotated[str | None, typer.Option(help="USD/M audio output.")] = None,
    image_input: Annotated[str | None, typer.Option(help="USD/M image input.")] = None,
    image_output: Annotated[str | None, typer.Option(help="USD/M image output.")] = None,
    call_fee: Annotated[str, typer.Option(help="USD per call.")] = "0",
    provider: Annotated[str, typer.Option(help="Who serves the model.")] = "operator",
    source: Annotated[str, typer.Option(help="Why this price: a URL, a contract.")] = "operator",
    effective_from: Annotated[
        str | None, typer.Option("--from", help="Effective date (YYYY-MM-DD); default today.")
    ] = None,
    prices_file: Annotated[Path, PricesFileOption] = DEFAULT_PRICES_FILE,
    as_json: bool = JsonOption,
) -> None:
    """Set a model's price from a date on (a new version; earlier requests keep theirs)."""
    given = {
        "input": input,
        "output": output,
        "cache_read": cache_read,
        "cache_write_5m": cache_write_5m,
        "cache_write_1h": cache_write_1h,
        "reasoning": reasoning,
        "audio_input": audio_input,
        "audio_output": audio_output,
        "image_input": image_input,
        "image_output": image_output,
    }
    try:
        rates = {name: _rate(value, name) for name, value in given.items()}
        price = ModelPrice(
            model=model,
            provider=provider,
            effective_from=_start_date(effective_from),
            source=source,
            call_fee=_fee(call_fee),
            input=rates["input"],
            output=rates["output"],
            cache_read=rates["cache_read"],
            cache_write_5m=rates["cache_write_5m"],
            cache_write_1h=rates["cache_write_1h"],
            reasoning=rates["reasoning"],
            audio_input=rates["audio_input"],
            audio_output=rates["audio_output"],
            image_input=rates["image_input"],
            image_output=rates["image_output"],
        )
        _refuse_past([price])
        result = add_operator_prices(prices_file, [price])
    except CiyuanError as error:
        fail(error, as_json=as_json)
    changed = bool(result.added)
    emit(
        {"file": str(prices_file), "changed": changed, "price": price_row(price, result.catalog)},
        as_json=as_json,
        human=(
            f"{model}: ${input}/M input, ${output}/M output from "
            f"{price.effective_from.isoformat()} (written to {prices_file})"
            if changed
            else f"{model}: unchanged (that price is already in force)"
        ),
    )


def _rate(value: str | None, name: str) -> int:
    if value is None:
        return UNSET
    try:
        return per_million_to_nanos_per_token(value)
    except MoneyError as exc:
        raise PriceError(f"--{name.replace('_', '-')}: {exc}", param=name) from exc


def _fee(value: str) -> Amount:
    try:
        fee = Amount.parse(value)
    except MoneyError as exc:
        raise PriceError(f"--call-fee: {exc}", param="call_fee") from exc
    if fee.nanos < 0:
        raise PriceError("--call-fee must not be negative", param="call_fee")
    return fee


def _today() -> date:
    return datetime.now(UTC).date()


def _start_date(text: str | None) -> date:
    if text is None:
        return _today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PriceError(f"--from {text!r} is not a date (YYYY-MM-DD)", param="from") from None


def _refuse_past(prices: Any) -> None:
    today = _today()
    for price in prices:
        if price.effective_from < today:
            raise PriceError(
                f"{price.model}: effective date {price.effective_from.isoformat()} is in the "
                f"past; a price change may take effect today ({today.isoformat()}) or later",
                param="from",
            )


def _moment(text: str) -> datetime:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise PriceError(f"--at {text!r} is not a date (YYYY-MM-DD)", param="at") from None
    return datetime.combine(day, time(), tzinfo=UTC)


def _as_format(text: str) -> ImportFormat:
    assert text in FORMATS
    return text  # type: ignore[return-value]


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="prices")

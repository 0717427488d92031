"""``ciyuan export``: usage events as CloudEvents, to a file (JSON lines) or an HTTP endpoint.

Sending is batched (one ``application/cloudevents-batch+json`` POST per page) and safe to
repeat: each event's id is its request id, so a receiver that deduplicates (OpenMeter does)
counts every request once even when an export is re-run after a failure. A batch that fails
with a transient error (a 5xx, 429, or a network error) is retried with backoff; any other
failure stops the export, reporting how far it got.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any, Final

import httpx
import orjson
import typer

from ciyuan.cli.context import opened_store
from ciyuan.cli.output import JsonOption, emit, fail
from ciyuan.metering.ports import Store
from ciyuan.reports.cloudevents import BATCH_CONTENT_TYPE, DEFAULT_SOURCE, to_cloudevent
from ciyuan.reports.periods import PeriodError, parse_when

BATCH_SIZE_DEFAULT: Final = 500
SEND_ATTEMPTS_MAX: Final = 5
SEND_TIMEOUT_S: Final = 30.0
_TRANSIENT: Final = frozenset({429, 500, 502, 503, 504})


class ExportFailed(Exception):
    """A batch the receiver refused, or that kept failing: the message says which and why."""


def batches(
    store: Store, *, since_us: int | None, until_us: int | None, account_id: str | None,
    size: int, source: str,
) -> Iterator[list[dict[str, Any]]]:  # fmt: skip
    """CloudEvents in pages of ``size``, oldest first (keyset paging: memory stays flat)."""
    names = {a.id: a.name for a in store.list_accounts()}
    prefixes = {k.id: k.prefix for k in store.list_api_keys()}
    after: tuple[int, str] | None = None
    while True:
        page = store.usage_page(
            since_us=since_us, until_us=until_us, account_id=account_id, after=after, limit=size
        )
        if not page:
            return
        yield [
            to_cloudevent(e, account_name=names.get(e.account_id, e.account_id),
                          key_prefix=prefixes.get(e.api_key_id, e.api_key_id), source=source)
            for e in page
        ]  # fmt: skip
        after = (page[-1].created_us, page[-1].request_id)


def send(client: httpx.Client, url: str, batch: list[dict[str, Any]]) -> None:
    body = orjson.dumps(batch)
    for attempt in range(SEND_ATTEMPTS_MAX):
        try:
            response = client.post(url, content=body, headers={"content-type": BATCH_CONTENT_TYPE})
        except httpx.TransportError as error:
            problem = f"{type(error).__name__}: {error}"
        else:
            if response.is_success:
                return
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code not in _TRANSIENT:
                raise ExportFailed(f"the receiver refused a batch ({problem})")
        if attempt + 1 < SEND_ATTEMPTS_MAX:
            time.sleep(min(0.2 * 2**attempt, 5.0))
    raise ExportFailed(f"a batch failed {SEND_ATTEMPTS_MAX} times (last: {problem})")


def export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="cloudevents (the only format).")] = (
        "cloudevents"
    ),
    since: Annotated[str | None, typer.Option("--since", help="From (UTC), inclusive.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Up to (UTC), exclusive.")] = None,
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write JSON lines to this file.")
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="POST batches to this URL.")] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=1000, help="Events per POST.")
    ] = BATCH_SIZE_DEFAULT,
    source: Annotated[
        str, typer.Option("--source", help="The CloudEvents source of this gateway.")
    ] = DEFAULT_SOURCE,
    as_json: bool = JsonOption,
) -> None:
    """Export usage events as CloudEvents (OpenMeter's shape) to a file, stdout or a URL."""
    if fmt != "cloudevents":
        fail(f"--format must be cloudevents, not {fmt!r}", as_json=as_json)
    if output is not None and url is not None:
        fail("give --output or --url, not both", as_json=as_json)
    try:
        since_us = parse_when(since) if since else None
        until_us = parse_when(until) if until else None
    except PeriodError as error:
        fail(str(error), as_json=as_json)
    if url is None and output is None and as_json:
        fail("--json reports a summary: give --output or --url for the events", as_json=True)
    sent = 0
    with opened_store(ctx, as_json=as_json) as store:
        account_id = store.get_account(account).id if account else None
        pages = batches(store, since_us=since_us, until_us=until_us, account_id=account_id,
                        size=batch_size, source=source)  # fmt: skip
        try:
            if url is not None:
                with httpx.Client(timeout=SEND_TIMEOUT_S) as client:
                    for batch in pages:
                        send(client, url, batch)
                        sent += len(batch)
            else:
                with _opened(output) as sink:
                    for batch in pages:
                        sink.write(b"".join(orjson.dumps(e) + b"\n" for e in batch))
                        sent += len(batch)
        except ExportFailed as error:
            fail(f"{error}; {sent} events were sent before it", as_json=as_json)
    if output is None and url is None:
        return
    summary = {"exported": sent, "to": url or str(output), "format": fmt}
    emit(summary, as_json=as_json, human=f"exported {sent} usage events to {summary['to']}")


@contextmanager
def _opened(path: Path | None) -> Iterator[IO[bytes]]:
    """The output file, or stdout's bytes when there is none (closed only if opened here)."""
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    with path.open("wb") as file:
        yield file


def register(app: typer.Typer) -> None:
    app.command("export")(export)

"""The gateway's per-request shortcuts change how often work is done, never what comes out:
the coalescing transport, the relay's response, the memoised catalog lookup and metric
children."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from starlette.types import Message

from ciyuan.admin.metrics import Metrics
from ciyuan.gateway.limits import HeadWithBody
from ciyuan.gateway.streaming import Last, RelayResponse
from ciyuan.pricing.catalog import Catalog


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, pieces: tuple[bytes, ...]) -> None:
        self.writes.append(b"".join(pieces))

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def _wrapped() -> tuple[_Transport, HeadWithBody]:
    inner = _Transport()
    return inner, HeadWithBody(cast(asyncio.Transport, inner), asyncio.get_running_loop())


def test_a_head_goes_out_with_the_body_that_follows_it() -> None:
    async def run() -> list[bytes]:
        inner, transport = _wrapped()
        transport.hold_next = True
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert inner.writes == []
        transport.write(b"body")
        transport.write(b"more")
        await asyncio.sleep(0)
        return inner.writes

    assert asyncio.run(run()) == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]


def test_a_head_alone_goes_out_at_the_end_of_the_loop_turn() -> None:
    async def run() -> list[bytes]:
        inner, transport = _wrapped()
        transport.hold_next = True
        transport.write(b"head")
        await asyncio.sleep(0)
        flushed = list(inner.writes)
        transport.write(b"event")
        return [*flushed, *inner.writes[len(flushed) :]]

    assert asyncio.run(run()) == [b"head", b"event"]


def test_close_sends_a_held_head_first_and_other_calls_pass_through() -> None:
    async def run() -> tuple[list[bytes], bool, Any]:
        inner, transport = _wrapped()
        transport.hold_next = True
        transport.write(b"head")
        transport.close()
        return inner.writes, inner.closed, transport.get_extra_info("peername")

    assert asyncio.run(run()) == ([b"head"], True, "info:peername")


async def _chunks(*pieces: bytes) -> Any:
    for piece in pieces:
        yield piece


def _scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "GET"}


def _serve(response: RelayResponse, receive: Any) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        await response(_scope(), receive, send)

    asyncio.run(run())
    return sent


async def _never() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def test_the_last_chunk_ends_the_response_in_one_message() -> None:
    sent = _serve(RelayResponse(_chunks(b"a", Last(b"b"))), _never)
    bodies = [(m["body"], m["more_body"]) for m in sent if m["type"] == "http.response.body"]
    assert bodies == [(b"a", True), (b"b", False)]
    assert type(bodies[-1][0]) is bytes


def test_without_a_last_chunk_the_end_is_an_empty_message() -> None:
    sent = _serve(RelayResponse(_chunks(b"a")), _never)
    bodies = [(m["body"], m["more_body"]) for m in sent if m["type"] == "http.response.body"]
    assert bodies == [(b"a", True), (b"", False)]


def test_a_client_going_away_cancels_the_stream_and_ends_the_response_quietly() -> None:
    closed: list[str] = []

    async def endless() -> Any:
        try:
            yield b"first"
            await asyncio.Event().wait()
            yield b"never"
        finally:
            closed.append("generator closed")

    async def disconnect() -> Message:
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    sent = _serve(RelayResponse(endless()), disconnect)
    assert [m.get("body") for m in sent if m["type"] == "http.response.body"] == [b"first"]
    assert closed == ["generator closed"]


def test_another_cancellation_still_propagates() -> None:
    async def run() -> bool:
        async def slow() -> Any:
            await asyncio.Event().wait()
            yield b""

        async def send(message: Message) -> None:
            return None

        task = asyncio.ensure_future(RelayResponse(slow())(_scope(), _never, send))
        await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(run())


def test_catalog_lookups_are_remembered_with_the_same_answer() -> None:
    catalog = Catalog.load_default()
    at = datetime(2025, 11, 1, tzinfo=UTC)
    first = catalog.price_for("openai/gpt-4o-mini-2024-07-18", at)
    assert first is not None
    assert catalog.price_for("openai/gpt-4o-mini-2024-07-18", at) is first
    assert Catalog.load_default().price_for("openai/gpt-4o-mini-2024-07-18", at) == first
    assert catalog.price_for("no-such-model", at) is None
    assert catalog.price_for("no-such-model", at) is None


def test_labelled_children_are_the_metric_own_children() -> None:
    metrics = Metrics()
    child = metrics.labelled(metrics.latency, "chat")
    assert child is metrics.labelled(metrics.latency, "chat")
    child.observe(0.5)
    assert metrics.latency.labels("chat") is child
    assert b'ciyuan_request_duration_seconds_count{api="chat"} 1.0' in metrics.render()

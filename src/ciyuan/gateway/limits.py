"""Limits on what one request may ask for, with named defaults from settings, and the HTTP
protocol that enforces the ones uvicorn does not (a bounded, timed request head)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ciyuan.errors import InvalidRequest
from ciyuan.gateway.wire_errors import error_for_path


@dataclass(frozen=True, slots=True)
class RequestLimits:
    body_bytes_max: int
    body_timeout_s: float
    header_bytes_max: int
    output_tokens_max: int
    messages_max: int

    def check(self, body: dict[str, Any], output_limit: int | None) -> None:
        if output_limit is not None and output_limit > self.output_tokens_max:
            raise InvalidRequest(
                f"max tokens of {output_limit} exceeds this gateway's limit of "
                f"{self.output_tokens_max}",
                param="max_tokens",
            )
        for field in ("messages", "input"):
            items = body.get(field)
            if isinstance(items, list) and len(items) > self.messages_max:
                raise InvalidRequest(
                    f"{field} has {len(items)} items; the limit is {self.messages_max}", param=field
                )


HEAD_SLACK_BYTES: Final = 8 * 1024
"""Room for the request line and the header names, colons and CRLFs around ``header_bytes_max``
(which counts names and values): past that the head is refused before it is buffered."""


class HeadWithBody:
    """A transport that sends a response's head together with what follows it.

    uvicorn writes the status line and headers as soon as the app starts its response, then
    the body in a second write: two send syscalls per plain response, each of which also wakes
    the peer on loopback (~15% of the gateway's CPU in bench/gateway's profile). Armed for each
    request, this holds the next write (the head) and sends it with the write after it in one
    ``writelines``; a head with nothing after it in the same loop turn (a stream's, whose first
    event is still upstream) goes out at the end of that turn. Later writes pass straight through.
    """

    __slots__ = ("_held", "_loop", "_transport", "hold_next")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self.hold_next = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif self.hold_next:
            self.hold_next = False
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self.flush()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_http_protocol(limits: RequestLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the limits it lacks, for ``uvicorn.Config(http=…)``.

    uvicorn arms no timer until a first response is sent and cancels its keep-alive timer on
    every byte received, and it buffers a request head of any size: a client sending headers
    one byte at a time, or megabytes of one header, held a connection (and that memory)
    forever. This protocol bounds a request head to ``header_bytes_max`` plus slack and to
    ``body_timeout_s`` from its first byte (or from the connection when nothing comes), and
    closes a connection whose request body is still unfinished ``body_timeout_s`` after its
    response (one answered without reading the body, or refused for its size or slowness).
    """
    head_bytes_max = limits.header_bytes_max + HEAD_SLACK_BYTES
    timeout_s = limits.body_timeout_s

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_bytes = 0
            self._in_head = True
            self._refused = False
            self._head_timer: asyncio.TimerHandle | None = None
            self._linger_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # uvloop's transports are not asyncio.Transport subclasses, only alike.
            self._coalescing = HeadWithBody(cast(asyncio.Transport, transport), self.loop)
            super().connection_made(self._coalescing)  # type: ignore[arg-type]
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            for timer in (self._head_timer, self._linger_timer):
                if timer is not None:
                    timer.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # Still in the head after parsing what came: body bytes in the same read do not
            # count, since on_headers_complete ended the head.
            if self._in_head and self._head_bytes > head_bytes_max:
                self._refuse_head()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            self._head_bytes = 0
            if self._head_timer is None:
                self._arm_head_timer()  # the next request on a kept-alive connection

        def on_headers_complete(self) -> None:
            self._in_head = False
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().on_headers_complete()
            self._coalescing.hold_next = True

        def on_message_complete(self) -> None:
            if self._linger_timer is not None:
                self._linger_timer.cancel()
                self._linger_timer = None
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.cycle is not None and self.cycle.more_body and self._linger_timer is None:
                self._linger_timer = self.loop.call_later(timeout_s, self._close)

        def _arm_head_timer(self) -> None:
            self._head_timer = self.loop.call_later(timeout_s, self._close)

        def _close(self) -> None:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()

        def _refuse_head(self) -> None:
            self._refused = True
            error = InvalidRequest(f"request headers exceed the limit of {head_bytes_max} bytes")
            path = getattr(self, "url", b"").decode("latin-1")
            response = error_for_path(path, error)
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/json\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(response.body), response.body)
            )
            self.transport.close()

    return GuardedHttpToolsProtocol

"""The demo upstream as a raw ASGI app: routing, body limits, auth, and every fault's side effect.

A raw ASGI callable rather than Starlette routes because faults need control a framework hides:
``cut:N`` returns without finishing the response, which makes the server drop the connection
mid-body exactly as a crashed provider would, and benchmarks want as little overhead here as
possible. Handlers (``openai_wire`` and friends) are pure; this module does all the I/O.

``reset`` goes one step further than ASGI allows: it reaches the server's transport through the
``receive`` callable (uvicorn's request cycle, which ``ciyuan demo-upstream`` runs) and aborts it
with ``SO_LINGER`` 0, so the peer gets a TCP RST. Under a server without that shape it degrades
to a ``cut`` (the connection closed mid-message), still a broken response.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import Any, Final

import anyio
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from ciyuan.errors import InvalidRequest

from . import (
    anthropic_wire,
    catalog,
    completions_wire,
    embeddings,
    faults,
    openai_wire,
    responses_wire,
    usage,
)
from .exchange import DemoRequest, JsonReply, StreamReply, new_id
from .faults import Directives
from .usage import BIGNUM_JSON, BIGNUM_SENTINEL
from .wire_errors import Dialect, WireError, of_status

BODY_BYTES_MAX: Final = 8 * 1024 * 1024
WARM_MODELS: Final = ("gpt-4o", "gpt-3.5-turbo", "claude-sonnet-5-5")
"""Counted once at startup so the first request does not pay for loading the encodings."""

Handler = Callable[[DemoRequest], JsonReply | StreamReply]
ROUTES: Final[dict[str, dict[str, Handler]]] = {
    "/v1/chat/completions": {"POST": openai_wire.chat},
    "/v1/completions": {"POST": completions_wire.completions},
    "/v1/embeddings": {"POST": embeddings.embeddings},
    "/v1/responses": {"POST": responses_wire.create},
    "/v1/models": {"GET": catalog.models},
    "/v1/messages": {"POST": anthropic_wire.messages},
    "/v1/messages/count_tokens": {"POST": anthropic_wire.count_tokens},
}
JSON_TYPE: Final = (b"content-type", b"application/json")
SSE_HEADERS: Final = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
)
_BIGNUM_QUOTED: Final = b'"' + BIGNUM_SENTINEL.encode() + b'"'
HUGE_PIECE_BYTES: Final = 1024 * 1024
"""Padding goes out in writes of this size, as a real server's would."""


class ClientGone(Exception):
    """The client disconnected before the request body arrived in full."""


def _route(method: str, path: str) -> Handler:
    methods = ROUTES.get(path)
    if methods is None and path.startswith("/v1/models/"):
        methods = ROUTES["/v1/models"]
    if methods is None:
        raise WireError(404, f"Invalid URL ({method} {path})", None, "unknown_url")
    handler = methods.get(method)
    if handler is None:
        raise WireError(405, f"Method {method} not allowed for {path}")
    return handler


def _api_key(headers: dict[str, str]) -> str | None:
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return headers.get("x-api-key")


def _check_key(headers: dict[str, str], directives: Directives, dialect: Dialect) -> None:
    """Only with ``x-demo-expect-key``; the key itself never appears in the reply or anywhere."""
    if directives.expect_key is None or _api_key(headers) == directives.expect_key:
        return
    message = "invalid x-api-key" if dialect == "anthropic" else "Incorrect API key provided."
    raise WireError(401, message, None, "invalid_api_key")


async def _read_body(headers: dict[str, str], receive: Receive) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > BODY_BYTES_MAX:
        raise WireError(413, f"Request body exceeds the limit of {BODY_BYTES_MAX} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > BODY_BYTES_MAX:
            raise WireError(413, f"Request body exceeds the limit of {BODY_BYTES_MAX} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse_json(raw: bytes, dialect: Dialect) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        if dialect == "anthropic":
            raise WireError(
                400, "There was an error parsing the body of your request: expected a JSON object."
            )
        raise WireError(
            400, "We could not parse the JSON body of your request. The API expects a JSON object."
        )
    return body


async def _abort(receive: Receive) -> None:
    """Abort the connection with a TCP RST (see the module docstring), then wait until the
    server has noticed, so it does not try to answer on a dead connection."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        return  # not uvicorn: returning unfinished closes the connection instead
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    with anyio.move_on_after(5):
        while (await receive())["type"] != "http.disconnect":
            pass


def _spliced(payload: bytes, directives: Directives) -> bytes:
    """``usage:bignum``: a count no JSON library of 64-bit integers can write or read back."""
    if directives.usage_fault == "bignum":
        return payload.replace(_BIGNUM_QUOTED, BIGNUM_JSON)
    return payload


def _broken_event(reply: StreamReply, kind: str) -> bytes:
    """What ``malformed:KIND`` injects: in the stream's own event naming, when it names them."""
    head = b""
    if reply.broken.startswith(b"event:"):
        head = reply.broken.split(b"\n", 1)[0] + b"\n"
    if kind == "no-data":
        return (head or b"event: message\n") + b"\n"
    if kind == "binary":
        return head + b"data: \xff\xfe\x00 not utf-8 \xc3\x28\n\n"
    return reply.broken


async def _pause(receive: Receive, delay_s: float) -> bool:
    """Wait ``delay_s`` unless the client leaves first; True when it is still connected.

    Only called once the body has been read, so the only message ``receive`` can yield is
    ``http.disconnect``; watching for it lets a 30 s ``timeout`` fault end when the client gives up.
    """
    with anyio.move_on_after(delay_s):
        await receive()
        return False
    return True


class DemoUpstream:
    """ASGI entry point; stateless apart from the encodings cache warmed at startup."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for model in WARM_MODELS:
                    usage.text_tokens(model, "warm")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        anthropic = path.startswith("/v1/messages") or "anthropic-version" in headers
        dialect: Dialect = "anthropic" if anthropic else "openai"
        request_id = new_id("req_")
        id_header = (b"request-id" if anthropic else b"x-request-id", request_id.encode())
        directives = faults.NONE
        try:
            if path == "/healthz":
                await _send_json(send, receive, JsonReply({"status": "ok"}), id_header)
                return
            directives = faults.parse(headers)
            handler = _route(method, path)
            raw = await _read_body(headers, receive) if method == "POST" else b""
            _check_key(headers, directives, dialect)
            body = _parse_json(raw, dialect) if method == "POST" else {}
            if directives.delay_ms and not await _pause(receive, directives.delay_ms / 1000):
                return
            if directives.status is not None:
                raise of_status(directives.status)
            if directives.reset_before:
                await _abort(receive)
                return
            request = DemoRequest(
                method, path, headers, body, directives, request_id, int(time.time())
            )
            reply = handler(request)
        except faults.DirectiveError as exc:
            reply = JsonReply(WireError(400, str(exc)).body(dialect, request_id), 400)
        except WireError as exc:
            extra: tuple[tuple[bytes, bytes], ...] = ()
            if exc.status in (429, 503, 529):
                extra = ((b"retry-after", str(directives.retry_after_s).encode()),)
            reply = JsonReply(exc.body(dialect, request_id), exc.status, extra)
        except ClientGone:
            return
        except InvalidRequest as exc:
            # ciyuan.tokens rejects malformed messages while counting the prompt.
            reply = JsonReply(WireError(400, exc.message, exc.param).body(dialect, request_id), 400)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # Input shaped unlike anything the handlers expect is the caller's mistake, not ours.
            message = f"Invalid request body ({type(exc).__name__}: {exc})."
            reply = JsonReply(WireError(400, message).body(dialect, request_id), 400)
        if isinstance(reply, StreamReply):
            await _send_stream(send, receive, reply, directives, id_header)
        else:
            await _send_json(send, receive, reply, id_header, directives)


async def _send_pieces(send: Send, payload: bytes, *, last: bool) -> None:
    """``payload`` in writes of at most ``HUGE_PIECE_BYTES`` (one for a normal reply)."""
    for start in range(0, max(len(payload), 1), HUGE_PIECE_BYTES):
        end = start + HUGE_PIECE_BYTES
        more = not last or end < len(payload)
        await send({"type": "http.response.body", "body": payload[start:end], "more_body": more})


async def _send_json(
    send: Send,
    receive: Receive,
    reply: JsonReply,
    id_header: tuple[bytes, bytes],
    directives: Directives = faults.NONE,
) -> None:
    body = reply.body
    faulty = reply.status == 200
    if faulty and directives.huge_bytes and isinstance(body, dict):
        body = {**body, "x_demo_padding": "x" * directives.huge_bytes}
    payload = _spliced(orjson.dumps(body), directives)
    if faulty and directives.truncate_at is not None:
        payload = payload[: directives.truncate_at]
    if faulty and directives.malformed:
        payload = payload[: len(payload) // 2].ljust(len(payload))
    headers = [
        JSON_TYPE,
        (b"content-length", str(len(payload)).encode()),
        id_header,
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    if directives.cut_after_chunks is not None or directives.reset_after_chunks is not None:
        # Half a body then nothing: the server closes the connection when we return unfinished.
        await send(
            {"type": "http.response.body", "body": payload[: len(payload) // 2], "more_body": True}
        )
        if directives.reset_after_chunks is not None:
            await _abort(receive)
        return
    await _send_pieces(send, payload, last=True)


def _stream_stop(directives: Directives) -> int | None:
    """After how many content frames a faulty stream breaks off, if it does."""
    for after in (
        directives.cut_after_chunks,
        directives.reset_after_chunks,
        directives.truncate_at,
        directives.stall_after_chunks,
    ):
        if after is not None:
            return after
    return None


async def _break_off(send: Send, receive: Receive, directives: Directives, tail: bytes) -> None:
    """End a stream the way its fault says; ``cut`` just returns unfinished."""
    if directives.reset_after_chunks is not None:
        await _abort(receive)
    elif directives.truncate_at is not None:
        await send({"type": "http.response.body", "body": tail})
    elif directives.stall_after_chunks is not None:
        await _pause(receive, faults.DELAY_MS_MAX / 1000)


async def _send_stream(
    send: Send,
    receive: Receive,
    reply: StreamReply,
    directives: Directives,
    id_header: tuple[bytes, bytes],
) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, id_header]})
    stop = _stream_stop(directives)
    drip_s = directives.drip_ms / 1000
    sent_content = 0
    extras_pending = directives.malformed or directives.huge_bytes > 0
    tail = b""
    """With ``crlf``: the previous event's final LF, held back for the next write."""
    for frame in reply.frames:
        if stop is not None and sent_content >= stop and (frame.content or sent_content):
            await _break_off(send, receive, directives, tail)
            return
        if drip_s and not await _pause(receive, drip_s):
            return
        data = _spliced(frame.data, directives)
        if directives.crlf:
            data = tail + data.replace(b"\n", b"\r\n")
            data, tail = data[:-1], data[-1:]
        await send({"type": "http.response.body", "body": data, "more_body": True})
        sent_content += frame.content
        if extras_pending and frame.content:
            extras_pending = False
            if directives.malformed:
                broken = tail + _broken_event(reply, directives.malformed_kind)
                await send({"type": "http.response.body", "body": broken, "more_body": True})
                tail = b""
            if directives.huge_bytes:
                await _send_pieces(send, tail + _padding_event(reply, directives), last=False)
                tail = b""
    await send({"type": "http.response.body", "body": tail})


def _padding_event(reply: StreamReply, directives: Directives) -> bytes:
    """One SSE event of ``huge_bytes`` that no client acts on: a ``ping`` where events are named."""
    head = b"event: ping\n" if reply.broken.startswith(b"event:") else b""
    head += b'data: {"type": "ping", "x_demo_padding": "'
    return head + b"x" * max(directives.huge_bytes - len(head) - 4, 0) + b'"}\n\n'


def create_app() -> ASGIApp:
    """The demo upstream; serve it with any ASGI server (``ciyuan demo-upstream`` uses uvicorn)."""
    return DemoUpstream()

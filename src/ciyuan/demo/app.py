"""The demo upstream as a raw ASGI app: routing, body limits, auth, and every fault's side effect.

A raw ASGI callable rather than Starlette routes because faults need control a framework hides:
``cut:N`` returns without finishing the response, which makes the server drop the connection
mid-body exactly as a crashed provider would, and benchmarks want as little overhead here as
possible. Handlers (``openai_wire`` and friends) are pure; this module does all the I/O.
"""

from __future__ import annotations

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
                await _send_json(send, JsonReply({"status": "ok"}), id_header)
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
            await _send_json(send, reply, id_header, directives)


async def _send_json(
    send: Send,
    reply: JsonReply,
    id_header: tuple[bytes, bytes],
    directives: Directives = faults.NONE,
) -> None:
    payload = orjson.dumps(reply.body)
    headers = [
        JSON_TYPE,
        (b"content-length", str(len(payload)).encode()),
        id_header,
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    if directives.cut_after_chunks is not None:
        # Half a body then nothing: the server closes the connection when we return unfinished.
        await send(
            {"type": "http.response.body", "body": payload[: len(payload) // 2], "more_body": True}
        )
        return
    if directives.malformed and reply.status == 200:
        payload = payload[: len(payload) // 2].ljust(len(payload))
    await send({"type": "http.response.body", "body": payload})


async def _send_stream(
    send: Send,
    receive: Receive,
    reply: StreamReply,
    directives: Directives,
    id_header: tuple[bytes, bytes],
) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, id_header]})
    cut = directives.cut_after_chunks
    drip_s = directives.drip_ms / 1000
    sent_content = 0
    broken_pending = directives.malformed
    for frame in reply.frames:
        if cut is not None and sent_content >= cut and (frame.content or sent_content):
            return
        if drip_s and not await _pause(receive, drip_s):
            return
        await send({"type": "http.response.body", "body": frame.data, "more_body": True})
        sent_content += frame.content
        if broken_pending and frame.content:
            await send({"type": "http.response.body", "body": reply.broken, "more_body": True})
            broken_pending = False
    await send({"type": "http.response.body", "body": b""})


def create_app() -> ASGIApp:
    """The demo upstream; serve it with any ASGI server (``ciyuan demo-upstream`` uses uvicorn)."""
    return DemoUpstream()

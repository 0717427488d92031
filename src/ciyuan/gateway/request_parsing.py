"""Reading what a client sent: the API key, a size-limited body, and its JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request

from ciyuan.errors import InvalidRequest, PayloadTooLarge


def api_key_of(request: Request) -> str | None:
    """The key from ``Authorization: Bearer …`` or ``x-api-key`` (Anthropic's header)."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


async def read_body(request: Request, body_bytes_max: int, timeout_s: float) -> bytes:
    """The request body, refusing one too large or too slow to arrive (a slow-loris client)."""
    try:
        # asyncio's own timeout, not anyio's fail_after: its cancel scope (and the sniffio
        # lookup behind it) cost ~6% of a metered request's CPU, and the app runs on asyncio.
        async with asyncio.timeout(timeout_s):
            return await _read_body(request, body_bytes_max)
    except TimeoutError:
        raise InvalidRequest(f"the request body did not arrive within {timeout_s:g} s") from None


async def _read_body(request: Request, body_bytes_max: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > body_bytes_max:
        raise PayloadTooLarge(f"request body exceeds the limit of {body_bytes_max} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > body_bytes_max:
            raise PayloadTooLarge(f"request body exceeds the limit of {body_bytes_max} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return value


def required_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("you must provide a model parameter", param="model")
    if len(model) > 256:
        raise InvalidRequest("model name is longer than 256 characters", param="model")
    return model


def optional_positive_int(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if type(value) is not int or value < 1:
            raise InvalidRequest(f"{name} must be a positive integer", param=name)
        return value
    return None

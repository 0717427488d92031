"""One table from operating-error codes to HTTP statuses and each provider's error body.

Route handlers never build error JSON: they raise a ``CiyuanError`` and the app's exception
handler renders it here, in OpenAI's shape on OpenAI routes and Anthropic's on Anthropic routes,
so the official SDKs raise their own typed exceptions (``openai.AuthenticationError`` …).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import orjson
from starlette.responses import Response

from ciyuan.errors import CiyuanError, RateLimited


@dataclass(frozen=True, slots=True)
class WireError:
    status: int
    openai_type: str
    anthropic_type: str


WIRE_ERRORS: Final[dict[str, WireError]] = {
    "invalid_request": WireError(400, "invalid_request_error", "invalid_request_error"),
    "payload_too_large": WireError(413, "invalid_request_error", "request_too_large"),
    "invalid_api_key": WireError(401, "invalid_request_error", "authentication_error"),
    "permission_denied": WireError(403, "permission_error", "permission_error"),
    "not_found": WireError(404, "invalid_request_error", "not_found_error"),
    "unknown_model": WireError(404, "invalid_request_error", "not_found_error"),
    "conflict": WireError(409, "invalid_request_error", "invalid_request_error"),
    "insufficient_credit": WireError(402, "insufficient_quota", "billing_error"),
    "rate_limited": WireError(429, "rate_limit_error", "rate_limit_error"),
    "upstream_error": WireError(502, "api_error", "api_error"),
    "upstream_timeout": WireError(504, "api_error", "timeout_error"),
    "unavailable": WireError(503, "api_error", "overloaded_error"),
    "internal_error": WireError(500, "api_error", "api_error"),
}

# The code OpenAI's own API puts in error.code for these cases.
_OPENAI_CODES: Final = {"unknown_model": "model_not_found", "rate_limited": "rate_limit_exceeded"}


def wire_of(error: CiyuanError) -> WireError:
    """The row for an error's code, or for the nearest ancestor class that has one: a new
    subclass (``budget_exceeded`` under ``insufficient_credit``) answers like its parent."""
    for cls in type(error).__mro__:
        code = getattr(cls, "code", None)
        if code in WIRE_ERRORS:
            return WIRE_ERRORS[code]
    return WIRE_ERRORS["internal_error"]


def status_of(error: CiyuanError) -> int:
    return wire_of(error).status


def openai_error_object(error: CiyuanError) -> dict[str, Any]:
    """OpenAI's ``error`` object: the body's ``error`` field, and a stream's error chunk's."""
    return {
        "message": error.message,
        "type": wire_of(error).openai_type,
        "param": getattr(error, "param", None),
        "code": _OPENAI_CODES.get(error.code, error.code),
    }


def anthropic_error_body(error: CiyuanError) -> dict[str, Any]:
    """Anthropic's error body: a plain answer's, and the data of a stream's ``error`` event."""
    return {
        "type": "error",
        "error": {"type": wire_of(error).anthropic_type, "message": error.message},
    }


def openai_error(error: CiyuanError, *, headers: dict[str, str] | None = None) -> Response:
    body = {"error": openai_error_object(error)}
    return Response(
        orjson.dumps(body), status_of(error), _headers(error, headers), "application/json"
    )


def anthropic_error(error: CiyuanError, *, headers: dict[str, str] | None = None) -> Response:
    body = anthropic_error_body(error)
    return Response(
        orjson.dumps(body), status_of(error), _headers(error, headers), "application/json"
    )


def error_for_path(
    path: str, error: CiyuanError, *, headers: dict[str, str] | None = None
) -> Response:
    """``error`` in the dialect of the route it answers: Anthropic's under ``/v1/messages``,
    OpenAI's everywhere else (what a client pointed at that path would parse)."""
    render = anthropic_error if path.startswith("/v1/messages") else openai_error
    return render(error, headers=headers)


def _headers(error: CiyuanError, extra: dict[str, str] | None) -> dict[str, str]:
    """Defaults from the error, overridden by ``extra``: a rate-limit refusal brings its own
    exact ``retry-after``/``retry-after-ms``, or ``x-should-retry: false`` when no wait helps."""
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers["retry-after"] = str(max(1, math.ceil(error.retry_after_s)))
    if error.transient:
        headers["x-should-retry"] = "true"
    headers.update(extra or {})
    return headers

"""Error bodies in each provider's own format, with the status codes the real APIs use.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``.
Anthropic: ``{"type": "error", "error": {"type", "message"}, "request_id"}``.
The SDKs map the status code to their exception class, so the status matters most.
"""

from __future__ import annotations

from typing import Any, Final, Literal

Dialect = Literal["openai", "anthropic"]

_OPENAI_TYPES: Final = {
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", None),
    504: ("server_error", None),
}
_ANTHROPIC_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
DEFAULT_MESSAGES: Final = {
    401: "Incorrect API key provided.",
    404: "The requested resource does not exist.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Rate limit reached for requests. Please try again later.",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The engine is currently overloaded, please try again later.",
    529: "Overloaded",
}


class WireError(Exception):
    """An error reply; raised anywhere in a handler and rendered by the app."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self, dialect: Dialect, request_id: str) -> dict[str, Any]:
        if dialect == "anthropic":
            kind = _ANTHROPIC_TYPES.get(self.status)
            if kind is None:
                kind = "api_error" if self.status >= 500 else "invalid_request_error"
            return {
                "type": "error",
                "error": {"type": kind, "message": self.message},
                "request_id": request_id,
            }
        kind_code = _OPENAI_TYPES.get(self.status)
        if kind_code is None:
            kind_code = ("server_error" if self.status >= 500 else "invalid_request_error", None)
        kind, code = kind_code
        return {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code if self.code is not None else code,
            }
        }


def of_status(status: int) -> WireError:
    """The error a real provider sends for ``status`` when nothing more specific applies."""
    return WireError(status, DEFAULT_MESSAGES.get(status, f"Simulated error with status {status}."))


def missing(param: str) -> WireError:
    return WireError(
        400, f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    )


def invalid(param: str, message: str) -> WireError:
    return WireError(400, message, param, "invalid_value")

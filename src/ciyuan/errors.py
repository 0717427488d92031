"""Operating errors: the expected failures a caller or operator must handle.

Programmer errors are ``assert`` statements, never these. Every operating error has a stable
``code`` (it appears on the wire and in usage events) and a ``transient`` flag that says whether
retrying the same request can succeed. ``gateway/wire_errors.py`` maps each code to an HTTP
status and to the OpenAI and Anthropic error bodies; nothing else builds error JSON.

    CiyuanError
    ├── InvalidRequest            invalid_request        the body or a parameter is malformed
    │   └── PayloadTooLarge       payload_too_large      a size limit was exceeded
    ├── AuthenticationFailed      invalid_api_key        unknown, malformed, revoked or expired key
    ├── PermissionDenied          permission_denied      the key may not use this model or API
    ├── NotFound                  not_found              unknown account, key, receipt …
    │   └── UnknownModel          unknown_model          no route or no price for the model
    ├── Conflict                  conflict               idempotency key reused with another body
    ├── InsufficientCredit        insufficient_credit    the balance cannot cover the reservation
    │   └── BudgetExceeded        budget_exceeded        a key's or account's spend cap is reached
    ├── RateLimited               rate_limited           (transient) a rate or concurrency limit
    ├── UpstreamError             upstream_error         (transient) the provider failed
    │   └── UpstreamTimeout       upstream_timeout       (transient) the provider did not answer
    └── Unavailable               unavailable            (transient) the database or cache is down

Messages name the field and the limit; they never contain a key, a prompt or another
account's data.
"""

from __future__ import annotations


class CiyuanError(Exception):
    """Base of every operating error."""

    code: str = "internal_error"
    transient: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(CiyuanError):
    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"


class AuthenticationFailed(CiyuanError):
    code = "invalid_api_key"


class PermissionDenied(CiyuanError):
    code = "permission_denied"


class NotFound(CiyuanError):
    code = "not_found"


class UnknownModel(NotFound):
    code = "unknown_model"


class Conflict(CiyuanError):
    code = "conflict"


class InsufficientCredit(CiyuanError):
    code = "insufficient_credit"


class BudgetExceeded(InsufficientCredit):
    """A budget (a spend cap per period) refused the reservation, though credit may remain.

    Not transient: retrying does not help before the period resets, which the message states.
    """

    code = "budget_exceeded"


class RateLimited(CiyuanError):
    code = "rate_limited"
    transient = True

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UpstreamError(CiyuanError):
    code = "upstream_error"
    transient = True

    def __init__(
        self, message: str, *, status: int | None = None, fallback_safe: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.fallback_safe = fallback_safe
        """Nothing reached the provider (or it refused before working): another deployment may
        be tried under the same reservation."""


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"


class Unavailable(CiyuanError):
    code = "unavailable"
    transient = True

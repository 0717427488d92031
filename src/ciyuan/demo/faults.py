"""The ``x-demo-*`` request headers: what a test asks the demo upstream to do to one request.

Each request carries its own directives, so concurrent tests never share state and the demo
upstream stays stateless. Headers are parsed once, up front; a malformed directive is a 400 so a
typo in a test fails loudly instead of silently testing the happy path.

- ``x-demo-fault``: comma-separated list of ``timeout``, ``status:N``, ``cut:N``, ``no-usage``,
  ``drip:MS``, ``malformed``.
- ``x-demo-delay-ms``: delay before the first byte (``timeout`` without it waits 30 s).
- ``x-demo-retry-after``: seconds sent in ``retry-after`` with ``status:429``/``503`` (default 1).
- ``x-demo-cached-tokens``: that many prompt tokens are reported as read from the cache.
- ``x-demo-cache-creation-tokens``: (Anthropic) that many prompt tokens are reported as written.
- ``x-demo-reasoning-tokens``: that many hidden reasoning tokens are added to the output.
- ``x-demo-expect-key``: 401 unless the request's API key equals this value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

TIMEOUT_DELAY_MS_DEFAULT: Final = 30_000
DELAY_MS_MAX: Final = 600_000
"""Even a typo'd delay must end: ten minutes is longer than any client timeout under test."""


class DirectiveError(ValueError):
    """A ``x-demo-*`` header that cannot be understood."""


@dataclass(frozen=True, slots=True)
class Directives:
    delay_ms: int = 0
    status: int | None = None
    cut_after_chunks: int | None = None
    drip_ms: int = 0
    no_usage: bool = False
    malformed: bool = False
    retry_after_s: int = 1
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    expect_key: str | None = None


NONE: Final = Directives()


def _non_negative(name: str, raw: str, maximum: int = 10**9) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise DirectiveError(f"{name} must be an integer, got {raw!r}") from None
    if not 0 <= value <= maximum:
        raise DirectiveError(f"{name} must be between 0 and {maximum}, got {value}")
    return value


def parse(headers: dict[str, str]) -> Directives:
    """Directives from lower-cased request headers; ``NONE`` when there are none."""
    if not any(name.startswith("x-demo-") for name in headers):
        return NONE
    delay_ms = _non_negative("x-demo-delay-ms", headers.get("x-demo-delay-ms", "0"), DELAY_MS_MAX)
    fields: dict[str, Any] = {}
    for fault in filter(
        None, (part.strip() for part in headers.get("x-demo-fault", "").split(","))
    ):
        kind, _, arg = fault.partition(":")
        if kind == "timeout":
            delay_ms = delay_ms or TIMEOUT_DELAY_MS_DEFAULT
        elif kind == "status":
            status = _non_negative("x-demo-fault status", arg, 599)
            if status < 400:
                raise DirectiveError(f"x-demo-fault status must be 4xx or 5xx, got {status}")
            fields["status"] = status
        elif kind == "cut":
            fields["cut_after_chunks"] = _non_negative("x-demo-fault cut", arg)
        elif kind == "drip":
            fields["drip_ms"] = _non_negative("x-demo-fault drip", arg, DELAY_MS_MAX)
        elif kind == "no-usage":
            fields["no_usage"] = True
        elif kind == "malformed":
            fields["malformed"] = True
        else:
            raise DirectiveError(f"unknown x-demo-fault {fault!r}")
    counts = {
        "retry_after_s": "x-demo-retry-after",
        "cached_tokens": "x-demo-cached-tokens",
        "cache_creation_tokens": "x-demo-cache-creation-tokens",
        "reasoning_tokens": "x-demo-reasoning-tokens",
    }
    for field, header in counts.items():
        if header in headers:
            fields[field] = _non_negative(header, headers[header])
    return Directives(
        delay_ms=delay_ms,
        expect_key=headers.get("x-demo-expect-key"),
        **fields,
    )

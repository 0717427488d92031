"""The ``x-demo-*`` request headers: what a test asks the demo upstream to do to one request.

Each request carries its own directives, so concurrent tests never share state and the demo
upstream stays stateless. Headers are parsed once, up front; a malformed directive is a 400 so a
typo in a test fails loudly instead of silently testing the happy path.

- ``x-demo-fault``: a comma-separated list of:

  ``timeout``        no byte before ``x-demo-delay-ms`` (default 30 s)
  ``status:N``       an error reply with status N (4xx/5xx) in the dialect's own format
  ``cut:N``          the connection is closed (FIN) after N content frames of a stream, or half
                     a plain body: the HTTP message is left incomplete
  ``reset``          the TCP connection is aborted (RST) before any byte of the response
  ``reset:N``        like ``cut:N``, but aborted with a RST instead of closed
  ``truncate:N``     the reply ends early but cleanly framed: a plain JSON body keeps only its
                     first N bytes (its content-length says so), a stream ends after N content
                     frames with a proper end of body and no finish, usage or end event
  ``stall:N``        a stream sends N content frames, then nothing more, connection held open
                     (until the client leaves): a read timeout mid-stream
  ``drip:MS``        a pause of MS before each stream frame
  ``no-usage``       no usage anywhere
  ``usage:KIND``     wrong usage in the reply (the plain body's, or the stream's final one):
                     ``missing`` (no input/output counts), ``string`` (counts as strings),
                     ``negative`` (output -5), ``low`` (output 1 token), ``huge`` (output
                     10**15), ``int64`` (output 2**63, beyond a signed 64-bit integer),
                     ``bignum`` (output 10**30, beyond any 64-bit integer)
  ``malformed``      = ``malformed:json``
  ``malformed:KIND`` a broken SSE event after the first content frame: ``json`` (a data line
                     that is not JSON), ``no-data`` (an event line with no data line), ``binary``
                     (a data line that is not UTF-8); on a plain body ``json`` cuts it in half
                     and pads it with spaces
  ``crlf``           a stream's lines end with CRLF, and each event's final LF goes out in the
                     next write, so a reader sees reads that end between CR and LF
  ``huge:BYTES``     BYTES of padding: in a plain body's extra field ``x_demo_padding``, or as
                     one SSE data event of that size after the first content frame
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
HUGE_BYTES_MAX: Final = 256 * 1024 * 1024
"""Padding is built in memory: four times the gateway's 64 MiB response cap is plenty."""
USAGE_FAULTS: Final = frozenset({"missing", "string", "negative", "low", "huge", "int64", "bignum"})
MALFORMED_KINDS: Final = frozenset({"json", "no-data", "binary"})


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
    malformed_kind: str = "json"
    reset_before: bool = False
    """``reset``: abort the connection before the response starts."""
    reset_after_chunks: int | None = None
    truncate_at: int | None = None
    stall_after_chunks: int | None = None
    usage_fault: str | None = None
    crlf: bool = False
    huge_bytes: int = 0
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


def _choice(name: str, raw: str, allowed: frozenset[str]) -> str:
    if raw not in allowed:
        raise DirectiveError(f"{name} must be one of {', '.join(sorted(allowed))}, got {raw!r}")
    return raw


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
            fields["malformed_kind"] = _choice(
                "x-demo-fault malformed", arg or "json", MALFORMED_KINDS
            )
        elif kind == "reset":
            if arg:
                fields["reset_after_chunks"] = _non_negative("x-demo-fault reset", arg)
            else:
                fields["reset_before"] = True
        elif kind == "truncate":
            fields["truncate_at"] = _non_negative("x-demo-fault truncate", arg)
        elif kind == "stall":
            fields["stall_after_chunks"] = _non_negative("x-demo-fault stall", arg)
        elif kind == "usage":
            fields["usage_fault"] = _choice("x-demo-fault usage", arg, USAGE_FAULTS)
        elif kind == "crlf":
            fields["crlf"] = True
        elif kind == "huge":
            fields["huge_bytes"] = _non_negative("x-demo-fault huge", arg, HUGE_BYTES_MAX)
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

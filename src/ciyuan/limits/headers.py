"""Each provider's rate-limit headers from decisions: pure, so the gateway only copies them.

OpenAI sends, on every response, ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``,
with resets written as Go durations ("1s", "6m0s", "20ms"), and on a 429 ``retry-after``
(whole seconds) and ``retry-after-ms``, which the official SDKs honour when they retry.

Anthropic sends ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
{limit,remaining,reset}``, with resets written as RFC 3339 times in UTC, and on a 429
``retry-after`` (whole seconds); its SDKs also read ``retry-after-ms``, so it is sent too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from ciyuan.limits.algorithm import Decision

HEADER_UNITS: Final = {
    "rpm": "requests",
    "tpm": "tokens",
    "input-tpm": "input-tokens",
    "output-tpm": "output-tokens",
}
"""Rule name -> the unit in the header name; a rule not listed uses its own name."""


def go_duration(ms: int) -> str:
    """Milliseconds as Go's ``time.Duration.String`` writes them: 0s, 20ms, 1.5s, 6m0s, 1h0m0s."""
    assert ms >= 0
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest_ms = divmod(ms, 3_600_000)
    minutes, rest_ms = divmod(rest_ms, 60_000)
    seconds, millis = divmod(rest_ms, 1000)
    text = f"{seconds}.{millis:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def retry_after_s(decisions: Iterable[Decision]) -> float | None:
    """Seconds until every refusing rule would allow: 0.0 when all allow, ``None`` when some
    rule can never allow this cost (a retry cannot succeed, so none should be advertised)."""
    waits_ms: list[int] = []
    for decision in decisions:
        if decision.allowed:
            continue
        if decision.retry_after_ms is None:
            return None
        waits_ms.append(decision.retry_after_ms)
    return max(waits_ms, default=0) / 1000


def rfc3339(epoch_ms: int) -> str:
    """An instant as RFC 3339 in UTC, rounded up to the whole second (never early):
    ``2026-01-02T03:04:05Z``."""
    assert epoch_ms >= 0
    instant = datetime.fromtimestamp(math.ceil(epoch_ms / 1000), UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def _tightest(decisions: Iterable[Decision]) -> dict[str, Decision]:
    """Per header unit, the decision to show: the fewest remaining, then the longest reset.
    Degraded decisions carry no counts, so they are left out."""
    tightest: dict[str, Decision] = {}
    for decision in decisions:
        if decision.degraded:
            continue
        unit = HEADER_UNITS.get(decision.rule.name, decision.rule.name)
        known = tightest.get(unit)
        if known is None or (decision.remaining, -decision.reset_ms) < (
            known.remaining,
            -known.reset_ms,
        ):
            tightest[unit] = decision
    return tightest


def _retry_headers(decisions: list[Decision], headers: dict[str, str]) -> None:
    if not all(decision.allowed for decision in decisions):
        wait_s = retry_after_s(decisions)
        if wait_s is not None:
            wait_ms = round(wait_s * 1000)
            headers["retry-after"] = str(-(-wait_ms // 1000))
            headers["retry-after-ms"] = str(wait_ms)


def openai_ratelimit_headers(decisions: Iterable[Decision]) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers, and ``retry-after``/``retry-after-ms`` when refused.

    Several decisions of one unit (a per-key and a per-account rpm) are shown as the tightest:
    the fewest remaining, then the longest reset. Degraded decisions carry no counts, so they
    add no ``x-ratelimit-*`` header, but a degraded refusal still sets ``retry-after``.
    """
    decisions = list(decisions)
    headers: dict[str, str] = {}
    for unit, decision in _tightest(decisions).items():
        headers[f"x-ratelimit-limit-{unit}"] = str(decision.limit)
        headers[f"x-ratelimit-remaining-{unit}"] = str(decision.remaining)
        headers[f"x-ratelimit-reset-{unit}"] = go_duration(decision.reset_ms)
    _retry_headers(decisions, headers)
    return headers


def anthropic_ratelimit_headers(decisions: Iterable[Decision]) -> dict[str, str]:
    """The ``anthropic-ratelimit-*`` headers, and ``retry-after``/``retry-after-ms`` when
    refused; the same tightest-per-unit choice as ``openai_ratelimit_headers``.

    A reset is the instant the bucket is full again: the decision's own time (the backend's
    clock, epoch milliseconds) plus its ``reset_ms``, so the function needs no clock.
    """
    decisions = list(decisions)
    headers: dict[str, str] = {}
    for unit, decision in _tightest(decisions).items():
        headers[f"anthropic-ratelimit-{unit}-limit"] = str(decision.limit)
        headers[f"anthropic-ratelimit-{unit}-remaining"] = str(decision.remaining)
        headers[f"anthropic-ratelimit-{unit}-reset"] = rfc3339(decision.at_ms + decision.reset_ms)
    _retry_headers(decisions, headers)
    return headers

"""Anthropic's rate-limit headers from decisions: exact header dicts for hand-made decisions."""

from __future__ import annotations

from datetime import UTC, datetime

from ciyuan.limits import Decision, Rule, anthropic_ratelimit_headers, rfc3339

RPM = Rule("rpm", 50, 60)
TPM = Rule("tpm", 40_000, 60)
# 2026-01-02T03:04:05.250Z, in the backend's epoch milliseconds.
AT_MS = int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1000) + 250


def decision(rule: Rule, remaining: int, reset_ms: int, retry_ms: int | None = 0) -> Decision:
    return Decision(rule, retry_ms == 0, remaining, reset_ms, retry_ms, at_ms=AT_MS)


def test_instants_are_rfc3339_in_utc_rounded_up_to_the_second() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1) == "1970-01-01T00:00:01Z"
    assert rfc3339(AT_MS) == "2026-01-02T03:04:06Z"
    assert rfc3339(AT_MS - 250) == "2026-01-02T03:04:05Z"


def test_an_admitted_request_gets_limit_remaining_and_reset_per_unit() -> None:
    headers = anthropic_ratelimit_headers([decision(RPM, 49, 1_200), decision(TPM, 39_000, 59_750)])
    assert headers == {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-01-02T03:04:07Z",
        "anthropic-ratelimit-tokens-limit": "40000",
        "anthropic-ratelimit-tokens-remaining": "39000",
        "anthropic-ratelimit-tokens-reset": "2026-01-02T03:05:05Z",
    }
    assert not any(name.startswith("x-ratelimit") for name in headers)


def test_a_refusal_adds_retry_after_and_shows_the_tightest_rule() -> None:
    per_key = decision(RPM, 0, 60_000, retry_ms=1_100)
    per_account = decision(Rule("rpm", 500, 60), 300, 5_000)
    split = decision(Rule("output-tpm", 8_000, 60), 10, 0)
    headers = anthropic_ratelimit_headers([per_key, per_account, split])
    assert headers["anthropic-ratelimit-requests-limit"] == "50"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["anthropic-ratelimit-requests-reset"] == "2026-01-02T03:05:06Z"
    assert headers["anthropic-ratelimit-output-tokens-remaining"] == "10"
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "1100"


def test_never_fitting_and_degraded_decisions() -> None:
    never = [decision(TPM, 40_000, 0, retry_ms=None)]
    assert "retry-after" not in anthropic_ratelimit_headers(never)
    degraded = Decision(RPM, False, 0, 0, 1000, at_ms=0, degraded=True)
    assert anthropic_ratelimit_headers([degraded]) == {"retry-after": "1", "retry-after-ms": "1000"}

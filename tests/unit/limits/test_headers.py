"""OpenAI's rate-limit headers from decisions: exact header dicts for hand-made decisions."""

from __future__ import annotations

import pytest

from ciyuan.limits import Decision, Rule, go_duration, openai_ratelimit_headers, retry_after_s

RPM = Rule("rpm", 60, 60)
TPM = Rule("tpm", 150_000, 60)


def decision(rule: Rule, remaining: int, reset_ms: int, retry_ms: int | None = 0) -> Decision:
    return Decision(rule, retry_ms == 0, remaining, reset_ms, retry_ms, at_ms=0)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (20, "20ms"),
        (999, "999ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (1020, "1.02s"),
        (59_999, "59.999s"),
        (360_000, "6m0s"),
        (61_500, "1m1.5s"),
        (3_600_000, "1h0m0s"),
        (3_723_000, "1h2m3s"),
    ],
)
def test_durations_are_written_as_go_writes_them(ms: int, text: str) -> None:
    assert go_duration(ms) == text


def test_an_admitted_request_gets_the_six_headers() -> None:
    headers = openai_ratelimit_headers([decision(RPM, 59, 1000), decision(TPM, 149_000, 400)])
    assert headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "150000",
        "x-ratelimit-remaining-tokens": "149000",
        "x-ratelimit-reset-tokens": "400ms",
    }


def test_a_refusal_adds_retry_after_rounded_up_and_in_milliseconds() -> None:
    refused = [decision(RPM, 10, 50_000), decision(TPM, 100, 60_000, retry_ms=2_300)]
    headers = openai_ratelimit_headers(refused)
    assert headers["retry-after"] == "3" and headers["retry-after-ms"] == "2300"
    assert headers["x-ratelimit-reset-tokens"] == "1m0s"
    assert retry_after_s(refused) == 2.3


def test_the_tightest_of_several_rules_of_one_unit_is_shown() -> None:
    per_key = decision(RPM, 5, 1000)
    per_account = decision(Rule("rpm", 600, 60), 2, 9000)
    headers = openai_ratelimit_headers([per_key, per_account])
    assert headers["x-ratelimit-limit-requests"] == "600"
    assert headers["x-ratelimit-remaining-requests"] == "2"


def test_a_cost_that_can_never_fit_advertises_no_retry() -> None:
    never = [decision(TPM, 150_000, 0, retry_ms=None)]
    assert retry_after_s(never) is None
    assert "retry-after" not in openai_ratelimit_headers(never)


def test_other_rules_use_their_own_names_and_degraded_decisions_add_no_counts() -> None:
    degraded = Decision(RPM, False, 0, 0, 1000, at_ms=0, degraded=True)
    headers = openai_ratelimit_headers([decision(Rule("input-tpm", 10, 60), 4, 0), degraded])
    assert headers == {
        "x-ratelimit-limit-input-tokens": "10",
        "x-ratelimit-remaining-input-tokens": "4",
        "x-ratelimit-reset-input-tokens": "0s",
        "retry-after": "1",
        "retry-after-ms": "1000",
    }
    assert retry_after_s([]) == 0.0

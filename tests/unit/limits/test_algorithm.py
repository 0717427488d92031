"""The pure GCRA and lease algorithm, with time passed in: exact expectations, then properties.

Each exact test works a small example by hand (the numbers are in the comments); the
hypothesis properties drive random sequences of hits and adjustments and check the
guarantees stated in algorithm.py's docstring against a plain count of what was admitted.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciyuan.limits.algorithm import (
    DEBT_WINDOWS_MAX,
    Charge,
    Decision,
    Rule,
    Tat,
    gcra_adjust,
    gcra_hit,
    gcra_hit_all,
    lease_acquire,
    lease_release,
    lease_renew,
)

NOW = 1_700_000_000_000
RPM3 = Rule("rpm", 3, 60)  # one request per 20 000 ms, burst 3
TPM1000 = Rule("tpm", 1000, 60)  # one token per 60 ms, burst 1000


def hits(
    rule: Rule, now_ms: int, *costs: int, tat: Tat | None = None
) -> tuple[list[Decision], Tat | None]:
    decisions = []
    for cost in costs:
        decision, tat = gcra_hit(tat, now_ms, rule, cost)
        decisions.append(decision)
    return decisions, tat


def test_a_fresh_key_spends_its_burst_then_waits_one_emission_interval() -> None:
    decisions, tat = hits(RPM3, NOW, 1, 1, 1, 1)
    assert [(d.allowed, d.remaining, d.reset_ms, d.retry_after_ms) for d in decisions] == [
        (True, 2, 20_000, 0),
        (True, 1, 40_000, 0),
        (True, 0, 60_000, 0),
        (False, 0, 60_000, 20_000),  # refused: state unchanged, one request back in 20 s
    ]
    assert tat == Tat(NOW + 60_000)
    early, same = gcra_hit(tat, NOW + 19_999, RPM3, 1)
    assert (early.allowed, early.retry_after_ms, same) == (False, 1, tat)
    on_time, after = gcra_hit(tat, NOW + 20_000, RPM3, 1)
    assert (on_time.allowed, on_time.remaining, after) == (True, 0, Tat(NOW + 80_000))


def test_an_emission_interval_that_is_not_whole_milliseconds_is_exact() -> None:
    rule = Rule("rpm", 7, 60)  # T = 8571 + 3/7 ms
    decisions, tat = hits(rule, NOW, *[1] * 7)
    assert all(d.allowed for d in decisions) and decisions[-1].remaining == 0
    assert tat == Tat(NOW + 60_000)  # seven intervals add up to the window exactly
    refused, _ = gcra_hit(tat, NOW, rule, 1)
    assert refused.retry_after_ms == 8572  # ceil(8571.43)
    one, tat = gcra_hit(None, NOW, rule, 1)
    assert tat == Tat(NOW + 8571, 3) and one.reset_ms == 8572


def test_a_token_cost_is_charged_in_proportion() -> None:
    first, tat = gcra_hit(None, NOW, TPM1000, 600)
    assert (first.remaining, first.reset_ms, tat) == (400, 36_000, Tat(NOW + 36_000))
    # 500 more would end at NOW + 66 000, 6 000 ms past the burst tolerance.
    second, same = gcra_hit(tat, NOW, TPM1000, 500)
    assert (second.allowed, second.retry_after_ms, second.remaining, same) == (
        False,
        6_000,
        400,
        tat,
    )
    third, _ = gcra_hit(tat, NOW + 6_000, TPM1000, 500)
    assert (third.allowed, third.remaining) == (True, 0)


def test_a_cost_above_the_limit_can_never_be_admitted() -> None:
    decision, tat = gcra_hit(None, NOW, TPM1000, 1001)
    assert (decision.allowed, decision.retry_after_ms, decision.retry_after_s) == (
        False,
        None,
        None,
    )
    assert decision.remaining == 1000 and tat is None


def test_a_zero_cost_peeks_without_charging() -> None:
    decision, tat = gcra_hit(None, NOW, TPM1000, 0)
    assert (decision.allowed, decision.remaining, decision.reset_ms, tat) == (True, 1000, 0, None)


def test_a_refund_equals_having_charged_less() -> None:
    _, charged = gcra_hit(None, NOW, TPM1000, 600)
    _, less = gcra_hit(None, NOW, TPM1000, 400)
    assert gcra_adjust(charged, NOW, TPM1000, -200) == less
    # Later, the same refund still leads to the same state, until it would overfill.
    assert gcra_adjust(charged, NOW + 10_000, TPM1000, -200) == less
    assert gcra_adjust(charged, NOW + 30_000, TPM1000, -200) is None  # less is past by then
    assert gcra_adjust(charged, NOW + 30_000, TPM1000, -600) is None  # the bucket is full again


def test_a_refund_never_goes_below_an_empty_bucket() -> None:
    _, charged = gcra_hit(None, NOW, TPM1000, 100)
    assert gcra_adjust(charged, NOW, TPM1000, -(10**12)) is None
    assert gcra_adjust(None, NOW, TPM1000, -5) is None
    decision, _ = gcra_hit(None, NOW, TPM1000, 1000)
    assert decision.allowed  # a refund gave nothing beyond a full bucket


def test_an_overcharge_goes_into_debt_so_the_next_request_waits() -> None:
    _, full = gcra_hit(None, NOW, TPM1000, 1000)  # TAT = NOW + 60 000
    debt = gcra_adjust(full, NOW, TPM1000, 500)  # real usage was 500 above the estimate
    assert debt == Tat(NOW + 90_000)
    refused, _ = gcra_hit(debt, NOW, TPM1000, 1)
    assert (refused.allowed, refused.retry_after_ms, refused.reset_ms) == (False, 30_060, 90_000)


def test_debt_is_capped_so_one_bad_estimate_cannot_lock_a_key_for_long() -> None:
    capped = gcra_adjust(None, NOW, TPM1000, 10**15)
    assert capped == Tat(NOW + (1 + DEBT_WINDOWS_MAX) * 60_000)


def test_hit_all_charges_every_rule_or_none() -> None:
    charges = [Charge("key-1", RPM3, 1), Charge("key-1", TPM1000, 800)]
    admitted, states = gcra_hit_all([None, None], NOW, charges)
    assert [d.allowed for d in admitted] == [True, True]
    assert states == (Tat(NOW + 20_000), Tat(NOW + 48_000))
    refused, unchanged = gcra_hit_all(list(states), NOW, charges)
    assert unchanged == states  # tpm refused, so rpm was not charged either
    rpm, tpm = refused
    assert (rpm.allowed, rpm.remaining, rpm.retry_after_ms) == (True, 2, 0)
    assert (tpm.allowed, tpm.remaining, tpm.retry_after_ms) == (False, 200, 36_000)


def test_hit_all_refuses_duplicate_charges() -> None:
    with pytest.raises(AssertionError):
        gcra_hit_all([None, None], NOW, [Charge("k", RPM3, 1), Charge("k", RPM3, 1)])


@pytest.mark.parametrize(
    ("name", "limit", "window_s", "message"),
    [
        ("", 1, 1, "non-empty"),
        ("a:b", 1, 1, "no ':'"),
        ("rpm", 0, 60, "limit 0"),
        ("rpm", 1, 0, "window_s 0"),
        ("tpd", 2**53, 86_400, "too large"),
    ],
)
def test_a_bad_rule_is_refused_with_a_message_naming_it(
    name: str, limit: int, window_s: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Rule(name, limit, window_s)


def test_the_largest_rule_stays_exact() -> None:
    rule = Rule("tpd", 104_249_991, 86_400)  # limit * window_ms just below 2**53
    decision, tat = gcra_hit(None, NOW, rule, rule.limit)
    assert decision.allowed and decision.remaining == 0 and tat == Tat(NOW + rule.window_ms)
    assert gcra_adjust(tat, NOW, rule, -(rule.limit - 1)) == Tat(NOW + 0, 86_400_000)


def test_leases_hold_a_slot_until_released_or_expired() -> None:
    one = lease_acquire({}, NOW, 2, 1000, "a")
    assert one == {"a": NOW + 1000}
    two = lease_acquire(one, NOW, 2, 1000, "b")
    assert two is not None and lease_acquire(two, NOW, 2, 1000, "c") is None
    assert lease_acquire(two, NOW + 1000, 2, 1000, "c") == {"c": NOW + 2000}  # both expired
    released = lease_release(two, NOW, "a")
    assert released == {"b": NOW + 1000} and lease_release(released, NOW, "a") == released


def test_a_renewed_lease_outlives_its_first_expiry_and_an_expired_one_cannot_renew() -> None:
    leases = lease_acquire({}, NOW, 1, 1000, "a")
    assert leases is not None
    renewed = lease_renew(leases, NOW + 900, "a", 1000)
    assert renewed == {"a": NOW + 1900}
    assert lease_renew(leases, NOW + 1000, "a", 1000) is None
    assert lease_renew(leases, NOW, "unknown", 1000) is None


# Properties. A step is (ms since the previous step, kind, amount): kind "hit" charges amount
# (at most the limit), kind "refund" gives back up to amount of the oldest unrefunded charge.
RULES = st.sampled_from([RPM3, TPM1000, Rule("rpm", 7, 60), Rule("rps", 5, 1), Rule("x", 13, 7)])


@st.composite
def workloads(draw: st.DrawFn) -> tuple[Rule, list[tuple[int, str, int]]]:
    rule = draw(RULES)
    step = st.tuples(
        st.integers(0, 2 * rule.window_ms // rule.limit + 1),
        st.sampled_from(["hit", "hit", "hit", "refund"]),
        st.integers(0, rule.limit),
    )
    return rule, draw(st.lists(step, max_size=80))


def run(rule: Rule, steps: list[tuple[int, str, int]]) -> list[tuple[int, int]]:
    """Apply the steps; return (time, net scaled units charged) per step, checking as it goes
    that refunds give back no more than was charged and never fill more than the bucket."""
    now, tat = NOW, None
    refundable: list[int] = []
    ledger: list[tuple[int, int]] = []
    for gap_ms, kind, amount in steps:
        now += gap_ms
        before = max(tat or Tat(now), Tat(now))
        if kind == "hit":
            decision, tat = gcra_hit(tat, now, rule, amount)
            assert decision.remaining <= rule.limit
            if decision.allowed:
                refundable.append(amount)
                ledger.append((now, amount * rule.window_ms))
            else:
                assert decision.retry_after_ms is not None and decision.retry_after_ms > 0
            continue
        if not refundable:
            continue
        refund = min(amount, refundable.pop(0))
        tat = gcra_adjust(tat, now, rule, -refund)
        after = max(tat or Tat(now), Tat(now))
        given_back = (before.ms - after.ms) * rule.limit + before.frac - after.frac
        assert 0 <= given_back <= refund * rule.window_ms  # never more than asked, or charged
        ledger.append((now, -given_back))
    return ledger


@settings(max_examples=300, deadline=None)
@given(workloads())
def test_no_interval_admits_more_than_the_burst_plus_the_rate(
    workload: tuple[Rule, list[tuple[int, str, int]]],
) -> None:
    rule, steps = workload
    ledger = run(rule, steps)
    tau = rule.limit * rule.window_ms
    for i, (start, _) in enumerate(ledger):
        net = 0
        for end, scaled in ledger[i:]:
            net += scaled
            # GCRA: net cost * T <= tau + (end - start), in units of 1/limit ms.
            assert net <= tau + (end - start) * rule.limit
            if end - start < rule.window_ms:
                assert net <= 2 * tau  # limit + burst in any one window


@settings(max_examples=300, deadline=None)
@given(workloads(), st.integers(1, 13))
def test_retry_after_is_exactly_when_the_cost_fits(
    workload: tuple[Rule, list[tuple[int, str, int]]], cost: int
) -> None:
    rule, steps = workload
    cost = min(cost, rule.limit)
    tat = None
    for gap_ms, _, amount in steps:
        _, tat = gcra_hit(tat, NOW + gap_ms, rule, amount)
    decision, _ = gcra_hit(tat, NOW, rule, cost)
    if decision.allowed:
        assert decision.remaining + cost <= rule.limit
        return
    assert decision.retry_after_ms is not None
    wait = decision.retry_after_ms
    assert not gcra_hit(tat, NOW + wait - 1, rule, cost)[0].allowed
    assert gcra_hit(tat, NOW + wait, rule, cost)[0].allowed


@settings(max_examples=300, deadline=None)
@given(workloads(), st.integers(0, 2000))
def test_remaining_is_exactly_what_still_fits(
    workload: tuple[Rule, list[tuple[int, str, int]]], later_ms: int
) -> None:
    rule, steps = workload
    tat = None
    now = NOW
    for gap_ms, _, amount in steps:
        now += gap_ms
        _, tat = gcra_hit(tat, now, rule, amount)
    now += later_ms
    peek, _ = gcra_hit(tat, now, rule, 0)
    assert gcra_hit(tat, now, rule, peek.remaining)[0].allowed
    if peek.remaining < rule.limit:
        assert not gcra_hit(tat, now, rule, peek.remaining + 1)[0].allowed

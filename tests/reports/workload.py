"""A seeded workload driven through the real store: grants, reserve/settle (with overage and
unbilled cost), voided failures, refunds and expiring grants, over several days and accounts.

Every event is stamped by the same fixed clock as its ledger transfers, so a period's usage and
a period's transfers cover exactly the same requests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from ciyuan.clock import FixedClock
from ciyuan.errors import InsufficientCredit
from ciyuan.metering.ports import UsageEvent
from ciyuan.pricing.money import Amount
from ciyuan.store.sql_store import SqlStore

MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "local/llama-3-8b")
START_US = 1_795_824_000_000_000 - 1_234_567
"""Just before 2026-11-28T00:00Z: a few days' workload crosses the November/December boundary."""


@dataclass
class Workload:
    account_ids: list[str] = field(default_factory=list)
    key_ids: dict[str, list[str]] = field(default_factory=dict)
    events: list[UsageEvent] = field(default_factory=list)
    refunded: list[str] = field(default_factory=list)


def _detail(model: str, inp: int, out: int, cost: Amount) -> dict[str, object]:
    # A cost whose lines sum to its total, as pricing.cost writes it: a bucket line per kind
    # and the remainder as an adjustment, so invoice items can be checked against unit prices.
    unit_in, unit_out = 150, 600
    lines = [
        {"bucket": "input", "tokens": inp, "unit_nanos": unit_in, "amount_nanos": inp * unit_in},
        {"bucket": "output", "tokens": out, "unit_nanos": unit_out, "amount_nanos": out * unit_out},
    ]
    rest = cost.nanos - inp * unit_in - out * unit_out
    if rest:
        lines.append(
            {"bucket": "plan_adjustment", "tokens": 0, "unit_nanos": 0, "amount_nanos": rest}
        )
    return {"cost": {"model": model, "total_nanos": cost.nanos, "lines": lines}}


def generate(store: SqlStore, clock: FixedClock, *, seed: int, requests: int) -> Workload:
    rng = random.Random(seed)
    work = Workload()
    for index in range(3):
        account = store.create_account(f"team-{seed}-{index}")
        work.account_ids.append(account.id)
        work.key_ids[account.id] = [
            store.create_api_key(account.id, f"ck{seed}{index}{k}", "0" * 64, None).id
            for k in range(2)
        ]
        store.grant(account.id, Amount(rng.randint(5, 40) * 10**8))
        store.grant(account.id, Amount(10**8), expires_us=clock.now_us() + 86_400_000_000)
        if index == 0:
            store.set_floor(account.id, Amount(-(10**8)))
    for number in range(requests):
        clock.advance(rng.uniform(0, 900))
        if rng.random() < 0.01:
            store.grant(rng.choice(work.account_ids), Amount(rng.randint(1, 9) * 10**8))
        _one_request(store, clock, rng, work, number, seed)
        if work.events and rng.random() < 0.05:
            victim = rng.choice(work.events)
            if victim.cost and victim.request_id not in work.refunded:
                store.refund(victim.request_id)
                work.refunded.append(victim.request_id)
    store.expire_reservations()
    return work


def _one_request(
    store: SqlStore, clock: FixedClock, rng: random.Random, work: Workload, n: int, seed: int
) -> None:
    account_id = rng.choice(work.account_ids)
    model = rng.choice(MODELS)
    inp, out = rng.randint(0, 5000), rng.randint(0, 2000)
    reserved = Amount(rng.randint(0, 3) * 10**6)
    request_id = f"req_{seed}_{n:06d}"
    try:
        hold = store.reserve(account_id, reserved, request_id=request_id, timeout_s=60)
    except InsufficientCredit:
        return
    base = UsageEvent(
        request_id=request_id, created_us=clock.now_us(), account_id=account_id,
        api_key_id=rng.choice(work.key_ids[account_id]), api=rng.choice(("chat", "messages")),
        model=model, upstream=rng.choice(("demo", "openai")), status="ok", http_status=200,
        input_tokens=inp, cached_tokens=rng.randint(0, inp), output_tokens=out,
        reasoning_tokens=rng.randint(0, out), latency_ms=rng.randint(5, 4000),
        ttft_ms=rng.choice((None, rng.randint(1, 900))),
    )  # fmt: skip
    if rng.random() < 0.1:
        failed = _replace(base, status="error", http_status=502, input_tokens=0, output_tokens=0)
        store.void(hold, failed)
        work.events.append(failed)
        return
    # Usually within the hold; sometimes beyond it (overage, or unbilled past the floor).
    cost = Amount(inp * 150 + out * 600 + rng.randint(0, 10**6))
    status = "partial" if rng.random() < 0.05 else "ok"
    event = _replace(base, status=status, detail=_detail(model, inp, out, cost))
    settled = store.settle(hold, cost, event)
    work.events.append(_replace(event, cost=settled.charged))


def _replace(event: UsageEvent, **changes: Any) -> UsageEvent:
    return replace(event, **changes)

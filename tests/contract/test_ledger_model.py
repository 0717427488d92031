"""A stateful property test: random sequences of grants (some expiring), reserves, settles,
voids, timeouts, refunds, expiries and idempotent replays run against the real store (SQLite
and PostgreSQL, a fresh database per example) and, beside it, a plain-dict model of what each
account should hold. After every step: each balance matches the model, no available balance is
below its floor, the posted balances sum to zero and reconcile, history re-sums to the posted
balance, and the hash chain verifies. The model reimplements the rules independently (it does
not call ``ciyuan.ledger``): TigerBeetle's auditor idea."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ciyuan.clock import US_PER_S, FixedClock
from ciyuan.errors import InsufficientCredit
from ciyuan.ledger.transfers import Reservation
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from ciyuan.store.sql_store import SqlStore
from tests.contract.ledger_helpers import event

FLOORS = {"a": 0, "b": -20}  # b has an overdraft allowance of 20 nanos


@dataclass
class Lot:
    order: int
    remaining: int
    expires_us: int | None


@dataclass
class Model:
    posted: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    lots: dict[str, list[Lot]] = field(default_factory=dict)
    holds: dict[str, tuple[str, int, int, str]] = field(
        default_factory=dict
    )  # rid: acct, amt, exp, state
    charged: dict[str, tuple[str, int, int]] = field(
        default_factory=dict
    )  # rid: acct, charged, refunded
    grants: dict[str, tuple[str, int, int | None]] = field(default_factory=dict)
    counter: int = 0

    def available(self, acct: str) -> int:
        return self.posted[acct] - self.pending[acct]

    def open_lot(self, acct: str, amount: int, expires_us: int | None) -> None:
        opened = max(0, min(amount, self.posted[acct] + amount))
        self.posted[acct] += amount
        self.counter += 1
        if opened:
            self.lots[acct].append(Lot(self.counter, opened, expires_us))

    def ordered(self, acct: str) -> list[Lot]:
        live = [lot for lot in self.lots[acct] if lot.remaining > 0]
        return sorted(
            live, key=lambda lot: (lot.expires_us is None, lot.expires_us or 0, lot.order)
        )

    def spend(self, acct: str, amount: int) -> None:
        self.posted[acct] -= amount
        for lot in self.ordered(acct):
            take = min(lot.remaining, amount)
            lot.remaining -= take
            amount -= take

    def expire(self, acct: str | None, now_us: int) -> int:
        count = 0
        for rid, (owner, amount, expires_us, state) in list(self.holds.items()):
            if state == "pending" and expires_us < now_us and acct in (None, owner):
                self.holds[rid] = (owner, amount, expires_us, "expired")
                self.pending[owner] -= amount
                count += 1
        for owner in [acct] if acct else list(self.posted):
            free = max(0, self.available(owner))
            for lot in self.ordered(owner):
                if lot.expires_us is not None and lot.expires_us <= now_us and free > 0:
                    take = min(lot.remaining, free)
                    lot.remaining -= take
                    self.posted[owner] -= take
                    free -= take
                    count += 1
        return count

    def admits(self, acct: str, amount: int, now_us: int) -> bool:
        expiries = [lot.expires_us for lot in self.ordered(acct) if lot.expires_us is not None]
        fresh = amount == 0 or not expiries or min(expiries) > now_us
        return fresh and self.available(acct) - amount >= FLOORS[acct]


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")
    settled = Bundle("settled")

    def __init__(self, new_url: Callable[[], tuple[str, Callable[[], None]]]) -> None:
        super().__init__()
        self.clock = FixedClock()
        url, self.cleanup = new_url()
        store = open_store(url, clock=self.clock)
        assert isinstance(store, SqlStore)
        self.store = store
        self.model = Model()
        self.ids: dict[str, str] = {}

    @initialize()
    def accounts(self) -> None:
        for name, floor in FLOORS.items():
            self.ids[name] = self.store.create_account(name, floor=Amount(floor)).id
            self.model.posted[name], self.model.pending[name], self.model.lots[name] = 0, 0, []

    def now(self) -> int:
        return self.clock.now_us()

    @rule(acct=st.sampled_from("ab"), nanos=st.integers(1, 50),
          expires_s=st.sampled_from([None, 10, 40]),
          key=st.sampled_from([None, "k1", "k2", "k3"]))  # fmt: skip
    def grant(self, acct: str, nanos: int, expires_s: int | None, key: str | None) -> None:
        expires_us = None if expires_s is None else self.now() + expires_s * US_PER_S
        if key is not None and key in self.model.grants:
            # A replay of the first body changes nothing and returns the first transfer.
            first_acct, first_nanos, first_expiry = self.model.grants[key]
            before = self.store.balance(self.ids[first_acct])
            again = self.store.grant(self.ids[first_acct], Amount(first_nanos), idempotency_key=key,
                                     expires_us=first_expiry)  # fmt: skip
            assert again.amount == Amount(first_nanos)
            assert self.store.balance(self.ids[first_acct]) == before
            return
        self.store.grant(self.ids[acct], Amount(nanos), idempotency_key=key, expires_us=expires_us)
        if key is not None:
            self.model.grants[key] = (acct, nanos, expires_us)
        self.model.open_lot(acct, nanos, expires_us)

    @rule(
        target=holds,
        acct=st.sampled_from("ab"),
        nanos=st.integers(0, 30),
        timeout_s=st.sampled_from([5, 20]),
    )
    def reserve(self, acct: str, nanos: int, timeout_s: int) -> Reservation | None:
        rid = f"r{len(self.model.holds) + len(self.model.charged)}-{secrets.token_hex(3)}"
        now = self.now()
        admitted = self.model.admits(acct, nanos, now) or (
            self.model.expire(acct, now) > 0 and self.model.admits(acct, nanos, now)
        )
        try:
            hold = self.store.reserve(
                self.ids[acct], Amount(nanos), request_id=rid, timeout_s=timeout_s
            )
        except InsufficientCredit:
            assert not admitted
            return None
        assert admitted
        self.model.holds[rid] = (acct, nanos, now + timeout_s * US_PER_S, "pending")
        self.model.pending[acct] += nanos
        return hold

    @rule(target=settled, hold=holds, cost=st.integers(0, 40))
    def settle(self, hold: Reservation | None, cost: int) -> str | None:
        if hold is None:
            return None
        acct, amount, expires_us, state = self.model.holds[hold.request_id]
        result = self.store.settle(hold, Amount(cost), event(self.ids[acct], hold.request_id))
        if state == "settled":
            assert result.charged == Amount(self.model.charged[hold.request_id][1])
            return hold.request_id
        held = amount if state == "pending" else 0
        headroom = self.model.available(acct) + held - FLOORS[acct]
        total = cost if cost <= held else min(cost, max(held, headroom))
        assert result.charged == Amount(total) and result.unbilled == Amount(cost - total)
        self.model.pending[acct] -= held
        self.model.spend(acct, total)
        self.model.holds[hold.request_id] = (acct, amount, expires_us, "settled")
        self.model.charged[hold.request_id] = (acct, total, 0)
        return hold.request_id

    @rule(hold=holds)
    def void(self, hold: Reservation | None) -> None:
        if hold is None:
            return
        self.store.void(hold, None)
        acct, amount, expires_us, state = self.model.holds[hold.request_id]
        if state == "pending":
            self.model.holds[hold.request_id] = (acct, amount, expires_us, "voided")
            self.model.pending[acct] -= amount

    @rule(request_id=settled, part=st.integers(1, 40), replay=st.booleans())
    def refund(self, request_id: str | None, part: int, replay: bool) -> None:
        if request_id is None:
            return
        acct, charged, refunded = self.model.charged[request_id]
        key = f"refund-{request_id}-{refunded}"
        amount = min(part, charged - refunded)
        if amount <= 0:
            return
        first = self.store.refund(request_id, Amount(amount), idempotency_key=key)
        if replay:
            before = self.store.balance(self.ids[acct])
            assert self.store.refund(request_id, Amount(amount), idempotency_key=key) == first
            assert self.store.balance(self.ids[acct]) == before
        self.model.charged[request_id] = (acct, charged, refunded + amount)
        self.model.open_lot(acct, amount, None)

    @rule(seconds=st.integers(1, 30))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        self.store.expire_reservations()
        self.model.expire(None, self.now())

    @invariant()
    def matches_the_model(self) -> None:
        if not self.ids:
            return
        for name, account_id in self.ids.items():
            balance = self.store.balance(account_id)
            assert (balance.posted.nanos, balance.pending.nanos) == (
                self.model.posted[name],
                self.model.pending[name],
            )
            assert balance.available.nanos >= FLOORS[name]
            history = self.store.history(account_id, limit=10_000)
            assert sum(line.change_nanos for line in history) == balance.posted.nanos
        reconciliation = self.store.reconcile()
        assert reconciliation.ok, reconciliation.to_dict()
        report = self.store.verify_chain()
        assert report.ok, report.problem

    def teardown(self) -> None:
        self.store.close()
        self.cleanup()


MODEL_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_the_ledger_follows_the_model_on_sqlite() -> None:
    def new_url() -> tuple[str, Callable[[], None]]:
        folder = tempfile.TemporaryDirectory()
        return f"sqlite:///{Path(folder.name) / 'model.db'}", folder.cleanup

    run_state_machine_as_test(lambda: LedgerMachine(new_url), settings=MODEL_SETTINGS)


@pytest.mark.postgres
def test_the_ledger_follows_the_model_on_postgres(pg_server: str) -> None:
    def new_url() -> tuple[str, Callable[[], None]]:
        schema = f"m_{secrets.token_hex(6)}"
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")

        def drop() -> None:
            with psycopg.connect(pg_server, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")

        sep = "&" if "?" in pg_server else "?"
        return f"{pg_server}{sep}options={quote(f'-csearch_path={schema}')}", drop

    run_state_machine_as_test(lambda: LedgerMachine(new_url), settings=MODEL_SETTINGS)

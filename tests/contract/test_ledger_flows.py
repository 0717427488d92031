"""Overage, refunds, expiring grants, history, reconciliation, checkpoints and receipts, on
real SQLite and PostgreSQL. Each test drives the public store methods with a fixed clock and
checks balances, transfers and the chain as the database holds them afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ciyuan.clock import US_PER_S, FixedClock
from ciyuan.errors import Conflict, InsufficientCredit, InvalidRequest, NotFound
from ciyuan.ledger.receipts import verify_receipt
from ciyuan.ledger.transfers import TransferKind
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from ciyuan.store.sql_store import SqlStore
from tests.contract.ledger_helpers import assert_consistent, event, raw

USD = Amount.parse


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store(db_url: str, clock: FixedClock) -> Iterator[SqlStore]:
    opened = open_store(db_url, clock=clock)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()


def kinds(store: SqlStore, account_id: str) -> list[tuple[str, Amount]]:
    return [(t.kind.value, t.amount) for t in reversed(store.transfers(account_id))]


def test_overage_is_its_own_transfer_within_the_floor(store: SqlStore) -> None:
    acme = store.create_account("acme", floor=USD("-1"))
    store.grant(acme.id, USD("2"))
    hold = store.reserve(acme.id, USD("1"), request_id="req-1", timeout_s=60)
    settled = store.settle(hold, USD("5"), event(acme.id, "req-1"))
    # 1 held + 1 left + 1 of allowance: 3 charged in two transfers, 2 unbilled.
    assert (settled.charged, settled.unbilled, settled.available_after) == (
        USD("3"),
        USD("2"),
        USD("-1"),
    )
    assert kinds(store, acme.id)[1:] == [("charge", USD("1")), ("overage", USD("2"))]
    with pytest.raises(InsufficientCredit):
        store.reserve(acme.id, USD("0.000000001"), request_id="req-2", timeout_s=60)
    assert_consistent(store)


def test_refunds_reverse_charges_once_and_never_beyond_them(store: SqlStore) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("10"))
    hold = store.reserve(acme.id, USD("2"), request_id="req-1", timeout_s=60)
    store.settle(hold, USD("1.5"), event(acme.id, "req-1"))
    partial = store.refund("req-1", USD("0.5"), idempotency_key="ticket-7")
    assert store.refund("req-1", USD("0.5"), idempotency_key="ticket-7") == partial
    with pytest.raises(Conflict):
        store.refund("req-1", USD("0.4"), idempotency_key="ticket-7")
    with pytest.raises(InvalidRequest):
        store.refund("req-1", USD("1.01"), idempotency_key="ticket-8")
    rest = store.refund("req-1")
    assert rest.amount == USD("1") and rest.kind is TransferKind.REFUND
    assert store.refund("req-1") == rest
    with pytest.raises(NotFound):
        store.refund("req-unknown")
    assert store.balance(acme.id).available == USD("10")
    assert_consistent(store)


def test_spending_takes_the_earliest_expiring_grant_and_expiry_takes_the_rest(
    store: SqlStore, clock: FixedClock
) -> None:
    acme = store.create_account("acme")
    now = clock.now_us()
    store.grant(acme.id, USD("5"))
    store.grant(acme.id, USD("3"), expires_us=now + 100 * US_PER_S, idempotency_key="promo-late")
    store.grant(acme.id, USD("2"), expires_us=now + 10 * US_PER_S, idempotency_key="promo-early")
    with pytest.raises(Conflict):
        store.grant(
            acme.id, USD("2"), expires_us=now + 11 * US_PER_S, idempotency_key="promo-early"
        )
    hold = store.reserve(acme.id, USD("3"), request_id="req-1", timeout_s=5)
    store.settle(hold, USD("3"), event(acme.id, "req-1"))  # all of promo-early, 1 of promo-late
    clock.advance(50)
    assert store.expire_grants() == 0  # promo-early is spent
    clock.advance(100)
    assert store.expire_grants() == 1
    assert kinds(store, acme.id)[-1] == ("expiry", USD("2"))
    assert store.balance(acme.id).available == USD("5")
    assert_consistent(store)


def test_the_next_expiry_moves_only_when_an_expiring_grant_is_used_up(
    store: SqlStore, clock: FixedClock, db_url: str
) -> None:
    acme = store.create_account("acme")
    now = clock.now_us()
    early, late = now + 10 * US_PER_S, now + 100 * US_PER_S
    store.grant(acme.id, USD("2"), expires_us=early, idempotency_key="early")
    store.grant(acme.id, USD("3"), expires_us=late, idempotency_key="late")

    def next_expiry() -> int | None:
        rows = raw(db_url, "SELECT next_expiry_us FROM accounts WHERE id = ?", (acme.id,))
        return None if rows[0][0] is None else int(rows[0][0])

    for request, cost, expected in (("req-1", "1", early), ("req-2", "1", late)):
        hold = store.reserve(acme.id, USD(cost), request_id=request, timeout_s=5)
        store.settle(hold, USD(cost), event(acme.id, request))
        assert next_expiry() == expected, request
    hold = store.reserve(acme.id, USD("3"), request_id="req-3", timeout_s=5)
    store.settle(hold, USD("3"), event(acme.id, "req-3"))
    assert next_expiry() is None
    assert_consistent(store)


def test_an_expired_grant_is_not_spendable_before_the_sweeper_runs(
    store: SqlStore, clock: FixedClock
) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("1"), expires_us=clock.now_us() + 10 * US_PER_S)
    clock.advance(11)
    with pytest.raises(InsufficientCredit):
        store.reserve(acme.id, USD("0.5"), request_id="req-1", timeout_s=5)
    assert store.balance(acme.id).available == Amount.zero()
    assert kinds(store, acme.id)[-1] == ("expiry", USD("1"))
    assert_consistent(store)


def test_expiry_leaves_held_credit_until_the_hold_is_settled(
    store: SqlStore, clock: FixedClock
) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("1"), expires_us=clock.now_us() + 10 * US_PER_S)
    hold = store.reserve(acme.id, USD("0.75"), request_id="req-1", timeout_s=60)
    clock.advance(11)
    assert store.expire_reservations() == 1  # 0.25 expires now; 0.75 is held
    store.settle(hold, USD("0.5"), event(acme.id, "req-1"))
    assert store.balance(acme.id).available == USD("0.25")
    assert store.expire_reservations() == 1
    assert store.balance(acme.id).available == Amount.zero()
    assert_consistent(store)


def test_a_repeated_reserve_returns_the_first_hold(store: SqlStore) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("5"))
    first = store.reserve(acme.id, USD("1"), request_id="req-1", timeout_s=60)
    assert store.reserve(acme.id, USD("1"), request_id="req-1", timeout_s=60) == first
    with pytest.raises(Conflict):
        store.reserve(acme.id, USD("2"), request_id="req-1", timeout_s=60)
    assert store.balance(acme.id).pending == USD("1")


def test_history_re_sums_to_the_balance(store: SqlStore) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("4"))
    for index in range(3):
        hold = store.reserve(acme.id, USD("1"), request_id=f"req-{index}", timeout_s=60)
        store.settle(hold, USD("0.5"), event(acme.id, f"req-{index}"))
    lines = store.history(acme.id)
    assert lines[0].posted_after_nanos == store.balance(acme.id).posted.nanos == USD("2.5").nanos
    assert sum(line.change_nanos for line in lines) == USD("2.5").nanos
    older = store.history(acme.id, limit=2, before_seq=lines[1].transfer.seq)
    assert [line.transfer.seq for line in older] == [line.transfer.seq for line in lines[2:4]]
    assert older[0].posted_after_nanos == lines[2].posted_after_nanos


def test_reconcile_reports_a_balance_edited_behind_the_ledger(store: SqlStore) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("4"))
    store.reserve(acme.id, USD("1"), request_id="req-1", timeout_s=60)
    assert_consistent(store)
    raw(
        store.url,
        "UPDATE accounts SET credits_posted = credits_posted + 7 WHERE id = ?",
        (acme.id,),
    )
    report = store.reconcile()
    assert not report.ok
    assert [(d.account_name, d.field) for d in report.differences] == [("acme", "credits_posted")]


def test_a_receipt_verifies_offline_and_not_with_another_key(store: SqlStore) -> None:
    acme = store.create_account("acme")
    other = store.create_account("other")
    store.grant(acme.id, USD("5"))
    store.grant(other.id, USD("5"))
    hold = store.reserve(acme.id, USD("1"), request_id="req-1", timeout_s=60)
    store.settle(hold, USD("0.3"), event(acme.id, "req-1"))
    unanchored = store.receipt("req-1", account_id=acme.id)
    assert unanchored["checkpoint"] is None
    key = Ed25519PrivateKey.generate()
    store.grant(other.id, USD("1"))
    store.checkpoint(key)
    document = json.loads(json.dumps(store.receipt("req-1", account_id=acme.id)))
    check = verify_receipt(document, key.public_key())
    assert check.ok and check.charged == USD("0.3"), check.problem
    assert not verify_receipt(document, Ed25519PrivateKey.generate().public_key()).ok
    document["transfers"][0]["amount_nanos"] += 1
    assert not verify_receipt(document, key.public_key()).ok
    with pytest.raises(NotFound):
        store.receipt("req-1", account_id=other.id)
    # Other accounts' transfers appear only as hashes on the audit paths.
    assert other.id not in json.dumps(store.receipt("req-1", account_id=acme.id)["inclusion"])


def test_transfers_written_before_the_chain_are_sealed_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A version-1 database (no chain yet) gets its transfers hashed, in order, on first open."""
    url = f"sqlite:///{tmp_path_factory.mktemp('legacy') / 'v1.db'}"
    store = open_store(url)
    assert isinstance(store, SqlStore)
    acme = store.create_account("acme")
    store.grant(acme.id, USD("3"))
    store.close()
    raw(url, "UPDATE transfers SET hash = NULL, seq = 7")
    raw(url, "UPDATE ledger_head SET seq = 0, hash = ?", ("0" * 64,))
    reopened = open_store(url)
    assert isinstance(reopened, SqlStore)
    assert reopened.chain_head()[0] == 1
    assert_consistent(reopened)
    reopened.close()

"""The ledger store contract, run on real SQLite and real PostgreSQL.

Each test drives the store through its public methods and checks balances, transfers and usage
events as the database holds them afterwards, including the double-entry invariant: the posted
balances of all accounts sum to zero.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from ciyuan.clock import FixedClock
from ciyuan.errors import Conflict, InsufficientCredit, InvalidRequest, NotFound
from ciyuan.metering.ports import Store, UsageEvent
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store

USD = Amount.parse


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store(db_url: str, clock: FixedClock) -> Iterator[Store]:
    opened = open_store(db_url, clock=clock)
    yield opened
    opened.close()


def event(account_id: str, request_id: str) -> UsageEvent:
    return UsageEvent(
        request_id=request_id,
        created_us=1,
        account_id=account_id,
        api_key_id="key_test",
        api="chat",
        model="gpt-4o-mini",
        upstream="demo",
        status="ok",
        http_status=200,
        input_tokens=10,
        output_tokens=5,
    )


def posted_sum(store: Store) -> int:
    return sum(a.balance.posted.nanos for a in store.list_accounts())


def test_accounts_are_unique_and_names_are_checked(store: Store) -> None:
    created = store.create_account("acme")
    assert store.get_account("acme") == created
    assert store.get_account(created.id) == created
    with pytest.raises(Conflict):
        store.create_account("acme")
    with pytest.raises(InvalidRequest):
        store.create_account("ciyuan:revenue")
    with pytest.raises(NotFound):
        store.get_account("nobody")


def test_grant_is_double_entry_and_idempotent(store: Store) -> None:
    acme = store.create_account("acme")
    first = store.grant(acme.id, USD("10"), idempotency_key="topup-1")
    again = store.grant(acme.id, USD("10"), idempotency_key="topup-1")
    assert again == first
    assert store.balance(acme.id).available == USD("10")
    with pytest.raises(Conflict):
        store.grant(acme.id, USD("11"), idempotency_key="topup-1")
    assert store.balance(acme.id).available == USD("10")
    assert store.get_account("ciyuan:funding").balance.posted == USD("-10")
    assert posted_sum(store) == 0


def test_grant_refuses_non_positive_amounts(store: Store) -> None:
    acme = store.create_account("acme")
    for bad in (USD("0"), USD("-1")):
        with pytest.raises(InvalidRequest):
            store.grant(acme.id, bad)
    assert store.balance(acme.id).available == Amount.zero()


def test_reserve_holds_funds_and_refuses_overdraft(store: Store) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("5"))
    holds = [store.reserve(acme.id, USD("1"), request_id=f"r{i}", timeout_s=60) for i in range(5)]
    assert store.balance(acme.id).available == Amount.zero()
    with pytest.raises(InsufficientCredit):
        store.reserve(acme.id, USD("0.000000001"), request_id="r-over", timeout_s=60)
    assert store.balance(acme.id).pending == USD("5")
    assert len({h.id for h in holds}) == 5


def test_settle_charges_the_cost_and_releases_the_rest(store: Store) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("10"))
    hold = store.reserve(acme.id, USD("3"), request_id="req-1", timeout_s=60)
    settled = store.settle(hold, USD("1.234567891"), event(acme.id, "req-1"))
    assert settled.charged == USD("1.234567891")
    assert settled.available_after == USD("8.765432109")
    balance = store.balance(acme.id)
    assert (balance.available, balance.pending) == (USD("8.765432109"), Amount.zero())
    assert store.get_account("ciyuan:revenue").balance.posted == USD("1.234567891")
    recorded = store.usage_event("req-1")
    assert (
        recorded is not None
        and recorded.cost == USD("1.234567891")
        and recorded.reserved == USD("3")
    )
    # Settling the same reservation again changes nothing.
    again = store.settle(hold, USD("2"), event(acme.id, "req-1"))
    assert again.charged == USD("1.234567891")
    assert store.balance(acme.id).available == USD("8.765432109")
    assert posted_sum(store) == 0


def test_cost_beyond_the_reservation_is_charged_only_within_the_balance(store: Store) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("2"))
    hold = store.reserve(acme.id, USD("1"), request_id="req-1", timeout_s=60)
    settled = store.settle(hold, USD("5"), event(acme.id, "req-1"))
    assert settled.charged == USD("2")
    assert settled.unbilled == USD("3")
    assert store.balance(acme.id).available == Amount.zero()
    recorded = store.usage_event("req-1")
    assert recorded is not None and recorded.unbilled == USD("3")


def test_void_releases_the_hold_and_records_the_failure(store: Store) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("1"))
    hold = store.reserve(acme.id, USD("1"), request_id="req-1", timeout_s=60)
    store.void(hold, replace(event(acme.id, "req-1"), status="error", http_status=502))
    assert store.balance(acme.id).available == USD("1")
    recorded = store.usage_event("req-1")
    assert recorded is not None and recorded.status == "error" and recorded.cost == Amount.zero()


def test_overdue_holds_expire_and_a_late_settle_still_charges(
    store: Store, clock: FixedClock
) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("1"))
    hold = store.reserve(acme.id, USD("1"), request_id="req-1", timeout_s=10)
    clock.advance(11)
    assert store.expire_reservations() == 1
    assert store.balance(acme.id).available == USD("1")
    settled = store.settle(hold, USD("0.4"), event(acme.id, "req-1"))
    assert settled.charged == USD("0.4")
    assert store.balance(acme.id).available == USD("0.6")
    assert posted_sum(store) == 0


def test_reserve_lazily_expires_overdue_holds(store: Store, clock: FixedClock) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("1"))
    store.reserve(acme.id, USD("1"), request_id="stuck", timeout_s=10)
    clock.advance(11)
    # No sweeper ran: the reserve itself releases the overdue hold before refusing.
    store.reserve(acme.id, USD("1"), request_id="fresh", timeout_s=10)
    assert store.balance(acme.id).pending == USD("1")


def test_a_dead_streams_hold_is_billed_for_its_last_progress_mark(
    store: Store, clock: FixedClock
) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("1"))
    hold = store.reserve(acme.id, USD("0.5"), request_id="req-1", timeout_s=10)
    partial = replace(event(acme.id, "req-1"), status="partial", output_tokens=40)
    assert store.mark_progress(hold, USD("0.1"), partial, alive_s=6)
    clock.advance(9)
    assert store.mark_progress(hold, USD("0.2"), replace(partial, output_tokens=80), alive_s=6)
    clock.advance(2)
    assert store.expire_reservations() == 0  # overdue, but its last mark vouches until 15 s
    clock.advance(5)
    assert store.expire_reservations() == 1
    # The last mark is charged, not voided: the client got those tokens before the crash.
    assert store.balance(acme.id).available == USD("0.8")
    assert store.balance(acme.id).pending == Amount.zero()
    recorded = store.usage_event("req-1")
    assert recorded is not None
    assert (recorded.status, recorded.output_tokens, recorded.cost) == ("partial", 80, USD("0.2"))
    assert recorded.error_code == "gateway_lost" and "recovered" in recorded.detail
    # Billed once: the sweeper again, or a late settle of the same hold, changes nothing.
    assert store.expire_reservations() == 0
    assert store.settle(hold, USD("0.5"), event(acme.id, "req-1")).charged == USD("0.2")
    assert store.mark_progress(hold, USD("0.3"), partial, alive_s=6) is False
    assert store.balance(acme.id).available == USD("0.8")
    assert posted_sum(store) == 0


def test_an_overdue_hold_whose_stream_still_marks_progress_is_left_alone(
    store: Store, clock: FixedClock
) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, USD("1"))
    hold = store.reserve(acme.id, USD("0.5"), request_id="req-1", timeout_s=10)
    partial = replace(event(acme.id, "req-1"), status="partial")
    for _ in range(15):  # marks every 2 s, well past the hold's 10 s: the stream is alive
        clock.advance(2)
        assert store.mark_progress(hold, USD("0.1"), partial, alive_s=6)
    assert store.expire_reservations() == 0
    assert store.balance(acme.id).pending == USD("0.5")
    settled = store.settle(hold, USD("0.3"), event(acme.id, "req-1"))
    assert settled.charged == USD("0.3")
    assert store.balance(acme.id).available == USD("0.7")


def test_api_keys_are_found_by_prefix_and_revoked(store: Store) -> None:
    acme = store.create_account("acme")
    record = store.create_api_key(acme.id, "ck-abcdefgh", "0" * 64, "ci")
    found = store.find_api_key("ck-abcdefgh")
    assert found == record and found.active and found.account_name == "acme"
    assert store.find_api_key("ck-zzzzzzzz") is None
    revoked = store.revoke_api_key("ck-abcdefgh")
    assert not revoked.active
    assert [k.prefix for k in store.list_api_keys(acme.id)] == ["ck-abcdefgh"]


def test_concurrent_reservations_never_overdraw(db_url: str) -> None:
    """Eight threads, each with its own connection, race 40 reservations on a 25-unit balance."""
    setup = open_store(db_url)
    acme = setup.create_account("acme")
    setup.grant(acme.id, USD("25"))
    admitted: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        own = open_store(db_url)
        try:
            for attempt in range(5):
                request_id = f"w{index}-{attempt}"
                try:
                    own.reserve(acme.id, USD("1"), request_id=request_id, timeout_s=60)
                    outcome = admitted
                except InsufficientCredit:
                    outcome = refused
                with lock:
                    outcome.append(request_id)
        finally:
            own.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 25 and len(refused) == 15
    balance = setup.balance(acme.id)
    assert balance.available == Amount.zero() and balance.pending == USD("25")
    setup.close()

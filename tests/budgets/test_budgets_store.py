"""Budgets through the store, on SQLite and PostgreSQL: caps held at reserve, settled at settle,
released by void and expiry, per key and per account, with periods that roll over in UTC and
thresholds recorded once per period. Time is a FixedClock moved by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ciyuan.clock import FixedClock, datetime_to_us
from ciyuan.errors import BudgetExceeded, InsufficientCredit, InvalidRequest, NotFound
from ciyuan.metering.ports import Store
from ciyuan.store import open_store
from tests.budgets.helpers import USD, customer, reserve, settle, spend

NOV_30_2359 = datetime_to_us(datetime(2026, 11, 30, 23, 59, tzinfo=UTC))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOV_30_2359)


@pytest.fixture
def store(db_url: str, clock: FixedClock) -> Iterator[Store]:
    opened = open_store(db_url, clock=clock)
    yield opened
    opened.close()


def test_a_key_budget_holds_settles_and_refuses_with_the_cap_and_reset(store: Store) -> None:
    acme = customer(store, "acme")
    budget = store.set_budget(
        account_id=acme.account_id, api_key_id=acme.key_id, period="month", amount=USD("0.05")
    )
    first = reserve(store, acme, "0.03")
    with pytest.raises(BudgetExceeded) as caught:
        reserve(store, acme, "0.03")
    assert isinstance(caught.value, InsufficientCredit) and caught.value.code == "budget_exceeded"
    assert caught.value.message == (
        f"monthly budget of 0.05 USD for key {acme.prefix} has 0.02 USD left, less than this "
        "request may cost (up to 0.03 USD); it resets at 2026-12-01T00:00:00Z"
    )
    # Settle swaps the hold for the real charge: 0.01 spent, so 0.04 is free again.
    settle(store, acme, first, "0.01")
    [status] = store.list_budgets(acme.account_id)
    assert (status.budget, status.spent, status.held) == (budget, USD("0.01"), USD("0"))
    spend(store, acme, "0.04")
    with pytest.raises(BudgetExceeded, match=r"^monthly budget of 0.05 USD for key .* is spent;"):
        reserve(store, acme, "0.000000001")
    # The balance still has credit: only the cap refused, and the refusal held nothing.
    assert store.balance(acme.account_id).available == USD("99.95")
    assert store.balance(acme.account_id).pending == USD("0")


def test_void_and_expiry_give_the_hold_back(store: Store, clock: FixedClock) -> None:
    acme = customer(store, "acme")
    store.set_budget(account_id=acme.account_id, api_key_id=None, period="total", amount=USD("1"))
    voided = reserve(store, acme, "0.6")
    store.void(voided, None)
    forgotten = reserve(store, acme, "0.6")  # a crashed gateway never settles this one
    with pytest.raises(BudgetExceeded, match="does not reset"):
        reserve(store, acme, "0.6")
    clock.advance(61)
    assert store.expire_reservations() == 1
    assert store.list_budgets()[0].held == USD("0")
    later = reserve(store, acme, "0.6")
    # A late settle of the expired hold is still charged, to the budget as well as the balance.
    settle(store, acme, forgotten, "0.3")
    settle(store, acme, later, "0.5")
    [status] = store.list_budgets()
    assert (status.spent, status.held, status.remaining) == (USD("0.8"), USD("0"), USD("0.2"))


def test_an_account_budget_caps_all_its_keys_and_each_key_its_own(store: Store) -> None:
    acme = customer(store, "acme")
    store.set_budget(account_id=acme.account_id, api_key_id=None, period="day", amount=USD("1"))
    store.set_budget(
        account_id=acme.account_id, api_key_id=acme.key_id, period="day", amount=USD("0.5")
    )
    spend(store, acme, "0.5")
    with pytest.raises(BudgetExceeded, match=f"daily budget of 0.50 USD for key {acme.prefix}"):
        spend(store, acme, "0.1")
    # A second key of the same account is capped only by the account's budget.
    from ciyuan import apikeys

    new = apikeys.generate()
    other_key = store.create_api_key(acme.account_id, new.prefix, new.hash_hex, None)
    other = type(acme)(acme.account_id, other_key.id, other_key.prefix)
    spend(store, other, "0.5")
    with pytest.raises(BudgetExceeded, match=r"budget of 1\.00 USD for account acme is spent"):
        spend(store, other, "0.01")
    # Another account is not affected; replacing a budget keeps the spend so far.
    spend(store, customer(store, "globex"), "5")
    store.set_budget(account_id=acme.account_id, api_key_id=None, period="day", amount=USD("2"))
    spend(store, other, "0.01")
    by_subject = {s.budget.subject: s.spent for s in store.list_budgets()}
    assert by_subject == {"account acme": USD("1.01"), f"key {acme.prefix}": USD("0.5")}


def test_periods_roll_over_at_utc_boundaries(store: Store, clock: FixedClock) -> None:
    acme = customer(store, "acme")
    store.set_budget(
        account_id=acme.account_id, api_key_id=acme.key_id, period="month", amount=USD("1")
    )
    spend(store, acme, "0.9")
    late = reserve(store, acme, "0.1")  # admitted on 30 November at 23:59
    with pytest.raises(BudgetExceeded, match="resets at 2026-12-01T00:00:00Z"):
        reserve(store, acme, "0.1")
    clock.advance(59)
    with pytest.raises(BudgetExceeded):
        reserve(store, acme, "0.1")
    clock.advance(1)  # 1 December 00:00:00: a fresh month
    december = reserve(store, acme, "1")
    # The November hold settles into November, not into the new month.
    settle(store, acme, late, "0.1")
    settle(store, acme, december, "0.25")
    [status] = store.list_budgets()
    assert status.period.start_us == datetime_to_us(datetime(2026, 12, 1, tzinfo=UTC))
    assert (status.spent, status.held) == (USD("0.25"), USD("0"))


def test_thresholds_are_recorded_once_per_period(store: Store, clock: FixedClock) -> None:
    acme = customer(store, "acme")
    budget = store.set_budget(
        account_id=acme.account_id, api_key_id=None, period="day", amount=USD("1"),
        thresholds_pct=(50, 80, 100), webhook_url="http://127.0.0.1:9/hook",
    )  # fmt: skip
    spend(store, acme, "0.4")
    assert store.list_webhook_deliveries() == []
    spend(store, acme, "0.45")  # 85 %: crosses 50 and 80 in one settle
    spend(store, acme, "0.05")  # 90 %: crosses nothing new
    deliveries = store.list_webhook_deliveries()
    assert sorted(d.threshold_pct for d in deliveries) == [50, 80]
    assert {(d.budget_id, d.state, d.url) for d in deliveries} == {
        (budget.id, "pending", "http://127.0.0.1:9/hook")
    }
    clock.advance(3600)  # the next UTC day
    spend(store, acme, "0.5")
    assert sorted(d.threshold_pct for d in store.list_webhook_deliveries()) == [50, 50, 80]
    # Without a webhook URL the crossing is still recorded, as unsent.
    globex = customer(store, "globex")
    store.set_budget(
        account_id=globex.account_id, api_key_id=None, period="week", amount=USD("1"),
        thresholds_pct=(10,),
    )  # fmt: skip
    spend(store, globex, "0.2")
    assert store.list_webhook_deliveries()[0].state == "unsent"


def test_budget_input_is_checked(store: Store) -> None:
    acme = customer(store, "acme")
    globex = customer(store, "globex")
    with pytest.raises(InvalidRequest, match="period"):
        store.set_budget(
            account_id=acme.account_id, api_key_id=None, period="year", amount=USD("1")
        )
    with pytest.raises(InvalidRequest, match="above zero"):
        store.set_budget(account_id=acme.account_id, api_key_id=None, period="day", amount=USD("0"))
    with pytest.raises(InvalidRequest, match="webhook"):
        store.set_budget(
            account_id=acme.account_id, api_key_id=None, period="day", amount=USD("1"),
            webhook_url="file:///etc/passwd",
        )  # fmt: skip
    with pytest.raises(NotFound):
        store.set_budget(
            account_id=acme.account_id, api_key_id=globex.key_id, period="day", amount=USD("1")
        )
    budget = store.set_budget(
        account_id=acme.account_id, api_key_id=None, period="day", amount=USD("1")
    )
    assert store.remove_budget(budget.id) == budget
    spend(store, acme, "5")  # no cap any more
    with pytest.raises(NotFound):
        store.remove_budget(budget.id)

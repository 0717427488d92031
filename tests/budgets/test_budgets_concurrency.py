"""A small monthly cap raced by many workers in two store instances (two "gateways") on one
PostgreSQL database: each worker reserves a hold and settles a charge of at most that hold,
again and again, until the budget refuses it.

What must hold: the charges settled in the period never exceed the cap; the budget row equals
the sum of the usage events to the nano; no hold is left over; and the cap was not refused
early (what is left is smaller than one hold).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from ciyuan.errors import BudgetExceeded
from ciyuan.metering.ports import Store
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from tests.budgets.helpers import USD, Customer, customer, reserve, settle

WORKERS_PER_STORE = 6
HOLD = "0.01"
CAP = "0.25"


@pytest.fixture
def stores(pg_url: str) -> Iterator[tuple[Store, Store]]:
    first, second = open_store(pg_url), open_store(pg_url)
    yield first, second
    first.close()
    second.close()


def _worker(
    store: Store, who: Customer, seed: int, charged: list[Amount], errors: list[BaseException]
) -> None:
    rng = random.Random(seed)
    try:
        while True:
            try:
                held = reserve(store, who, HOLD)
            except BudgetExceeded:
                return
            # Real costs are at most the worst case that was held: 0.005 to 0.01.
            cost = f"0.{rng.randint(5_000_000, 10_000_000):09d}"
            charged.append(settle(store, who, held, cost).charged)
    except BaseException as error:  # reported by the main thread
        errors.append(error)


@pytest.mark.postgres
def test_two_gateways_cannot_both_pass_a_monthly_cap(stores: tuple[Store, Store]) -> None:
    first, second = stores
    acme = customer(first, "acme", credit="10")
    first.set_budget(
        account_id=acme.account_id, api_key_id=acme.key_id, period="month", amount=USD(CAP)
    )
    charged: list[Amount] = []
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_worker, args=(store, acme, seed, charged, errors))
        for seed, store in enumerate([first, second] * WORKERS_PER_STORE)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    total = sum(c.nanos for c in charged)
    [status] = second.list_budgets()
    assert total <= USD(CAP).nanos, "the cap was passed"
    assert status.spent.nanos == total and status.held == USD("0")
    assert USD(CAP).nanos - total < USD(HOLD).nanos, "the cap refused while a hold still fit"
    assert sum(r.cost.nanos for r in first.usage_by_model(acme.account_id)) == total
    assert first.balance(acme.account_id).available == USD("10") - Amount(total)

"""Shared by the budget tests: a customer with a key, and reserve → settle in one call."""

from __future__ import annotations

from dataclasses import dataclass

from ciyuan import apikeys
from ciyuan.clock import new_id
from ciyuan.ledger.transfers import Reservation, Settlement
from ciyuan.metering.ports import Store, UsageEvent
from ciyuan.pricing.money import Amount

USD = Amount.parse


@dataclass(frozen=True)
class Customer:
    account_id: str
    key_id: str
    prefix: str


def customer(store: Store, name: str, credit: str = "100") -> Customer:
    account = store.create_account(name)
    store.grant(account.id, USD(credit))
    new = apikeys.generate()
    record = store.create_api_key(account.id, new.prefix, new.hash_hex, None)
    return Customer(account.id, record.id, record.prefix)


def reserve(store: Store, who: Customer, amount: str) -> Reservation:
    return store.reserve(
        who.account_id, USD(amount), request_id=new_id("req"), timeout_s=60,
        api_key_id=who.key_id,
    )  # fmt: skip


def settle(store: Store, who: Customer, reservation: Reservation, cost: str) -> Settlement:
    event = UsageEvent(
        request_id=reservation.request_id, created_us=0, account_id=who.account_id,
        api_key_id=who.key_id, api="chat", model="gpt-4o-mini", upstream="demo", status="ok",
        http_status=200,
    )  # fmt: skip
    return store.settle(reservation, USD(cost), event)


def spend(store: Store, who: Customer, amount: str) -> Settlement:
    return settle(store, who, reserve(store, who, amount), amount)

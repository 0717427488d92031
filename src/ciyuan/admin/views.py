"""Domain objects as the JSON the admin API and the dashboard show.

Amounts are exact decimal strings (``"10.00"``), never floats. A key's hash is never shown.
"""

from __future__ import annotations

from typing import Any

from ciyuan.clock import us_to_datetime
from ciyuan.ledger.accounts import Account
from ciyuan.metering.ports import ApiKeyRecord
from ciyuan.pricing.model_price import ModelPrice
from ciyuan.pricing.money import Amount, nanos_per_token_to_per_million


def iso(us: int | None) -> str | None:
    if us is None:
        return None
    return us_to_datetime(us).isoformat(timespec="seconds").replace("+00:00", "Z")


def account_json(account: Account) -> dict[str, Any]:
    balance = account.balance
    return {
        "id": account.id,
        "name": account.name,
        "kind": account.kind.value,
        "created_at": iso(account.created_us),
        "floor": None if account.floor_nanos is None else str(Amount(account.floor_nanos)),
        "balance": {
            "posted": str(balance.posted),
            "pending": str(balance.pending),
            "available": str(balance.available),
        },
    }


def key_json(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "prefix": record.prefix,
        "account_id": record.account_id,
        "account_name": record.account_name,
        "label": record.label,
        "created_at": iso(record.created_us),
        "revoked_at": iso(record.revoked_us),
        "expires_at": iso(record.expires_us),
        "active": record.active,
    }


def price_json(price: ModelPrice, operator: bool) -> dict[str, Any]:
    """Rates per million tokens, as decimal strings, the way providers quote them."""
    per_million = {
        name: nanos_per_token_to_per_million(rate) for name, rate in price.rates().items()
    }
    return {
        "model": price.model,
        "provider": price.provider,
        "effective_from": price.effective_from.isoformat(),
        "origin": "operator" if operator else "shipped",
        "per_million_tokens": per_million,
        "call_fee": str(price.call_fee),
        "tiers": [
            {
                "above_input_tokens": tier.above_input_tokens,
                "per_million_tokens": {
                    name: nanos_per_token_to_per_million(rate)
                    for name, rate in tier.rates().items()
                },
            }
            for tier in price.tiers
        ],
        "source": price.source,
    }

"""The catalog's TOML format: read a document into prices, render a price back to TOML.

The shipped catalog (``catalog.toml``), the operator's prices file and the plain-TOML import all
use it. One ``[[price]]`` table is one version of one model's price::

    [[price]]
    model = "gpt-4o"
    provider = "openai"
    effective_from = 2024-10-01
    source = "https://openai.com/api/pricing/ (as of 2025-10-01)"
    aliases = ["gpt-4o-2024-08-06"]
    input = "2.50"          # USD per million tokens, one key per bucket (see model_price.py)
    cache_read = "1.25"
    output = "10.00"
    batch_ratio = "1/2"
    call_fee = "0.01"       # USD per call
    [[price.tiers]]
    above_input_tokens = 200000
    input = "5.00"
    output = "15.00"

Prices may be strings or TOML numbers; numbers are read as :class:`~decimal.Decimal`, never as
float, so ``0.075`` stays exactly 0.075. Errors name the file, the entry number and the field.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

from ciyuan.pricing.errors import PriceError
from ciyuan.pricing.model_price import RATE_NAMES, UNSET, ModelPrice, PriceTier
from ciyuan.pricing.money import (
    Amount,
    MoneyError,
    nanos_per_token_to_per_million,
    per_million_to_nanos_per_token,
)

FORMAT: Final = "ciyuan-prices/1"
_PRICE_KEYS: Final = frozenset(
    {
        "model",
        "provider",
        "effective_from",
        "source",
        "aliases",
        "call_fee",
        "batch_ratio",
        "context_window_tokens",
        "tiers",
        *RATE_NAMES,
    }
)
_TIER_KEYS: Final = frozenset({"above_input_tokens", *RATE_NAMES})


def parse_document(text: str, *, origin: str) -> list[ModelPrice]:
    """Every ``[[price]]`` of a catalog document; ``origin`` names the file in errors."""
    try:
        document = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise PriceError(f"{origin}: not valid TOML: {exc}") from exc
    declared = document.get("format", FORMAT)
    if declared != FORMAT:
        raise PriceError(f"{origin}: format is {declared!r}; this version reads {FORMAT!r}")
    unknown = set(document) - {"format", "price"}
    if unknown:
        raise PriceError(f"{origin}: unknown top-level keys {sorted(unknown)}")
    entries = document.get("price", [])
    if not isinstance(entries, list):
        raise PriceError(f"{origin}: 'price' must be an array of tables ([[price]])")
    return [
        price_from_table(entry, where=f"{origin}: price entry {number}")
        for number, entry in enumerate(entries, start=1)
    ]


def price_from_table(entry: object, *, where: str) -> ModelPrice:
    """One ``[[price]]`` table as a :class:`ModelPrice`; ``where`` prefixes every error."""
    if not isinstance(entry, Mapping):
        raise PriceError(f"{where}: must be a table")
    model = entry.get("model")
    if isinstance(model, str):
        where = f"{where} ({model!r})"
    unknown = set(entry) - _PRICE_KEYS
    if unknown:
        raise PriceError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("model", "provider", "source"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise PriceError(f"{where}: {key} must be a non-empty string", param=key)
    effective_from = entry.get("effective_from")
    if type(effective_from) is not date:
        raise PriceError(
            f"{where}: effective_from must be a TOML date like 2025-01-31, not {effective_from!r}",
            param="effective_from",
        )
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise PriceError(f"{where}: aliases must be a list of names", param="aliases")
    tiers = entry.get("tiers", [])
    if not isinstance(tiers, list):
        raise PriceError(f"{where}: tiers must be an array of tables", param="tiers")
    try:
        return ModelPrice(
            model=entry["model"].strip(),
            provider=entry["provider"].strip(),
            effective_from=effective_from,
            source=entry["source"].strip(),
            aliases=tuple(aliases),
            call_fee=_amount(entry.get("call_fee", "0"), where, "call_fee"),
            batch_ratio=_ratio(entry.get("batch_ratio"), where),
            context_window_tokens=_optional_int(entry.get("context_window_tokens"), where),
            tiers=tuple(_tier(tier, f"{where}: tier {n}") for n, tier in enumerate(tiers, start=1)),
            **_rates(entry, where),
        )
    except PriceError as exc:
        if exc.message.startswith(where):
            raise
        raise PriceError(f"{where}: {exc.message}", param=exc.param) from exc


def render_price(price: ModelPrice) -> str:
    """A ``[[price]]`` table that :func:`parse_document` reads back to an equal price."""
    lines = [
        "[[price]]",
        f"model = {_quote(price.model)}",
        f"provider = {_quote(price.provider)}",
        f"effective_from = {price.effective_from.isoformat()}",
        f"source = {_quote(price.source)}",
    ]
    if price.aliases:
        lines.append(f"aliases = [{', '.join(_quote(a) for a in price.aliases)}]")
    lines += [
        f'{name} = "{nanos_per_token_to_per_million(price.rate(name))}"' for name in RATE_NAMES
    ]
    if price.call_fee:
        lines.append(f'call_fee = "{price.call_fee}"')
    if price.batch_ratio is not None:
        lines.append(f'batch_ratio = "{price.batch_ratio}"')
    if price.context_window_tokens is not None:
        lines.append(f"context_window_tokens = {price.context_window_tokens}")
    for tier in price.tiers:
        lines += ["[[price.tiers]]", f"above_input_tokens = {tier.above_input_tokens}"]
        lines += [
            f'{name} = "{nanos_per_token_to_per_million(tier.rate(name))}"' for name in RATE_NAMES
        ]
    return "\n".join(lines) + "\n"


def _rates(table: Mapping[str, Any], where: str) -> dict[str, int]:
    rates: dict[str, int] = {}
    for name in RATE_NAMES:
        value = table.get(name)
        if value is None:
            if name in ("input", "output"):
                raise PriceError(f"{where}: {name} price is missing", param=name)
            rates[name] = UNSET
            continue
        rates[name] = _per_million(value, where, name)
    return rates


def _per_million(value: object, where: str, name: str) -> int:
    # float never gets here (TOML floats parse as Decimal); bool is refused explicitly.
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise PriceError(
            f"{where}: {name} must be a decimal price per million tokens, not {value!r}",
            param=name,
        )
    try:
        return per_million_to_nanos_per_token(str(value))
    except MoneyError as exc:
        raise PriceError(f"{where}: {name}: {exc}", param=name) from exc


def _amount(value: object, where: str, name: str) -> Amount:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise PriceError(f"{where}: {name} must be a decimal amount, not {value!r}", param=name)
    try:
        amount = Amount.parse(str(value))
    except MoneyError as exc:
        raise PriceError(f"{where}: {name}: {exc}", param=name) from exc
    if amount.nanos < 0:
        raise PriceError(f"{where}: {name} must not be negative", param=name)
    return amount


def _ratio(value: object, where: str) -> Fraction | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise PriceError(f'{where}: batch_ratio must be like "1/2", not {value!r}')
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError) as exc:
        raise PriceError(f'{where}: batch_ratio {value!r} is not a ratio like "1/2"') from exc


def _optional_int(value: object, where: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value <= 0:
        raise PriceError(f"{where}: context_window_tokens must be a positive integer")
    return value


def _tier(table: object, where: str) -> PriceTier:
    if not isinstance(table, Mapping):
        raise PriceError(f"{where}: must be a table")
    unknown = set(table) - _TIER_KEYS
    if unknown:
        raise PriceError(f"{where}: unknown keys {sorted(unknown)}")
    above = table.get("above_input_tokens")
    if type(above) is not int:
        raise PriceError(f"{where}: above_input_tokens must be an integer")
    return PriceTier(above_input_tokens=above, **_rates(table, where))


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'

"""Import the price lists operators already keep: LiteLLM, OpenRouter, plain TOML and CSV.

Every reader turns a file's text into :class:`ModelPrice` versions that all take effect on one
date, without touching any catalog: the caller checks them against the catalog and appends
them only if every one is valid, so a bad file changes nothing. Numbers are read as
:class:`~decimal.Decimal` from the file's own text (JSON floats never become binary floats), and
a price finer than one nano per token is refused, not rounded.

* **LiteLLM** ``model_prices_and_context_window.json``: USD *per token*
  (``input_cost_per_token``, ``cache_read_input_token_cost``, ``…_above_200k_tokens`` …).
* **OpenRouter** ``GET /api/v1/models`` saved to a file: ``data[].pricing`` in USD per token as
  strings; ``"-1"`` marks a router whose price varies, which is skipped.
* **TOML**: the catalog's own format (``catalog_file.py``).
* **CSV**: one row per model, USD per million tokens, header row required.

Entries that carry no per-token price (image generation per pixel, rerank per query …) are
skipped and reported; entries with a malformed price are errors naming the entry or line.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final, Literal

from ciyuan.pricing.catalog_file import parse_document, price_from_table
from ciyuan.pricing.errors import PriceError
from ciyuan.pricing.model_price import UNSET, ModelPrice, PriceTier
from ciyuan.pricing.money import NANOS_PER_UNIT, Amount, MoneyError

ImportFormat = Literal["litellm", "openrouter", "toml", "csv"]
FORMATS: Final = ("litellm", "openrouter", "toml", "csv")
ENTRIES_MAX: Final = 100_000
"""LiteLLM's map has a few thousand entries; far more means the wrong file."""


@dataclass(frozen=True, slots=True)
class ImportedPrices:
    prices: tuple[ModelPrice, ...]
    skipped: tuple[str, ...]
    """Entries without a per-token price, each with the reason."""


def read_prices(
    text: str,
    *,
    format: ImportFormat,
    origin: str,
    effective_from: date,
    provider: str | None = None,
    model_glob: str | None = None,
) -> ImportedPrices:
    """The prices in ``text``; ``provider`` and ``model_glob`` keep only matching entries."""
    readers: dict[str, Callable[[str, str, date], ImportedPrices]] = {
        "litellm": _read_litellm,
        "openrouter": _read_openrouter,
        "toml": _read_toml,
        "csv": _read_csv,
    }
    if format not in readers:
        raise PriceError(f"unknown import format {format!r}; use one of {', '.join(FORMATS)}")
    found = readers[format](text, origin, effective_from)
    kept = tuple(
        price
        for price in found.prices
        if (provider is None or price.provider == provider)
        and (model_glob is None or fnmatch.fnmatchcase(price.model, model_glob))
    )
    return ImportedPrices(kept, found.skipped)


# -- LiteLLM -----------------------------------------------------------------------------------

_LITELLM_RATES: Final = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_write_5m": "cache_creation_input_token_cost",
    "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
    "reasoning": "output_cost_per_reasoning_token",
    "audio_input": "input_cost_per_audio_token",
    "audio_output": "output_cost_per_audio_token",
    "image_input": "input_cost_per_image_token",
    "image_output": "output_cost_per_image_token",
}
_LITELLM_TIER_RATES: Final = {
    "input": "input_cost_per_token_above_200k_tokens",
    "output": "output_cost_per_token_above_200k_tokens",
    "cache_read": "cache_read_input_token_cost_above_200k_tokens",
    "cache_write_5m": "cache_creation_input_token_cost_above_200k_tokens",
}


def _read_litellm(text: str, origin: str, effective_from: date) -> ImportedPrices:
    document = _load_json(text, origin)
    if not isinstance(document, Mapping):
        raise PriceError(f"{origin}: a LiteLLM price map is a JSON object of models")
    _check_size(len(document), origin)
    prices: list[ModelPrice] = []
    skipped: list[str] = []
    for model, entry in document.items():
        where = f"{origin}: entry {model!r}"
        if model == "sample_spec":  # LiteLLM's documentation of its own fields
            continue
        if not isinstance(entry, Mapping):
            raise PriceError(f"{where}: must be an object")
        if "input_cost_per_token" not in entry or "output_cost_per_token" not in entry:
            skipped.append(f"{model}: no per-token input and output price")
            continue
        rates = {
            name: _per_token(entry.get(key), where, key) for name, key in _LITELLM_RATES.items()
        }
        tier_rates = {
            name: _per_token(entry.get(key), where, key)
            for name, key in _LITELLM_TIER_RATES.items()
        }
        tiers: tuple[PriceTier, ...] = ()
        if tier_rates["input"] != UNSET:
            if tier_rates["output"] == UNSET:
                tier_rates["output"] = rates["output"]
            tiers = (PriceTier(above_input_tokens=200_000, **tier_rates),)
        prices.append(
            _build(
                where,
                model=model,
                provider=_text(entry.get("litellm_provider"), "litellm"),
                effective_from=effective_from,
                source=f"LiteLLM model price map ({origin})",
                tiers=tiers,
                batch_ratio=_litellm_batch_ratio(entry, where),
                context_window_tokens=_positive_int(entry.get("max_input_tokens")),
                **rates,
            )
        )
    return ImportedPrices(tuple(prices), tuple(skipped))


def _litellm_batch_ratio(entry: Mapping[str, Any], where: str) -> Fraction | None:
    # LiteLLM lists batch prices rather than a ratio; a ratio exists only if both agree.
    batch_in = entry.get("input_cost_per_token_batches")
    batch_out = entry.get("output_cost_per_token_batches")
    if batch_in is None or batch_out is None:
        return None
    list_in = _per_token(entry["input_cost_per_token"], where, "input_cost_per_token")
    list_out = _per_token(entry["output_cost_per_token"], where, "output_cost_per_token")
    batch_in_nanos = _per_token(batch_in, where, "input_cost_per_token_batches")
    batch_out_nanos = _per_token(batch_out, where, "output_cost_per_token_batches")
    if list_in == 0 or list_out == 0:
        return None
    ratio = Fraction(batch_in_nanos, list_in)
    return ratio if ratio == Fraction(batch_out_nanos, list_out) and 0 < ratio <= 1 else None


# -- OpenRouter --------------------------------------------------------------------------------

_OPENROUTER_RATES: Final = {
    "input": "prompt",
    "output": "completion",
    "cache_read": "input_cache_read",
    "cache_write_5m": "input_cache_write",
    "reasoning": "internal_reasoning",
    "audio_input": "input_audio",
    "audio_output": "output_audio",
}


def _read_openrouter(text: str, origin: str, effective_from: date) -> ImportedPrices:
    document = _load_json(text, origin)
    data = document.get("data") if isinstance(document, Mapping) else None
    if not isinstance(data, list):
        raise PriceError(f"{origin}: an OpenRouter models listing is an object with a 'data' list")
    _check_size(len(data), origin)
    prices: list[ModelPrice] = []
    skipped: list[str] = []
    for number, entry in enumerate(data, start=1):
        where = f"{origin}: data[{number - 1}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            raise PriceError(f"{where}: must be an object with a string 'id'")
        model = entry["id"]
        where = f"{where} ({model!r})"
        pricing = entry.get("pricing")
        if not isinstance(pricing, Mapping):
            raise PriceError(f"{where}: 'pricing' must be an object")
        if pricing.get("prompt") == "-1" or pricing.get("completion") == "-1":
            skipped.append(f"{model}: variable price (a router)")
            continue
        rates: dict[str, int] = {}
        for name, key in _OPENROUTER_RATES.items():
            value = _per_token(pricing.get(key), where, f"pricing.{key}")
            # "0" for an optional bucket means "not priced apart", not "free".
            optional = name not in ("input", "output")
            rates[name] = UNSET if optional and value == 0 else value
        if UNSET in (rates["input"], rates["output"]):
            raise PriceError(f"{where}: pricing.prompt and pricing.completion are required")
        prices.append(
            _build(
                where,
                model=model,
                provider="openrouter",
                effective_from=effective_from,
                source=f"OpenRouter models listing ({origin})",
                call_fee=_usd(pricing.get("request", "0"), where, "pricing.request"),
                context_window_tokens=_positive_int(entry.get("context_length")),
                **rates,
            )
        )
    return ImportedPrices(tuple(prices), tuple(skipped))


# -- TOML and CSV ------------------------------------------------------------------------------


def _read_toml(text: str, origin: str, effective_from: date) -> ImportedPrices:
    # The operator's TOML carries its own dates; effective_from is only for tables without one.
    del effective_from
    return ImportedPrices(tuple(parse_document(text, origin=origin)), ())


_CSV_OPTIONAL: Final = frozenset(
    {
        "provider",
        "effective_from",
        "source",
        "cache_read",
        "cache_write_5m",
        "cache_write_1h",
        "reasoning",
        "audio_input",
        "audio_output",
        "image_input",
        "image_output",
        "call_fee",
        "batch_ratio",
        "context_window_tokens",
    }
)


def _read_csv(text: str, origin: str, effective_from: date) -> ImportedPrices:
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = {"model", "input", "output"} - set(header)
    if missing:
        raise PriceError(f"{origin}: line 1: the header needs the columns {sorted(missing)}")
    unknown = set(header) - _CSV_OPTIONAL - {"model", "input", "output"}
    if unknown:
        raise PriceError(f"{origin}: line 1: unknown columns {sorted(unknown)}")
    prices: list[ModelPrice] = []
    for row in reader:
        where = f"{origin}: line {reader.line_num}"
        if None in row:
            raise PriceError(f"{where}: more fields than the header has")
        cells = {key.strip(): (value or "").strip() for key, value in row.items()}
        if not any(cells.values()):
            continue
        table: dict[str, Any] = {k: v for k, v in cells.items() if v != ""}
        table.setdefault("provider", "operator")
        table.setdefault("source", f"CSV import ({origin})")
        table["effective_from"] = _csv_date(table.get("effective_from"), effective_from, where)
        if "context_window_tokens" in table:
            table["context_window_tokens"] = _csv_int(table["context_window_tokens"], where)
        prices.append(price_from_table(table, where=where))
        _check_size(len(prices), origin)
    return ImportedPrices(tuple(prices), ())


def _csv_date(value: object, default: date, where: str) -> date:
    if value is None:
        return default
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise PriceError(f"{where}: effective_from {value!r} is not a date (YYYY-MM-DD)") from None


def _csv_int(value: object, where: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise PriceError(f"{where}: context_window_tokens {value!r} is not an integer") from None


# -- shared parsing ----------------------------------------------------------------------------


def _load_json(text: str, origin: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise PriceError(f"{origin}: not valid JSON: {exc}") from exc


def _check_size(count: int, origin: str) -> None:
    if count > ENTRIES_MAX:
        raise PriceError(f"{origin}: more than {ENTRIES_MAX} entries; is this the right file?")


def _per_token(value: object, where: str, key: str) -> int:
    """A USD-per-token price as whole nanos per token; absent means UNSET."""
    if value is None:
        return UNSET
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise PriceError(f"{where}: {key} must be a number, not {_shown(value)}", param=key)
    try:
        usd = Decimal(str(value).strip())
    except InvalidOperation:
        raise PriceError(f"{where}: {key} {_shown(value)} is not a number", param=key) from None
    if not usd.is_finite() or usd < 0:
        raise PriceError(f"{where}: {key} {_shown(value)} must be a non-negative number", param=key)
    nanos = usd * NANOS_PER_UNIT
    if nanos != nanos.to_integral_value():
        raise PriceError(
            f"{where}: {key} {_shown(value)} USD per token is finer than 1e-9; "
            "the ledger cannot charge it exactly",
            param=key,
        )
    return int(nanos)


def _shown(value: object) -> str:
    # A number as the file wrote it (Decimal's repr would leak Python syntax into the message).
    return str(value) if isinstance(value, Decimal) else repr(value)


def _usd(value: object, where: str, key: str) -> Amount:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise PriceError(f"{where}: {key} must be a number, not {value!r}", param=key)
    try:
        amount = Amount.parse(str(value))
    except MoneyError as exc:
        raise PriceError(f"{where}: {key}: {exc}", param=key) from exc
    if amount.nanos < 0:
        raise PriceError(f"{where}: {key} must not be negative", param=key)
    return amount


def _positive_int(value: object) -> int | None:
    return value if type(value) is int and value > 0 else None


def _text(value: object, default: str) -> str:
    return value.strip() if isinstance(value, str) and value.strip() else default


def _build(where: str, **fields: Any) -> ModelPrice:
    try:
        return ModelPrice(**fields)
    except PriceError as exc:
        raise PriceError(f"{where}: {exc.message}", param=exc.param) from exc

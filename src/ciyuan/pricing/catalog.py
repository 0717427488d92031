"""The price catalog: every version of every model's price, and which one applies when.

Two layers, each a list of dated versions per model:

* the **shipped** catalog (``catalog.toml`` in this package): providers' list prices, each with
  its source and the date it was read;
* the **operator** layer (a prices file written by ``ciyuan prices set|import``): overrides and
  custom models. Where the operator has a version in force, it wins over the shipped one.

A version is in force from its ``effective_from`` date (UTC) until the next version of the same
model in the same layer. Versions are only ever added, never edited: re-pricing a past request
with its original timestamp therefore gives the same answer forever. Two versions of one model
with the same date in one layer are refused (which one would apply?).

Model names resolve like a provider's router would: the exact name, an alias, then the name
without a provider prefix (``openai/gpt-4o``, ``models/gemini-2.5-pro``), then without a
dated-snapshot suffix (``-2024-08-06``, ``-20250929``, ``@20250929``, ``-latest``). There is no
prefix matching, so ``gpt-4o-mini`` can never be billed as ``gpt-4o``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Final

from ciyuan.pricing.catalog_file import parse_document
from ciyuan.pricing.errors import PriceError
from ciyuan.pricing.model_price import ModelPrice, PriceTier, Rates

__all__ = ["Catalog", "ModelPrice", "PriceTier", "Rates"]

_SNAPSHOT_SUFFIX: Final = re.compile(r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})|-latest)$")
_BEDROCK_FORM: Final = re.compile(r"^(?:[a-z]{2,4}\.)?([a-z0-9-]+)\.(.+?)(?:-v\d+(?::\d+)?)?$")
"""``us.anthropic.claude-sonnet-4-5-20250929-v1:0`` → provider ``anthropic``, model name."""
_FOUND_CACHED_MAX: Final = 4096
"""Lookups remembered per catalog; model names come from clients, so the memo is bounded."""


class _Layer:
    """One layer's versions, by canonical model name, oldest first; plus its aliases."""

    def __init__(self, prices: Iterable[ModelPrice], *, origin: str) -> None:
        self.versions: dict[str, list[ModelPrice]] = {}
        for price in prices:
            self.versions.setdefault(price.model, []).append(price)
        self.aliases: dict[str, str] = {}
        for model, versions in self.versions.items():
            versions.sort(key=lambda p: p.effective_from)
            for earlier, later in itertools.pairwise(versions):
                if earlier.effective_from == later.effective_from:
                    raise PriceError(
                        f"{origin}: two prices of {model!r} take effect on "
                        f"{later.effective_from.isoformat()}; effective dates must not overlap",
                        param="effective_from",
                    )
            for version in versions:
                for alias in version.aliases:
                    owner = self.aliases.setdefault(alias, model)
                    if owner != model or alias in self.versions:
                        raise PriceError(
                            f"{origin}: the name {alias!r} is claimed by both {owner!r} "
                            f"and {model!r}",
                            param="aliases",
                        )

    def canonical(self, name: str) -> str | None:
        if name in self.versions:
            return name
        return self.aliases.get(name)

    def in_force(self, model: str, day: date) -> ModelPrice | None:
        found = None
        for version in self.versions.get(model, ()):
            if version.effective_from > day:
                break
            found = version
        return found


class Catalog:
    """Immutable: adding versions returns a new catalog, so a loaded one never changes."""

    def __init__(
        self,
        shipped: Iterable[ModelPrice] = (),
        operator: Iterable[ModelPrice] = (),
    ) -> None:
        self._shipped_prices = tuple(shipped)
        self._operator_prices = tuple(operator)
        self._shipped = _Layer(self._shipped_prices, origin="shipped catalog")
        self._operator = _Layer(self._operator_prices, origin="operator prices")
        self._found: dict[tuple[str, date], ModelPrice | None] = {}
        """``price_for`` by (model, day): the catalog is immutable, and resolving a name (its
        candidate forms, aliases, both layers) on every request was ~2% of the gateway's CPU."""

    @classmethod
    def load_default(cls) -> Catalog:
        """The shipped catalog alone."""
        return cls(_shipped_prices())

    @classmethod
    def load(cls, *, operator_file: Path | None = None) -> Catalog:
        """The shipped catalog with the operator's prices file layered over it.

        A prices file that does not exist yet is an empty layer: ``ciyuan prices set``
        creates it on first use.
        """
        operator: list[ModelPrice] = []
        if operator_file is not None and operator_file.exists():
            text = operator_file.read_text(encoding="utf-8")
            operator = parse_document(text, origin=str(operator_file))
        return cls(_shipped_prices(), operator)

    @property
    def operator_prices(self) -> tuple[ModelPrice, ...]:
        return self._operator_prices

    @property
    def shipped_prices(self) -> tuple[ModelPrice, ...]:
        return self._shipped_prices

    def with_operator_prices(self, prices: Iterable[ModelPrice]) -> Catalog:
        """A new catalog with operator versions appended.

        Each must take effect strictly after the model's latest operator version: a version
        dated before it would change what already-charged requests cost.
        """
        added = list(prices)
        latest: dict[str, date] = {
            model: versions[-1].effective_from
            for model, versions in self._operator.versions.items()
        }
        for price in added:
            previous = latest.get(price.model)
            if previous is not None and price.effective_from <= previous:
                raise PriceError(
                    f"a new price of {price.model!r} from {price.effective_from.isoformat()} "
                    f"would rewrite history: its latest price already takes effect on "
                    f"{previous.isoformat()}",
                    param="effective_from",
                )
            latest[price.model] = price.effective_from
        return Catalog(self._shipped_prices, (*self._operator_prices, *added))

    def price_for(self, model: str, at: datetime | None = None) -> ModelPrice | None:
        """The price of ``model`` in force at ``at`` (an aware datetime; default: now).

        None means the catalog has no price for it then: the caller decides whether an
        unpriced model is refused.
        """
        if at is None:
            at = datetime.now(UTC)
        assert at.tzinfo is not None, "price_for needs an aware datetime"
        day = at.astimezone(UTC).date()
        key = (model, day)
        try:
            return self._found[key]
        except KeyError:
            pass
        found = self._lookup(model, day)
        if len(self._found) >= _FOUND_CACHED_MAX:
            self._found.clear()
        self._found[key] = found
        return found

    def _lookup(self, model: str, day: date) -> ModelPrice | None:
        for name in candidate_names(model):
            # An alias from either layer names the model; the operator's version of that model
            # wins over the shipped one, so overriding "gpt-4o" also covers its snapshots.
            canonicals = {self._operator.canonical(name), self._shipped.canonical(name)}
            for canonical in sorted(c for c in canonicals if c is not None):
                found = self._operator.in_force(canonical, day) or self._shipped.in_force(
                    canonical, day
                )
                if found is not None:
                    return found
        return None

    def versions(self, model: str) -> list[ModelPrice]:
        """Every version of one canonical model, both layers, oldest first."""
        both = [*self._shipped.versions.get(model, ()), *self._operator.versions.get(model, ())]
        return sorted(both, key=lambda p: (p.effective_from, p in self._operator_prices))

    def models(self) -> list[str]:
        return sorted({*self._shipped.versions, *self._operator.versions})

    def current(self, at: datetime | None = None) -> list[ModelPrice]:
        """The price in force for every model at ``at`` (default: now), sorted by model."""
        found = (self.price_for(model, at) for model in self.models())
        return [price for price in found if price is not None]


def candidate_names(model: str) -> Iterator[str]:
    """The names to look up for ``model``, most specific first."""
    seen: set[str] = set()
    for name in _prefix_forms(model.strip()):
        for form in (name, name.lower()):
            for candidate in (form, _SNAPSHOT_SUFFIX.sub("", form)):
                if candidate and candidate not in seen:
                    seen.add(candidate)
                    yield candidate


def _prefix_forms(model: str) -> Iterator[str]:
    yield model
    rest = model
    while "/" in rest:
        rest = rest.split("/", 1)[1]
        yield rest
    bedrock = _BEDROCK_FORM.match(rest)
    if bedrock and bedrock.group(1) in {"anthropic", "meta", "mistral", "amazon", "deepseek"}:
        yield bedrock.group(2)


@cache
def _shipped_prices() -> tuple[ModelPrice, ...]:
    # Parsed once per process: the file ships with the code and cannot change under it.
    text = resources.files("ciyuan.pricing").joinpath("catalog.toml").read_text(encoding="utf-8")
    return tuple(parse_document(text, origin="ciyuan/pricing/catalog.toml"))

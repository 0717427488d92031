"""The operator's prices file: append new versions, all or nothing, never rewriting old ones.

``ciyuan prices set`` and ``ciyuan prices import`` go through :func:`add_operator_prices`: it
drops versions that would change nothing that is billed, checks the rest against the whole
catalog (effective dates strictly after the model's latest operator version), and only then
writes the file. The new file is the old text with the new ``[[price]]`` tables after it,
written to a temporary file and renamed over the old one, so a crash leaves either the old
file or the new one, never half of it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path

from ciyuan.pricing.catalog import Catalog
from ciyuan.pricing.catalog_file import FORMAT, parse_document, render_price
from ciyuan.pricing.model_price import ModelPrice


@dataclass(frozen=True, slots=True)
class AddedPrices:
    catalog: Catalog
    """The catalog with the new versions: what the file now holds over the shipped one."""
    added: tuple[ModelPrice, ...]
    unchanged: tuple[str, ...]
    """Models whose price in force already had exactly these rates (nothing was written)."""


def plan_operator_prices(catalog: Catalog, prices: Iterable[ModelPrice]) -> AddedPrices:
    """The new versions worth writing, checked against ``catalog``; writes nothing."""
    added: list[ModelPrice] = []
    unchanged: list[str] = []
    for price in prices:
        at = datetime.combine(price.effective_from, time(), tzinfo=UTC)
        current = catalog.price_for(price.model, at)
        if current is not None and current.same_rates_as(price):
            unchanged.append(price.model)
            continue
        added.append(price)
    return AddedPrices(catalog.with_operator_prices(added), tuple(added), tuple(unchanged))


def add_operator_prices(
    path: Path, prices: Iterable[ModelPrice], *, catalog: Catalog | None = None
) -> AddedPrices:
    """Append ``prices`` to the prices file at ``path`` as new versions (see module doc)."""
    if catalog is None:
        catalog = Catalog.load(operator_file=path)
    result = plan_operator_prices(catalog, prices)
    if result.added:
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        new = _appended(old, result.added)
        # Re-read what will be written: the file must load back to the same versions.
        assert parse_document(new, origin=str(path))[-len(result.added) :] == list(result.added)
        _replace(path, new)
    return result


def _appended(old: str, prices: Iterable[ModelPrice]) -> str:
    if not old.strip():
        old = (
            "# Ciyuan operator prices: each [[price]] is one version; add, never edit.\n"
            f'format = "{FORMAT}"\n'
        )
    blocks = "\n".join(render_price(price) for price in prices)
    return old.rstrip("\n") + "\n\n" + blocks


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

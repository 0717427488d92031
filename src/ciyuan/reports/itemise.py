"""Itemising charged usage by model: bucket lines at their unit prices, summing exactly.

Each request's cost lines come from its usage event (``detail.cost.lines``, as
``pricing.cost`` wrote them). The ledger's charge can differ from that cost: what even the
account's floor could not cover was not charged. That difference becomes an ``unbilled`` line,
and a request with no cost lines one ``unitemised`` line, so a model's lines always sum to what
the ledger charged for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ciyuan.metering.ports import ModelUsage, PriceLine
from ciyuan.pricing.money import Amount


@dataclass
class _Model:
    counts: list[int] = field(default_factory=lambda: [0] * 5)
    charged_nanos: int = 0
    lines: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    def line(self, bucket: str, unit_nanos: int, tokens: int, amount_nanos: int) -> None:
        found = self.lines.setdefault((bucket, unit_nanos), [0, 0])
        found[0] += tokens
        found[1] += amount_nanos


class Itemiser:
    """Accumulates charged requests one by one (a month may hold millions) into model lines."""

    def __init__(self) -> None:
        self._models: dict[str, _Model] = {}

    def add(
        self,
        model: str,
        tokens: tuple[int, int, int, int],
        charged_nanos: int,
        detail: dict[str, Any],
    ) -> None:
        """One request: ``tokens`` is (input, cached, output, reasoning)."""
        entry = self._models.setdefault(model, _Model())
        for index, count in enumerate((1, *tokens)):
            entry.counts[index] += count
        entry.charged_nanos += charged_nanos
        explained = 0
        cost = detail.get("cost")
        for line in cost.get("lines", []) if isinstance(cost, dict) else []:
            amount_nanos = int(line["amount_nanos"])
            bucket, unit_nanos, tokens_of_line = line["bucket"], line["unit_nanos"], line["tokens"]
            entry.line(str(bucket), int(unit_nanos), int(tokens_of_line), amount_nanos)
            explained += amount_nanos
        if explained == 0 and charged_nanos:
            entry.line("unitemised", 0, 0, charged_nanos)
        elif explained != charged_nanos:
            entry.line("unbilled", 0, 0, charged_nanos - explained)

    def items(self) -> tuple[ModelUsage, ...]:
        found = []
        for model in sorted(self._models):
            entry = self._models[model]
            lines = tuple(
                PriceLine(bucket, unit, tokens, Amount(amount))
                for (bucket, unit), (tokens, amount) in sorted(
                    entry.lines.items(), key=lambda kv: (kv[0][1] == 0, kv[0])
                )
                if tokens or amount
            )
            assert sum(line.amount.nanos for line in lines) == entry.charged_nanos, model
            requests, inp, cached, out, reasoning = entry.counts
            found.append(
                ModelUsage(
                    model, requests, inp, cached, out, reasoning, Amount(entry.charged_nanos), lines
                )
            )
        return tuple(found)

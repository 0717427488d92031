"""Model routes: which deployments serve a model, in which order they are tried.

A request goes to one deployment chosen at random by weight; on a connection failure, a 429 or
a 5xx before the first byte it falls back to the others, heaviest first. All of it happens under
one reservation, so a fallback never charges twice.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ciyuan.errors import PermissionDenied, UnknownModel
from ciyuan.gateway.upstream.base import Upstream
from ciyuan.pricing.catalog import Catalog, ModelPrice


@dataclass(frozen=True, slots=True)
class Deployment:
    upstream: Upstream
    model: str | None
    """The upstream's own name for the model, when it differs from the client's."""
    weight: int


@dataclass(frozen=True, slots=True)
class Route:
    pattern: str
    deployments: tuple[Deployment, ...]

    def matches(self, model: str) -> bool:
        return model == self.pattern or fnmatch.fnmatchcase(model, self.pattern)


@dataclass(frozen=True, slots=True)
class Resolved:
    deployments: tuple[Deployment, ...]
    price: ModelPrice | None


class Router:
    def __init__(
        self,
        routes: Sequence[Route],
        catalog: Catalog,
        *,
        explicit: bool,
        allow_unpriced_models: bool,
        rng: random.Random | None = None,
    ) -> None:
        self._routes = tuple(routes)
        self.catalog = catalog
        self._explicit = explicit
        self._allow_unpriced = allow_unpriced_models
        self._rng = rng or random.Random()

    def resolve(self, model: str, dialect: str) -> Resolved:
        route = next((r for r in self._routes if r.matches(model)), None)
        candidates = (
            tuple(d for d in route.deployments if d.upstream.speaks(dialect)) if route else ()
        )
        if not candidates:
            raise UnknownModel(
                f"The model `{model}` does not exist or you do not have access to it."
            )
        price = self.catalog.price_for(model)
        if price is None and not self._allow_unpriced:
            if not self._explicit:
                # Every priced model is routed by default: an unpriced name is simply unknown.
                raise UnknownModel(
                    f"The model `{model}` does not exist or you do not have access to it."
                )
            raise PermissionDenied(
                f"model {model!r} has no price, so it cannot be billed; an operator can add one "
                "with `ciyuan prices set`"
            )
        return Resolved(self._ordered(candidates), price)

    def _ordered(self, candidates: tuple[Deployment, ...]) -> tuple[Deployment, ...]:
        if len(candidates) == 1:
            return candidates
        first = self._rng.choices(candidates, weights=[d.weight for d in candidates])[0]
        rest = sorted((d for d in candidates if d is not first), key=lambda d: -d.weight)
        return (first, *rest)

    def models(self, dialect: str) -> list[str]:
        """The model names a client may ask for on this dialect's APIs."""
        names = []
        for name in self.catalog.models():
            try:
                self.resolve(name, dialect)
            except (UnknownModel, PermissionDenied):
                continue
            names.append(name)
        if self._explicit:
            names += [
                r.pattern
                for r in self._routes
                if not any(c in r.pattern for c in "*?[") and r.pattern not in names
            ]
        return sorted(set(names))

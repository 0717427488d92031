"""One version of one model's price: whole nanos per token for every usage bucket.

Every rate is an ``int`` of nanos (10⁻⁹ USD) per token, so a cost is an exact integer product.
A bucket the provider does not price apart falls back to the rate it is billed at in practice:

    cache_read, cache_write_5m, audio_input, image_input  →  input
    cache_write_1h                                        →  cache_write_5m
    reasoning, audio_output, image_output                 →  output

so a missing cache price charges cached tokens at the full input rate (never less than the
list price), and reasoning costs what output costs (how OpenAI, Anthropic and Google bill it).
After construction every rate is a concrete int; :data:`UNSET` exists only as the
"fall back" marker in constructor calls.

A price may have context tiers: above ``above_input_tokens`` prompt tokens (caches included)
*every* token of the request is billed at the tier's rates, as Anthropic and Google do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Final

from ciyuan.pricing.errors import PriceError
from ciyuan.pricing.money import AMOUNT_NANOS_MAX, ZERO, Amount

UNSET: Final = -1
"""Constructor marker: this bucket is not priced apart and takes its fallback rate."""

RATE_NAMES: Final = (
    "input",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "output",
    "reasoning",
    "audio_input",
    "audio_output",
    "image_input",
    "image_output",
)
"""The rate of each :class:`~ciyuan.pricing.usage.Usage` bucket (its name minus ``_tokens``)."""

_FALLBACK: Final = {
    "cache_read": "input",
    "cache_write_5m": "input",
    "cache_write_1h": "cache_write_5m",
    "reasoning": "output",
    "audio_input": "input",
    "audio_output": "output",
    "image_input": "input",
    "image_output": "output",
}

RATE_NANOS_MAX: Final = 10**9
"""1 USD per token (10⁶ USD per million): far above any list price, catches unit mistakes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rates:
    """Nanos per token for every bucket; see the module docstring for the fallbacks."""

    input: int
    output: int
    cache_read: int = UNSET
    cache_write_5m: int = UNSET
    cache_write_1h: int = UNSET
    reasoning: int = UNSET
    audio_input: int = UNSET
    audio_output: int = UNSET
    image_input: int = UNSET
    image_output: int = UNSET

    def __post_init__(self) -> None:
        _resolve_rates(self, "rates")

    def rate(self, bucket: str) -> int:
        """Nanos per token for a rate name (``"input"``) or a usage field (``"input_tokens"``)."""
        name = bucket.removesuffix("_tokens")
        assert name in RATE_NAMES, name
        value: int = getattr(self, name)
        return value

    def rates(self) -> dict[str, int]:
        return {name: self.rate(name) for name in RATE_NAMES}


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceTier(Rates):
    """Rates that apply to a whole request whose prompt exceeds ``above_input_tokens``."""

    above_input_tokens: int

    def __post_init__(self) -> None:
        _resolve_rates(self, f"tier above {self.above_input_tokens!r} input tokens")
        if type(self.above_input_tokens) is not int or self.above_input_tokens <= 0:
            raise PriceError(
                f"tier above_input_tokens must be a positive int, not {self.above_input_tokens!r}",
                param="above_input_tokens",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelPrice(Rates):
    """The price of ``model`` from ``effective_from`` on, until a later version replaces it."""

    model: str
    provider: str
    effective_from: date
    source: str
    """Where the price comes from: a URL and the date it was read, or the operator's words."""
    call_fee: Amount = ZERO
    """A fee per call on top of the tokens (per-request or per-image pricing)."""
    tiers: tuple[PriceTier, ...] = ()
    batch_ratio: Fraction | None = None
    """What the provider's batch API charges as a fraction of list price (``1/2``), if any."""
    aliases: tuple[str, ...] = ()
    """Other names the provider accepts for exactly this model (dated snapshots, ``-latest``)."""
    context_window_tokens: int | None = None

    def __post_init__(self) -> None:
        _resolve_rates(self, f"price of {self.model!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise PriceError("a price needs a model name", param="model")
        if not isinstance(self.provider, str) or not self.provider.strip():
            raise PriceError(f"price of {self.model!r}: provider is missing", param="provider")
        if not isinstance(self.source, str) or not self.source.strip():
            raise PriceError(f"price of {self.model!r}: source is missing", param="source")
        if type(self.effective_from) is not date:
            raise PriceError(
                f"price of {self.model!r}: effective_from must be a date (YYYY-MM-DD)",
                param="effective_from",
            )
        if (
            not isinstance(self.call_fee, Amount)
            or not 0 <= self.call_fee.nanos <= AMOUNT_NANOS_MAX
        ):
            raise PriceError(f"price of {self.model!r}: call_fee must be a non-negative Amount")
        if self.batch_ratio is not None and not (
            isinstance(self.batch_ratio, Fraction) and 0 < self.batch_ratio <= 1
        ):
            raise PriceError(
                f"price of {self.model!r}: batch_ratio must be a fraction in (0, 1]",
                param="batch_ratio",
            )
        thresholds = [tier.above_input_tokens for tier in self.tiers]
        if thresholds != sorted(set(thresholds)):
            raise PriceError(
                f"price of {self.model!r}: tiers must have distinct, increasing "
                f"above_input_tokens (got {thresholds})",
                param="tiers",
            )

    def rates_for(self, input_tokens: int) -> Rates:
        """The rates of a request with ``input_tokens`` prompt tokens (caches included)."""
        chosen: Rates = self
        for tier in self.tiers:
            if input_tokens > tier.above_input_tokens:
                chosen = tier
        return chosen

    def same_rates_as(self, other: ModelPrice) -> bool:
        """Whether a new version would change nothing that is billed (used to skip no-ops)."""
        return (
            self.rates() == other.rates()
            and self.call_fee == other.call_fee
            and self.batch_ratio == other.batch_ratio
            and [(t.above_input_tokens, t.rates()) for t in self.tiers]
            == [(t.above_input_tokens, t.rates()) for t in other.tiers]
        )


def _resolve_rates(rates: Rates, label: str) -> None:
    """Check every explicit rate and fill each UNSET one from its fallback."""
    for name in ("input", "output", *_FALLBACK):  # sources come before what falls back on them
        value = getattr(rates, name)
        if type(value) is int and value == UNSET and name in _FALLBACK:
            # Frozen dataclass: __post_init__ is the one place a field may still be set.
            object.__setattr__(rates, name, getattr(rates, _FALLBACK[name]))
            continue
        if type(value) is not int:
            raise PriceError(
                f"{label}: rate {name} must be an int of nanos per token, "
                f"not {type(value).__name__}",
                param=name,
            )
        if not 0 <= value <= RATE_NANOS_MAX:
            raise PriceError(
                f"{label}: rate {name} of {value} nanos per token is outside 0..{RATE_NANOS_MAX}",
                param=name,
            )

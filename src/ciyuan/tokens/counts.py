"""The result types of counting: how many model tokens, and whether the number is exact.

A count is *exact* when it is what the provider bills for the same input (a published
tokenizer and a verified formatting formula); otherwise it is an *estimate* and says by which
documented rule it was made, so no caller mistakes a guess for a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TokenCount:
    """Model tokens of one text."""

    tokens: int
    exact: bool
    encoding: str | None
    """The tokenizer that produced the number (for an estimate: the one used as its base)."""
    rule: str | None = None
    """For an estimate, the documented rule that made it (see ``estimates.py``)."""

    def __post_init__(self) -> None:
        assert self.tokens >= 0, self.tokens
        assert self.exact or self.rule, "an estimate must name its rule"


@dataclass(frozen=True, slots=True)
class RequestCount:
    """Input model tokens of one API request body, broken down by what they bill for.

    ``total`` is always the sum of the parts. Video frames are counted under ``images`` (a
    provider bills them as images); ``tools`` covers tool definitions and tool calls;
    ``overhead`` is the chat formatting the provider adds (per message, role, reply priming).
    """

    total: int
    exact: bool
    text: int = 0
    images: int = 0
    audio: int = 0
    tools: int = 0
    overhead: int = 0
    encoding: str | None = None
    notes: tuple[str, ...] = ()
    """Why the count is an estimate, one short reason per part that is not exact."""

    def __post_init__(self) -> None:
        # One expression: this runs once per request on the gateway's hot path.
        assert (
            self.total == self.text + self.images + self.audio + self.tools + self.overhead
            and (self.exact or self.notes)
            and self.text >= 0
            and self.images >= 0
            and self.audio >= 0
            and self.tools >= 0
        ), self

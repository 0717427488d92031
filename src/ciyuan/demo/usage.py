"""Token usage the demo upstream reports, computed with Ciyuan's own tokenizer.

Prompt tokens are ``ciyuan.tokens.count_request(...).total`` so the gateway's local count and the
upstream's report agree for the demo; output tokens are the count of the reply text itself, so a
stream's deltas re-tokenise to the reported number. The ``x-demo-*`` cache and reasoning headers
only re-label or add tokens; they never change the reply text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from ciyuan.tokens import count_request, count_text

from . import replies
from .faults import Directives

Api = Literal["chat", "completions", "embeddings", "responses", "anthropic_messages"]


def prompt_tokens(model: str, body: dict[str, Any], api: Api) -> int:
    return count_request(model, body, api=api).total


def text_tokens(model: str, text: str) -> int:
    return count_text(model, text).tokens


@dataclass(frozen=True, slots=True)
class Output:
    """The visible reply and the hidden reasoning behind it, as the model 'generated' them."""

    pieces: list[str]
    text: str
    visible_tokens: int
    reasoning_tokens: int
    truncated: bool
    """True when the token limit cut the reply (finish_reason ``length``)."""

    @property
    def tokens(self) -> int:
        return self.visible_tokens + self.reasoning_tokens


def fit(model: str, pieces: list[str], limit: int | None) -> tuple[list[str], int, bool]:
    """The longest prefix of ``pieces`` within ``limit`` tokens, its token count, and whether cut.

    For the tiktoken encodings a piece is one token, so the first guess is exact; the search only
    runs for a tokenizer that merges pieces differently.
    """
    full = text_tokens(model, "".join(pieces))
    if limit is None or full <= limit:
        return pieces, full, False
    guess = pieces[:limit]
    guess_tokens = text_tokens(model, "".join(guess))
    if guess_tokens == limit:
        return guess, guess_tokens, True
    low, high = 0, len(pieces)
    while low < high:
        mid = (low + high + 1) // 2
        if text_tokens(model, "".join(pieces[:mid])) <= limit:
            low = mid
        else:
            high = mid - 1
    kept = pieces[:low]
    return kept, text_tokens(model, "".join(kept)), True


def generate(
    model: str,
    seed: int,
    limit: int | None,
    directives: Directives,
    pieces: list[str] | None = None,
) -> Output:
    """The reply for ``seed`` under a ``limit`` that, like OpenAI's, also bounds reasoning."""
    reasoning = directives.reasoning_tokens
    if limit is not None:
        reasoning = min(reasoning, limit)
        limit -= reasoning
    if pieces is None:
        pieces = replies.pieces(seed, replies.default_length(seed))
    kept, visible, truncated = fit(model, pieces, limit)
    return Output(kept, "".join(kept), visible, reasoning, truncated)


def cached_part(prompt: int, directives: Directives) -> int:
    return min(directives.cached_tokens, prompt)


BIGNUM_SENTINEL: Final = "__x_demo_bignum__"
"""Stands for a count no 64-bit integer holds; the app splices :data:`BIGNUM_JSON` in its place
when it serialises (orjson itself refuses integers beyond 64 bits)."""
BIGNUM_JSON: Final = b"1" + b"0" * 30
_BAD_OUTPUT: Final[dict[str, object]] = {
    "string": None,  # the right number, as a string
    "negative": -5,
    "low": 1,
    "huge": 10**15,
    "int64": 2**63,
    "bignum": BIGNUM_SENTINEL,
}


def corrupted(
    block: dict[str, Any], directives: Directives, inputs: tuple[str, ...], output: str
) -> dict[str, Any]:
    """``block`` as ``usage:KIND`` garbles it; ``inputs`` and ``output`` name its count fields
    in the dialect at hand. ``total_tokens``, when present, stays consistent with the output
    number where it can, so only the named field is wrong."""
    kind = directives.usage_fault
    if kind is None:
        return block
    block = dict(block)
    if kind == "missing":
        for name in (*inputs, output):
            block.pop(name, None)
        return block
    if kind == "string":
        for name in (*inputs, output, "total_tokens"):
            if name in block:
                block[name] = str(block[name])
        return block
    bad = _BAD_OUTPUT[kind]
    block[output] = bad
    if "total_tokens" in block and isinstance(bad, int):
        block["total_tokens"] = sum(block[name] for name in inputs) + bad
    return block

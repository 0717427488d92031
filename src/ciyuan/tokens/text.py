"""``count_text``: the tokens of one text for one model, exact or a labelled estimate."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from ciyuan.errors import InvalidRequest
from ciyuan.tokens.counters import TextCounter, get_counter
from ciyuan.tokens.counts import TokenCount
from ciyuan.tokens.encodings import EncodingUnavailable
from ciyuan.tokens.estimates import ESTIMATE_BASE, EstimateRule, rule_for
from ciyuan.tokens.registry import Resolution, generation, resolve

_unavailable: dict[str, int] = {}
"""Encodings whose data failed to load, with the configuration generation it failed in."""


def counter_for(resolution: Resolution) -> tuple[TextCounter, EstimateRule | None]:
    """The counter to use, and the estimate rule to apply to its counts (None when exact).

    A model whose encoding has no data on this machine (the retired GPT-3 encodings unless
    the operator supplies them) is counted as an estimate instead of failing the request.
    """
    encoding = resolution.encoding
    if encoding is not None and _unavailable.get(encoding) != generation():
        try:
            return get_counter(encoding), None
        except EncodingUnavailable:
            _unavailable[encoding] = generation()
    if encoding is not None:
        return get_counter(ESTIMATE_BASE), EstimateRule(f"{encoding} data not installed", 1000)
    return get_counter(ESTIMATE_BASE), rule_for(resolution.model)


def count_text(model: str, text: str) -> TokenCount:
    """Tokens of ``text`` as ``model`` counts them; special-token text counts as plain text."""
    if not isinstance(text, str):
        raise InvalidRequest(f"text must be a string, not {type(text).__name__}", param="text")
    if not isinstance(model, str):
        raise InvalidRequest("model must be a string", param="model")
    resolution = resolve(model)
    counter, rule = counter_for(resolution)
    tally = counter.tally(text)
    if rule is not None:
        return TokenCount(rule.apply(tally.tokens), False, counter.name, rule.label)
    if not resolution.exact:
        return TokenCount(tally.tokens, False, counter.name, resolution.rule)
    if not tally.exact:
        return TokenCount(tally.tokens, False, counter.name, "a text too long to cut safely")
    return TokenCount(tally.tokens, True, counter.name)


def count_texts(
    model: str, texts: Sequence[str], *, workers: int | None = None
) -> list[TokenCount]:
    """``count_text`` for many texts at once, on ``workers`` threads (default: every core).

    tiktoken's encoder releases the GIL, so threads count in parallel without the cost of
    copying texts to other processes.
    """
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequest(f"texts[{index}] must be a string", param=f"texts[{index}]")
    if workers == 1 or len(texts) < 2:
        return [count_text(model, text) for text in texts]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        return list(pool.map(lambda text: count_text(model, text), texts))

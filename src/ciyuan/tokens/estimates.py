"""Documented estimates for models whose tokenizer Ciyuan does not have.

Rule: count the text with o200k_base (the newest OpenAI encoding, a good proxy for modern
large-vocabulary tokenizers), multiply by the family's factor below, round up. Factors are
chosen to err high, because the gateway reserves credit with these numbers before a call:

- ``claude``: x1.20. Anthropic's tokenizers produce more tokens than o200k_base for the same
  text; public comparisons put the excess at roughly 15-30% depending on the kind of text.
- ``gemini``, ``llama``, ``qwen``, ``deepseek``, ``mistral`` and anything unknown: x1.10, a
  margin over o200k_base for vocabularies of 100k-260k entries.

A model whose encoding is known but whose data is not on this machine (the retired GPT-3
encodings r50k_base and p50k_base, unless ``$CIYUAN_TIKTOKEN_DIR`` holds them) is counted
with o200k_base, unscaled, and labelled "<encoding> data not installed".

An operator who needs exact counts for an open model configures its ``tokenizer.json``
(``TokenizerConfig.tokenizer_files``), which makes those counts exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ciyuan.tokens.registry import O200K

ESTIMATE_BASE: Final = O200K


@dataclass(frozen=True, slots=True)
class EstimateRule:
    family: str
    per_mille: int
    """The factor, in thousandths, so the arithmetic stays in integers."""

    @property
    def label(self) -> str:
        return f"{self.family}: {ESTIMATE_BASE} count x{self.per_mille / 1000:.2f}, rounded up"

    def apply(self, base_tokens: int) -> int:
        return -(-base_tokens * self.per_mille // 1000)


_FAMILIES: Final = (
    EstimateRule("claude", 1200),
    EstimateRule("gemini", 1100),
    EstimateRule("llama", 1100),
    EstimateRule("qwen", 1100),
    EstimateRule("deepseek", 1100),
    EstimateRule("mistral", 1100),
)
UNKNOWN: Final = EstimateRule("unknown model", 1100)


def rule_for(normalized_model: str) -> EstimateRule:
    """The estimate rule for a model with no known tokenizer (matched anywhere in the name,
    so Bedrock and Vertex ids such as ``us.anthropic.claude-…`` find their family)."""
    for rule in _FAMILIES:
        if rule.family in normalized_model:
            return rule
    return UNKNOWN

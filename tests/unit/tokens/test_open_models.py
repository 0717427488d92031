"""Open-weight tokenizers shipped offline (Llama 3, Qwen): provenance checks and resolution.

Llama 3's ranks must extend the hash-verified cl100k_base ranks exactly (Meta built its
vocabulary on cl100k's first 100,256 tokens); known ids must hold for both.
"""

from __future__ import annotations

import pytest

from ciyuan.tokens import count_request, count_text, encoding_name_for
from ciyuan.tokens.counters import get_counter
from ciyuan.tokens.encodings import get_encoding


def test_llama3_extends_the_verified_cl100k_ranks() -> None:
    llama = get_encoding("llama3")._mergeable_ranks
    cl100k = get_encoding("cl100k_base")._mergeable_ranks
    assert len(llama) == 128_000
    assert all(llama.get(token) == rank for token, rank in cl100k.items())


def test_known_ids() -> None:
    assert list(get_counter("llama3").fast_encode("Hello, world!")) == [9906, 11, 1917, 0]
    assert list(get_counter("qwen").fast_encode("Hello, world! 12 你好")) == [
        9707, 11, 1879, 0, 220, 16, 17, 220, 108386,
    ]  # fmt: skip


def test_qwen_normalizes_to_nfc_first() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert count_text("qwen2.5-7b", composed) == count_text("qwen2.5-7b", decomposed)


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama3"),
        ("llama3.1:8b", "llama3"),
        ("llama-3.3-70b-versatile", "llama3"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen"),
        ("qwen3-235b-a22b", "qwen"),
        ("qwq-32b", "qwen"),
        ("llama-30b", None),
        ("llama-4-scout", None),
        ("qwen-max", None),
    ],
)
def test_open_family_resolution(model: str, encoding: str | None) -> None:
    assert encoding_name_for(model) == encoding


def test_open_model_text_is_exact_but_chat_is_labelled() -> None:
    assert count_text("llama-3.1-8b", "Hello, world!").exact
    chat = count_request("llama-3.1-8b", {"messages": [{"role": "user", "content": "Hello"}]})
    assert not chat.exact and any("template" in note for note in chat.notes)

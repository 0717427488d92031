"""Known token counts in several scripts, and properties of counting (hypothesis).

The encodings' ranks are verified against tiktoken's pinned hashes at load time, so these
numbers are OpenAI's. Published references: the cookbook gives "tiktoken is great!" = 6 and
"お誕生日おめでとう" = 9 (cl100k_base) / 8 (o200k_base).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciyuan.tokens import count_request, count_text, counters
from ciyuan.tokens.counters import get_counter


@pytest.mark.parametrize(
    ("text", "cl100k", "o200k"),
    [
        ("tiktoken is great!", 6, 6),
        ("antidisestablishmentarianism", 6, 6),
        ("2 + 2 = 4", 7, 7),
        ("お誕生日おめでとう", 9, 8),
        ("The quick brown fox jumps over the lazy dog.", 10, 10),
        ("Hello, world!", 4, 4),
        ("你好，世界！今天天气很好。", 16, 9),
        ("def add(a, b):\n    return a + b\n", 12, 12),
        ("😀👍🏽🎉", 11, 6),
        ("👨\u200d👩\u200d👧\u200d👦", 18, 11),
        ("", 0, 0),
    ],
)
def test_known_counts(text: str, cl100k: int, o200k: int) -> None:
    assert count_text("gpt-4", text).tokens == cl100k
    assert count_text("gpt-4o", text).tokens == o200k
    assert count_text("gpt-4o", text).exact


def test_lone_surrogates_from_json_do_not_raise() -> None:
    assert count_text("gpt-4o", "bad \ud800 surrogate").tokens > 0


def test_long_whitespace_runs_are_bounded_and_exact() -> None:
    # 1,000,000 spaces overflow tiktoken's regex stack in one call; chunks keep it bounded.
    text = ("word\n" + " " * 60_000) * 20
    result = count_text("gpt-4o", text)
    assert result.tokens > 0
    assert count_text("gpt-4o", " " * 1_000_000).tokens > 0


def test_chunked_count_equals_whole_count(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "Line one of the log.\n  indented\nNext: 你好 😀\n" * 400
    whole = count_text("gpt-4o", text).tokens
    monkeypatch.setattr(counters, "CHUNK_CHARS", 500)
    tally = get_counter("o200k_base").tally(text)
    assert tally.exact
    assert tally.tokens == whole


_PIECES = [*"ab cd\n\t.,'s12 ", "你", "好", "😀", "é", "\u200d", "<|endoftext|>", "\r\n", "  "]
_TEXT = st.lists(st.sampled_from(_PIECES), max_size=60).map("".join) | st.text(max_size=80)


@settings(max_examples=200, deadline=None)
@given(_TEXT)
def test_counting_is_deterministic(text: str) -> None:
    assert count_text("gpt-4o", text) == count_text("gpt-4o", text)
    assert count_text("claude-3-opus", text) == count_text("claude-3-opus", text)


@settings(max_examples=300, deadline=None)
@given(_TEXT, _TEXT, st.sampled_from(["gpt-4o", "gpt-4"]))
def test_additive_across_a_newline_before_non_space(head: str, tail: str, model: str) -> None:
    # The cut the chunked counter relies on: after "\n" followed by a non-space character.
    tail = "x" + tail
    whole = count_text(model, head + "\n" + tail).tokens
    assert whole == count_text(model, head + "\n").tokens + count_text(model, tail).tokens


@settings(max_examples=100, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=8))
def test_chat_text_is_the_sum_of_its_contents(contents: list[str]) -> None:
    messages = [{"role": "user", "content": text} for text in contents]
    result = count_request("gpt-4o", {"messages": messages})
    assert result.text == sum(count_text("gpt-4o", text).tokens for text in contents)
    assert result.overhead == 3 + len(contents) * (3 + count_text("gpt-4o", "user").tokens)

"""Text -> number of tokens for one tokenizer, fast and safe on any input.

Two kinds of tokenizer count text: tiktoken encodings (OpenAI) and Hugging Face
``tokenizer.json`` files (open models). Both treat special-token text such as
``<|endoftext|>`` in user input as plain text, as the providers do, and never raise on it.

Bounded work on absurd input: tiktoken's pre-tokenising regex recurses on very long
whitespace runs and overflows the stack (a Rust panic, which Python raises as a
``BaseException``) somewhere past 500,000 characters. Long texts are therefore counted in
chunks of at most ``CHUNK_CHARS``, cut just after a newline that is followed by a
non-space character: no pre-token of o200k_base or cl100k_base can span such a point, so
the sum of the chunks' counts equals the count of the whole text. A text with no such cut
point in a window is cut anyway and its count is labelled an estimate.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import tiktoken

from ciyuan.tokens.encodings import SPECS, get_encoding

CHUNK_CHARS: Final = 100_000
"""Texts longer than this are counted chunk by chunk (see the module docstring)."""
_SAFE_CUT: Final = re.compile(r"\n(?=\S)")


@dataclass(frozen=True, slots=True)
class Tally:
    tokens: int
    exact: bool


class TextCounter:
    """Counts tokens of texts for one tokenizer; safe to share between threads."""

    name: str
    fast_encode: Callable[[str], Sequence[int]]
    """The bare encoder for hot loops: may raise ``UnicodeEncodeError`` on lone surrogates
    and must only see texts up to ``CHUNK_CHARS``; ``count`` handles both."""

    def __init__(
        self,
        name: str,
        encode: Callable[[str], Sequence[int]],
        fast_encode: Callable[[str], Sequence[int]] | None = None,
    ) -> None:
        self.name = name
        self._encode = encode
        self.fast_encode = fast_encode or encode

    def count(self, text: str) -> int:
        """Tokens of ``text``; exact unless the text needed an unsafe cut (then use tally)."""
        if len(text) <= CHUNK_CHARS:
            return len(self._encode(text))
        return self.tally(text).tokens

    def tally(self, text: str) -> Tally:
        if len(text) <= CHUNK_CHARS:
            return Tally(len(self._encode(text)), True)
        total = 0
        exact = True
        start = 0
        end_text = len(text)
        while start < end_text:
            end = min(start + CHUNK_CHARS, end_text)
            if end < end_text:
                cut = _last_safe_cut(text, start, end)
                if cut is None:
                    exact = False
                else:
                    end = cut
            total += len(self._encode(text[start:end]))
            start = end
        return Tally(total, exact)


def _last_safe_cut(text: str, start: int, end: int) -> int | None:
    """The position just after the last newline in text[start:end] followed by a non-space."""
    position = end
    floor = start + CHUNK_CHARS // 2
    while True:
        newline = text.rfind("\n", floor, position)
        if newline < 0:
            return None
        if newline + 1 < len(text) and _SAFE_CUT.match(text, newline):
            return newline + 1
        position = newline


def _tiktoken_encoder(encoding: tiktoken.Encoding) -> Callable[[str], Sequence[int]]:
    core_encode = encoding._core_bpe.encode_ordinary
    fallback = encoding.encode_ordinary

    def encode(text: str) -> Sequence[int]:
        # The Rust core directly: one Python frame less on the hot path. Lone surrogates
        # (legal in JSON strings) make it raise; tiktoken's own method repairs those.
        try:
            return core_encode(text)  # type: ignore[no-any-return]
        except UnicodeEncodeError:
            return fallback(text)

    return encode


def _normalizing(
    encode: Callable[[str], Sequence[int]], form: Literal["NFC", "NFD", "NFKC", "NFKD"]
) -> Callable[[str], Sequence[int]]:
    def normalized(text: str) -> Sequence[int]:
        return encode(unicodedata.normalize(form, text))

    return normalized


def _hf_encoder(path: str) -> Callable[[str], Sequence[int]]:
    from tokenizers import Tokenizer  # lazy: only operators with HF files pay for it

    tokenizer = Tokenizer.from_file(path)
    # Special-token text in user input is plain text, as it is for tiktoken above.
    tokenizer.encode_special_tokens = True

    def encode(text: str) -> Sequence[int]:
        return tokenizer.encode(text, add_special_tokens=False).ids

    return encode


_counters: dict[str, TextCounter] = {}
_lock = threading.Lock()


def get_counter(encoding: str) -> TextCounter:
    """The counter for ``o200k_base``, ``cl100k_base`` or ``hf:<path to tokenizer.json>``."""
    counter = _counters.get(encoding)
    if counter is not None:
        return counter
    with _lock:
        counter = _counters.get(encoding)
        if counter is None:
            if encoding.startswith("hf:"):
                counter = TextCounter(encoding, _hf_encoder(encoding[3:]))
            else:
                tiktoken_encoding = get_encoding(encoding)
                safe = _tiktoken_encoder(tiktoken_encoding)
                form = SPECS[encoding].normalization
                if form is None:
                    fast = tiktoken_encoding._core_bpe.encode_ordinary
                else:
                    safe = fast = _normalizing(safe, form)
                counter = TextCounter(encoding, safe, fast)
            _counters[encoding] = counter
    return counter

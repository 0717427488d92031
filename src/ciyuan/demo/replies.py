"""Deterministic reply text: the same prompt always gets the same reply.

A reply is a list of *pieces* (``"The"``, ``" ledger"``, ``"."`` …). Every piece is exactly one
token in both ``o200k_base`` and ``cl100k_base`` and pieces never merge across their boundaries
(each starts a new pre-token), so ``k`` pieces are exactly ``k`` model tokens and any prefix of a
stream re-tokenises to the number of pieces delivered. ``tests/demo/test_replies.py`` checks the
vocabulary against both encodings. The module is pure: no I/O, no tokenizer load at import.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping
from typing import Any, Final

_WORDS: Final = """
    token meter gateway model credit ledger balance account request reply stream usage price
    cost count charge budget limit window cache prompt answer simple clear small large quick slow
    bright quiet river mountain forest garden ocean cloud light night morning evening summer winter
    market city road bridge house table paper letter number signal system network server client
    service value record receipt entry transfer key secret proof chain block order time day week
    year world people team project plan idea story music color water fire earth stone glass metal
    wood field the a of and to in for with on by from at as into over under after before between
    through is was are were will can may must should could would has have had does did good new
    old long short high low true fair exact careful steady open free full each every some many few
    more most other same next last first second third runs holds keeps makes takes gives finds
    shows tells reads writes sends moves builds checks counts spends today always often never also
    still already again together quickly slowly"""
VOCABULARY: Final = tuple(_WORDS.split())
OPENERS: Final = ("The", "This", "Each", "Every", "Our", "Some", "Many", "It", "We", "They")
"""Sentence openers; also single tokens with a leading space, for sentences after the first."""

REPLY_TOKENS_MIN: Final = 20
REPLY_TOKENS_MAX: Final = 60


def seed_of(*parts: str) -> int:
    """A stable 64-bit seed; Python's ``hash`` is salted per process, so it will not do."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def default_length(seed: int) -> int:
    return REPLY_TOKENS_MIN + seed % (REPLY_TOKENS_MAX - REPLY_TOKENS_MIN + 1)


def pieces(seed: int, count: int) -> list[str]:
    """``count`` pieces of sentence-like text, each one model token."""
    assert count >= 0
    rng = random.Random(seed)
    out: list[str] = []
    sentence_left = 0
    while len(out) < count:
        if sentence_left == 0:
            opener = rng.choice(OPENERS)
            out.append(opener if not out else " " + opener)
            sentence_left = rng.randint(5, 12)
        elif sentence_left == 1:
            out.append(".")
            sentence_left = 0
        else:
            out.append(" " + rng.choice(VOCABULARY))
            sentence_left -= 1
    return out


def word(seed: int) -> str:
    return VOCABULARY[seed % len(VOCABULARY)]


def text_of(value: Any) -> str:
    """The plain text inside a message ``content``: a string or a list of typed parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(
            part["text"]
            for part in value
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def last_user_text(messages: Any) -> str:
    """The reply depends on the last user turn only, so a conversation replays identically."""
    if not isinstance(messages, list):
        return text_of(messages)
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return text_of(message.get("content"))
    return ""


def _value_for(schema: Any, seed: int, depth: int) -> Any:
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if isinstance(schema, Mapping) and isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][seed % len(schema["enum"])]
    if kind == "object" and depth < 4:
        return arguments_for(schema, seed, depth + 1)
    if kind == "array" and depth < 4:
        items = schema.get("items") if isinstance(schema, Mapping) else None
        return [_value_for(items or {}, seed + i, depth + 1) for i in range(1 + seed % 2)]
    if kind == "integer":
        return seed % 100
    if kind == "number":
        return (seed % 1000) / 10
    if kind == "boolean":
        return seed % 2 == 0
    if kind == "null":
        return None
    return word(seed)


def arguments_for(schema: Any, seed: int, depth: int = 0) -> dict[str, Any]:
    """Deterministic tool arguments satisfying the required properties of a JSON schema."""
    if not isinstance(schema, Mapping):
        return {}
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    required = schema.get("required")
    names = (
        [n for n in properties if n in required] if isinstance(required, list) else list(properties)
    )
    return {name: _value_for(properties[name], seed + i, depth) for i, name in enumerate(names)}


def logprob_of(piece: str, seed: int) -> float:
    """A plausible negative log-probability, fixed for a piece and a reply."""
    return -round(((seed_of(piece) ^ seed) % 4000) / 1000, 4)


def top_logprobs(piece: str, seed: int, count: int) -> list[dict[str, Any]]:
    """``count`` alternatives, the chosen piece first and the rest less likely."""
    chosen = logprob_of(piece, seed)
    out: list[dict[str, Any]] = [{"token": piece, "logprob": chosen, "bytes": list(piece.encode())}]
    for i in range(1, count):
        other = " " + word(seed + i)
        out.append({"token": other, "logprob": chosen - i, "bytes": list(other.encode())})
    return out[:count]


def chunked(text: str, size: int) -> Iterator[str]:
    """Fixed-size fragments of ``text`` (tool-call arguments are streamed this way)."""
    for start in range(0, len(text), size):
        yield text[start : start + size]

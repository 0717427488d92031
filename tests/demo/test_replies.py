"""The reply generator's promise: k pieces are exactly k tokens in o200k_base and cl100k_base.

That promise is what lets the demo honour max_tokens exactly and lets a stream cut after any
chunk re-tokenise to the number of chunks delivered. Also the x-demo-* header parser.
"""

from __future__ import annotations

import pytest

from ciyuan.demo import faults, replies
from ciyuan.tokens.encodings import get_encoding

ENCODINGS = ["o200k_base", "cl100k_base"]


@pytest.mark.parametrize("name", ENCODINGS)
def test_every_piece_is_one_token(name: str) -> None:
    encoding = get_encoding(name)
    candidates = [" " + w for w in replies.VOCABULARY] + list(replies.OPENERS)
    candidates += [" " + w for w in replies.OPENERS] + ["."]
    assert [c for c in candidates if len(encoding.encode(c)) != 1] == []


@pytest.mark.parametrize("name", ENCODINGS)
def test_pieces_never_merge(name: str) -> None:
    encoding = get_encoding(name)
    for seed in range(300):
        pieces = replies.pieces(seed, 70)
        assert len(encoding.encode("".join(pieces))) == 70
        cut = seed % 70
        assert len(encoding.encode("".join(pieces[:cut]))) == cut


def test_determinism_and_default_length() -> None:
    seed = replies.seed_of("hello", "0")
    assert seed == replies.seed_of("hello", "0") != replies.seed_of("hello", "1")
    assert replies.pieces(seed, 30) == replies.pieces(seed, 30)
    assert replies.pieces(seed, 30)[:10] == replies.pieces(seed, 10)
    lengths = {replies.default_length(replies.seed_of(str(i))) for i in range(500)}
    assert min(lengths) == replies.REPLY_TOKENS_MIN and max(lengths) == replies.REPLY_TOKENS_MAX


def test_arguments_follow_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "count": {"type": "integer"},
            "ok": {"type": "boolean"},
            "unit": {"enum": ["c", "f"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "optional": {"type": "string"},
        },
        "required": ["name", "count", "ok", "unit", "tags"],
    }
    arguments = replies.arguments_for(schema, 7)
    assert set(arguments) == {"name", "count", "ok", "unit", "tags"}
    assert isinstance(arguments["count"], int) and isinstance(arguments["ok"], bool)
    assert arguments["unit"] in ("c", "f") and all(isinstance(t, str) for t in arguments["tags"])


def test_directives_parse() -> None:
    assert faults.parse({"content-type": "application/json"}) is faults.NONE
    parsed = faults.parse(
        {
            "x-demo-fault": "drip:5, cut:3,no-usage,status:503,malformed",
            "x-demo-cached-tokens": "12",
            "x-demo-reasoning-tokens": "4",
            "x-demo-retry-after": "9",
        }
    )
    assert parsed == faults.Directives(
        status=503,
        cut_after_chunks=3,
        drip_ms=5,
        no_usage=True,
        malformed=True,
        retry_after_s=9,
        cached_tokens=12,
        reasoning_tokens=4,
    )
    assert faults.parse({"x-demo-fault": "timeout"}).delay_ms == faults.TIMEOUT_DELAY_MS_DEFAULT
    assert faults.parse({"x-demo-fault": "timeout", "x-demo-delay-ms": "5"}).delay_ms == 5
    for bad in (
        {"x-demo-fault": "status:200"},
        {"x-demo-fault": "cut:x"},
        {"x-demo-cached-tokens": "-1"},
    ):
        with pytest.raises(faults.DirectiveError):
            faults.parse(bad)

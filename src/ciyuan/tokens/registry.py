"""Which tokenizer a model uses: model name -> encoding, exact or labelled estimate.

Resolution order, first match wins:

1. the operator's configured tokenizer files (``TokenizerConfig.tokenizer_files``), by model
   name or prefix: exact, with that file's tokenizer;
2. the operator's aliases (``TokenizerConfig.aliases``, e.g. an Azure deployment name -> the
   OpenAI model behind it), then steps 3-4 on the aliased name;
3. an exact OpenAI model name (``EXACT_NAMES``);
4. a family rule (``FAMILY_PREFIXES``): a known prefix followed by the end of the name or a
   ``-`` (dated snapshots such as ``gpt-4o-2024-08-06``, sizes such as ``gpt-4o-mini``);
   then the open-weight families whose tokenizer ships offline (``OPEN_FAMILIES``: Llama 3,
   Qwen 1.5-3), found anywhere in the name;
5. the configured default encoding (``TokenizerConfig.default_encoding``): a labelled estimate,
   because the operator, not the model, chose it;
6. otherwise no encoding: counts are estimates by the rules in ``estimates.py``.

Before matching, names are normalised: surrounding space and case are dropped, a provider
prefix is removed (``openai/gpt-4o``, ``openrouter/openai/gpt-4o`` -> ``gpt-4o``), and a
fine-tune id names its base model (``ft:gpt-4o-mini-2024-07-18:org::id`` -> the base).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

O200K: Final = "o200k_base"
CL100K: Final = "cl100k_base"
LLAMA3: Final = "llama3"
QWEN: Final = "qwen"

EXACT_NAMES: Final[Mapping[str, str]] = {
    "gpt-4": CL100K,
    "gpt-4-turbo": CL100K,
    "gpt-4-turbo-preview": CL100K,
    "gpt-4-vision-preview": CL100K,
    "gpt-3.5-turbo": CL100K,
    "gpt-3.5-turbo-instruct": CL100K,
    "text-embedding-3-small": CL100K,
    "text-embedding-3-large": CL100K,
    "text-embedding-ada-002": CL100K,
    "davinci-002": CL100K,
    "babbage-002": CL100K,
    "omni-moderation-latest": O200K,
    "chatgpt-4o-latest": O200K,
    # Retired GPT-3 models: exact only when the operator supplies the encoding's file.
    "text-davinci-003": "p50k_base",
    "text-davinci-002": "p50k_base",
    "code-davinci-002": "p50k_base",
    "code-cushman-002": "p50k_base",
    "text-davinci-001": "r50k_base",
    "text-curie-001": "r50k_base",
    "text-babbage-001": "r50k_base",
    "text-ada-001": "r50k_base",
    "davinci": "r50k_base",
    "curie": "r50k_base",
    "babbage": "r50k_base",
    "ada": "r50k_base",
}

# Longest prefix first, so "gpt-4o" wins over "gpt-4" and "gpt-4.1" never reads as "gpt-4".
# A prefix ending in "." or "-" matches any continuation (gpt-5.1, gpt-5.2-pro).
FAMILY_PREFIXES: Final[tuple[tuple[str, str], ...]] = tuple(
    sorted(
        {
            "gpt-4o": O200K,
            "gpt-4.1": O200K,
            "gpt-4.5": O200K,
            "gpt-5": O200K,
            "gpt-5.": O200K,
            "o1": O200K,
            "o3": O200K,
            "o4": O200K,
            "chatgpt-4o": O200K,
            "gpt-oss": O200K,
            "omni-moderation": O200K,
            "codex-mini": O200K,
            "computer-use-preview": O200K,
            "gpt-realtime": O200K,
            "gpt-audio": O200K,
            "gpt-4": CL100K,
            "gpt-3.5-turbo": CL100K,
            "gpt-35-turbo": CL100K,  # Azure's spelling
            "text-embedding-3": CL100K,
            "text-embedding-ada-002": CL100K,
        }.items(),
        key=lambda item: -len(item[0]),
    )
)

# Open-weight families whose tokenizer ships in an installed package (see encodings.py),
# matched anywhere in the name so hub ids (meta-llama/Meta-Llama-3.1-8B-Instruct), Ollama tags
# (llama3.1:8b) and Bedrock ids find them. Llama 4 has another tokenizer and is not matched.
OPEN_FAMILIES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"llama-?3(?:[.\-_:]|$)"), LLAMA3),
    (re.compile(r"qwen-?(?:1\.5|2|2\.5|3)(?:[.\-_:]|$)|qwq"), QWEN),
)

# Families whose chat formatting (3 per message, 1 per name, 3 reply priming) the OpenAI
# cookbook verified against the API's prompt_tokens, or that share that template.
# gpt-4.1, gpt-4.5 and chatgpt-4o are not in the cookbook; they share gpt-4o's chat template.
CHAT_FORMAT_VERIFIED: Final = (
    "gpt-3.5-turbo",
    "gpt-35-turbo",
    "gpt-4",
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "chatgpt-4o",
)


@dataclass(frozen=True, slots=True)
class TokenizerConfig:
    """What the operator configured (wired from settings by bootstrap)."""

    default_encoding: str | None = None
    """Encoding used, as a labelled estimate, for models no rule knows."""
    aliases: Mapping[str, str] = field(default_factory=dict)
    """Model name -> the model whose tokenizer it uses (Azure deployments, private names)."""
    tokenizer_files: Mapping[str, str] = field(default_factory=dict)
    """Model name or prefix (ending in ``*``) -> a Hugging Face ``tokenizer.json`` path."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """How one model's tokens are counted."""

    model: str
    """The normalised name the rules matched on."""
    encoding: str | None
    """``o200k_base``, ``cl100k_base``, ``hf:<path>``; None when only an estimate is possible."""
    exact: bool
    rule: str | None
    """For an estimate: why (``default encoding``, ``no tokenizer for claude``…)."""
    openai_chat: bool
    """Whether the OpenAI chat formatting is known to be exact for this model."""


DEFAULT_CONFIG: Final = TokenizerConfig()


class _Installed:
    """The one configuration in force; a holder, so replacing it needs no ``global``."""

    config: TokenizerConfig = DEFAULT_CONFIG
    generation: int = 0
    """Bumped by ``configure`` so caches built on the old configuration know they are stale."""


_resolved: dict[str, Resolution] = {}
_resolved_max: Final = 4096
_lock = threading.Lock()


def configure(config: TokenizerConfig) -> None:
    """Install the operator's tokenizer configuration (called once by bootstrap)."""
    with _lock:
        _Installed.config = config
        _Installed.generation += 1
        _resolved.clear()


def generation() -> int:
    return _Installed.generation


def current_config() -> TokenizerConfig:
    return _Installed.config


def normalize_model(model: str) -> str:
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    if "/" in name:
        name = name.rsplit("/", 1)[1]
    return name


def _family_encoding(name: str) -> str | None:
    encoding = EXACT_NAMES.get(name)
    if encoding is not None:
        return encoding
    for prefix, candidate in FAMILY_PREFIXES:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        if not rest or rest[0] == "-" or prefix[-1] in ".-":
            return candidate
    for pattern, candidate in OPEN_FAMILIES:
        if pattern.search(name):
            return candidate
    return None


def _openai_chat_exact(name: str) -> bool:
    return any(name == p or name.startswith(p + "-") for p in CHAT_FORMAT_VERIFIED)


def _tokenizer_file(name: str, files: Mapping[str, str]) -> str | None:
    path = files.get(name)
    if path is not None:
        return path
    best = ""
    for pattern, candidate in files.items():
        if pattern.endswith("*") and name.startswith(pattern[:-1]) and len(pattern) > len(best):
            best, path = pattern, candidate
    return path


def _resolve_uncached(model: str, config: TokenizerConfig) -> Resolution:
    name = normalize_model(model)
    hf_path = _tokenizer_file(name, config.tokenizer_files)
    if hf_path is not None:
        return Resolution(name, f"hf:{hf_path}", exact=True, rule=None, openai_chat=False)
    target = normalize_model(config.aliases.get(name, name))
    encoding = _family_encoding(target)
    if encoding is not None:
        return Resolution(name, encoding, True, None, openai_chat=_openai_chat_exact(target))
    if config.default_encoding is not None:
        rule = f"configured default encoding {config.default_encoding}"
        return Resolution(name, config.default_encoding, False, rule, openai_chat=False)
    return Resolution(name, None, False, None, openai_chat=False)


def resolve(model: str) -> Resolution:
    """How ``model``'s tokens are counted; cached, because the gateway asks on every request."""
    found = _resolved.get(model)
    if found is not None:
        return found
    config = _Installed.config
    found = _resolve_uncached(model, config)
    with _lock:
        if config is _Installed.config:
            if len(_resolved) >= _resolved_max:
                _resolved.clear()
            _resolved[model] = found
    return found


def encoding_name_for(model: str) -> str | None:
    """The tokenizer of ``model``: exact name, family rule, then the configured default."""
    return resolve(model).encoding

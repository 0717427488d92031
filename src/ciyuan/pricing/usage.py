"""Usage: the model tokens of one call, in disjoint buckets that each get their own price.

Providers report usage in overlapping totals: OpenAI's ``prompt_tokens`` *includes* its
``cached_tokens`` and ``audio_tokens``, and ``completion_tokens`` *includes*
``reasoning_tokens``; Anthropic's ``input_tokens`` *excludes* cache reads and writes. Pricing the
totals and then the details again is the most common billing bug of LLM gateways. Here each
constructor splits the provider's shape into buckets that never overlap, so that:

* every token lands in exactly one bucket, and
* :attr:`Usage.input_total` / :attr:`Usage.output_total` equal the provider's own totals.

A shape that cannot be split (a detail larger than its total, a negative or non-integer count)
raises :class:`~ciyuan.errors.InvalidRequest` naming the field, rather than being guessed at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ciyuan.errors import InvalidRequest

TOKENS_MAX: Final = 2**53
"""A sanity bound on any one count: far beyond any context window, small enough to be safe."""

BUCKETS: Final = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
    "image_input_tokens",
    "image_output_tokens",
)
"""Every bucket, in the order receipts list them."""

INPUT_BUCKETS: Final = frozenset(
    {
        "input_tokens",
        "cache_read_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "audio_input_tokens",
        "image_input_tokens",
    }
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Model tokens of one call; the buckets are disjoint (no token is in two of them)."""

    input_tokens: int = 0
    """Uncached text input (OpenAI: prompt minus cached and audio; Anthropic: ``input_tokens``)."""
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    """Visible text output, without reasoning or audio."""
    reasoning_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    image_input_tokens: int = 0
    image_output_tokens: int = 0

    def __post_init__(self) -> None:
        for name in BUCKETS:
            value = getattr(self, name)
            # The common case in one test; _check_count names what is wrong otherwise.
            if type(value) is not int or not 0 <= value <= TOKENS_MAX:
                _check_count(value, name)

    @property
    def input_total(self) -> int:
        """Every prompt-side token: the provider's prompt/input total, caches included."""
        return (
            self.input_tokens
            + self.cache_read_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
            + self.audio_input_tokens
            + self.image_input_tokens
        )

    @property
    def output_total(self) -> int:
        """Every completion-side token, reasoning included (what the provider calls output)."""
        return (
            self.output_tokens
            + self.reasoning_tokens
            + self.audio_output_tokens
            + self.image_output_tokens
        )

    @property
    def total(self) -> int:
        return self.input_total + self.output_total

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in BUCKETS})

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in BUCKETS}

    # -- constructors from the providers' usage objects ---------------------------------------

    @classmethod
    def from_openai_chat(cls, usage: Mapping[str, Any]) -> Usage:
        """From a Chat Completions (or legacy Completions) ``usage`` object.

        ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens`` and ``.audio_tokens``;
        ``completion_tokens`` includes ``completion_tokens_details.reasoning_tokens`` and
        ``.audio_tokens`` (and the accepted/rejected prediction tokens, which are billed as plain
        output). DeepSeek reports its cache as ``prompt_cache_hit_tokens`` instead.
        """
        _check_mapping(usage, "usage")
        prompt = _required(usage, "prompt_tokens", "usage")
        completion = _optional(usage, "completion_tokens", "usage")
        prompt_details = _details(usage, "prompt_tokens_details")
        completion_details = _details(usage, "completion_tokens_details")
        cached = _optional(prompt_details, "cached_tokens", "usage.prompt_tokens_details")
        if cached == 0 and "prompt_cache_hit_tokens" in usage:
            cached = _optional(usage, "prompt_cache_hit_tokens", "usage")
        audio_in = _optional(prompt_details, "audio_tokens", "usage.prompt_tokens_details")
        image_in = _optional(prompt_details, "image_tokens", "usage.prompt_tokens_details")
        reasoning = _optional(
            completion_details, "reasoning_tokens", "usage.completion_tokens_details"
        )
        audio_out = _optional(completion_details, "audio_tokens", "usage.completion_tokens_details")
        return cls(
            input_tokens=_remainder(
                prompt,
                "usage.prompt_tokens",
                cached=cached,
                audio_tokens=audio_in,
                image_tokens=image_in,
            ),
            cache_read_tokens=cached,
            audio_input_tokens=audio_in,
            image_input_tokens=image_in,
            output_tokens=_remainder(
                completion,
                "usage.completion_tokens",
                reasoning_tokens=reasoning,
                audio_tokens=audio_out,
            ),
            reasoning_tokens=reasoning,
            audio_output_tokens=audio_out,
        )

    @classmethod
    def from_openai_responses(cls, usage: Mapping[str, Any]) -> Usage:
        """From a Responses API ``usage`` object.

        ``input_tokens`` includes ``input_tokens_details.cached_tokens``; ``output_tokens``
        includes ``output_tokens_details.reasoning_tokens``. Image models (``gpt-image-1``)
        split input into ``text_tokens`` and ``image_tokens`` and report image output.
        """
        _check_mapping(usage, "usage")
        input_all = _required(usage, "input_tokens", "usage")
        output_all = _optional(usage, "output_tokens", "usage")
        in_details = _details(usage, "input_tokens_details")
        out_details = _details(usage, "output_tokens_details")
        cached = _optional(in_details, "cached_tokens", "usage.input_tokens_details")
        image_in = _optional(in_details, "image_tokens", "usage.input_tokens_details")
        audio_in = _optional(in_details, "audio_tokens", "usage.input_tokens_details")
        reasoning = _optional(out_details, "reasoning_tokens", "usage.output_tokens_details")
        image_out = _optional(out_details, "image_tokens", "usage.output_tokens_details")
        audio_out = _optional(out_details, "audio_tokens", "usage.output_tokens_details")
        return cls(
            input_tokens=_remainder(
                input_all,
                "usage.input_tokens",
                cached_tokens=cached,
                image_tokens=image_in,
                audio_tokens=audio_in,
            ),
            cache_read_tokens=cached,
            image_input_tokens=image_in,
            audio_input_tokens=audio_in,
            output_tokens=_remainder(
                output_all,
                "usage.output_tokens",
                reasoning_tokens=reasoning,
                image_tokens=image_out,
                audio_tokens=audio_out,
            ),
            reasoning_tokens=reasoning,
            image_output_tokens=image_out,
            audio_output_tokens=audio_out,
        )

    @classmethod
    def from_anthropic(cls, usage: Mapping[str, Any]) -> Usage:
        """From an Anthropic Messages ``usage`` object (or the merged usage of a stream).

        Anthropic's ``input_tokens`` already excludes cache reads and writes, so they add up
        rather than subtract. ``cache_creation`` splits the writes by time to live; without it
        every write is a 5-minute write (the default TTL). Extended thinking is billed as
        output and is not reported apart.
        """
        _check_mapping(usage, "usage")
        written = _optional(usage, "cache_creation_input_tokens", "usage")
        creation = _details(usage, "cache_creation")
        if creation:
            write_5m = _optional(creation, "ephemeral_5m_input_tokens", "usage.cache_creation")
            write_1h = _optional(creation, "ephemeral_1h_input_tokens", "usage.cache_creation")
            if (
                "cache_creation_input_tokens" in usage
                and usage["cache_creation_input_tokens"] is not None
                and write_5m + write_1h != written
            ):
                raise InvalidRequest(
                    f"usage.cache_creation splits {write_5m + write_1h} tokens but "
                    f"usage.cache_creation_input_tokens is {written}",
                    param="usage.cache_creation",
                )
        else:
            write_5m, write_1h = written, 0
        return cls(
            input_tokens=_required(usage, "input_tokens", "usage"),
            cache_read_tokens=_optional(usage, "cache_read_input_tokens", "usage"),
            cache_write_5m_tokens=write_5m,
            cache_write_1h_tokens=write_1h,
            output_tokens=_optional(usage, "output_tokens", "usage"),
        )

    @classmethod
    def from_anthropic_stream(
        cls, message_start: Mapping[str, Any], message_delta: Mapping[str, Any]
    ) -> Usage:
        """From a stream: ``message_start``'s usage, updated by the last ``message_delta``'s.

        The delta's counts are cumulative, not increments: each one present replaces the
        start's value (``output_tokens`` always; input and cache counts on newer API versions).
        """
        _check_mapping(message_start, "message_start.usage")
        _check_mapping(message_delta, "message_delta.usage")
        merged = dict(message_start)
        merged.update({key: value for key, value in message_delta.items() if value is not None})
        return cls.from_anthropic(merged)

    @classmethod
    def from_openai_embeddings(cls, usage: Mapping[str, Any]) -> Usage:
        """From an Embeddings ``usage`` object: ``prompt_tokens`` is all there is."""
        _check_mapping(usage, "usage")
        return cls(input_tokens=_required(usage, "prompt_tokens", "usage"))

    @classmethod
    def from_gemini(cls, usage: Mapping[str, Any]) -> Usage:
        """From a Gemini ``usageMetadata`` object.

        Unlike OpenAI, ``candidatesTokenCount`` does *not* include ``thoughtsTokenCount``; the
        prompt count includes ``cachedContentTokenCount``.
        """
        _check_mapping(usage, "usageMetadata")
        prompt = _optional(usage, "promptTokenCount", "usageMetadata")
        cached = _optional(usage, "cachedContentTokenCount", "usageMetadata")
        return cls(
            input_tokens=_remainder(
                prompt, "usageMetadata.promptTokenCount", cachedContentTokenCount=cached
            ),
            cache_read_tokens=cached,
            output_tokens=_optional(usage, "candidatesTokenCount", "usageMetadata"),
            reasoning_tokens=_optional(usage, "thoughtsTokenCount", "usageMetadata"),
        )


def _check_count(value: object, name: str) -> int:
    # bool is an int subclass: True must not count as one token.
    if type(value) is not int:
        raise InvalidRequest(
            f"{name} must be an integer count of tokens, not {type(value).__name__}", param=name
        )
    if value < 0:
        raise InvalidRequest(f"{name} must not be negative (got {value})", param=name)
    if value > TOKENS_MAX:
        raise InvalidRequest(f"{name} is beyond {TOKENS_MAX} tokens (got {value})", param=name)
    return value


def _check_mapping(value: object, name: str) -> None:
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{name} must be an object, not {type(value).__name__}", param=name)


def _required(usage: Mapping[str, Any], key: str, where: str) -> int:
    name = f"{where}.{key}"
    if usage.get(key) is None:
        raise InvalidRequest(f"{name} is missing", param=name)
    return _check_count(usage[key], name)


def _optional(usage: Mapping[str, Any], key: str, where: str) -> int:
    # Providers send null for details they do not track; null and absent both mean zero.
    value = usage.get(key)
    return 0 if value is None else _check_count(value, f"{where}.{key}")


def _details(usage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = usage.get(key)
    if value is None:
        return {}
    _check_mapping(value, f"usage.{key}")
    return value  # type: ignore[no-any-return]


def _remainder(total: int, name: str, **parts: int) -> int:
    """``total`` minus the detail counts it includes; a detail larger than its total is refused."""
    rest = total - sum(parts.values())
    if rest < 0:
        listed = ", ".join(f"{key}={value}" for key, value in parts.items() if value)
        raise InvalidRequest(
            f"{name} is {total}, fewer than the details it includes ({listed})", param=name
        )
    return rest

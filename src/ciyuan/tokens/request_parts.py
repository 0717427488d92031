"""The running breakdown of one request's count, shared by every API's counter.

A ``Profile`` holds everything about a model that does not depend on the request (its
counter, estimate rule, exactness); it is built once per model name and configuration, so a
request pays only for its own strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ciyuan.errors import InvalidRequest
from ciyuan.tokens.counters import CHUNK_CHARS, TextCounter
from ciyuan.tokens.counts import RequestCount
from ciyuan.tokens.estimates import EstimateRule
from ciyuan.tokens.media_parts import ImageSizes, MediaTally
from ciyuan.tokens.registry import generation, resolve
from ciyuan.tokens.text import counter_for
from ciyuan.tokens.tools import json_text

_CACHE_MAX: Final = 1024


@dataclass(frozen=True, slots=True)
class Profile:
    model: str
    counter: TextCounter
    fast_encode: Callable[[str], Sequence[int]]
    rule: EstimateRule | None
    notes: tuple[str, ...]
    exact: bool
    openai_chat: bool
    role_tokens: dict[str, int]
    generation: int


_profiles: dict[str, Profile] = {}


def profile_for(model: str) -> Profile:
    if type(model) is not str:
        raise InvalidRequest("model must be a string", param="model")
    found = _profiles.get(model)
    current = generation()
    if found is not None and found.generation == current:
        return found
    resolution = resolve(model)
    counter, rule = counter_for(resolution)
    notes = (rule.label,) if rule else (resolution.rule,) if resolution.rule else ()
    roles = {
        role: counter.count(role) for role in ("system", "user", "assistant", "developer", "tool")
    }
    found = Profile(
        model,
        counter,
        counter.fast_encode,
        rule,
        notes,
        resolution.exact,
        resolution.openai_chat,
        roles,
        current,
    )
    if len(_profiles) >= _CACHE_MAX:
        _profiles.clear()
    _profiles[model] = found
    return found


class Parts:
    """Token tallies by kind, plus the reasons the total is not exact."""

    __slots__ = ("audio", "image_sizes", "images", "notes", "overhead", "profile", "text", "tools")

    def __init__(self, model: str, image_sizes: ImageSizes | None = None) -> None:
        self.profile = profile_for(model)
        self.image_sizes = image_sizes
        self.text = self.images = self.audio = self.tools = self.overhead = 0
        self.notes: list[str] = list(self.profile.notes)

    @property
    def model(self) -> str:
        return self.profile.model

    @property
    def encoding_name(self) -> str:
        return self.profile.counter.name

    def count(self, text: str) -> int:
        if len(text) > CHUNK_CHARS:
            tally = self.profile.counter.tally(text)
            if not tally.exact:
                self.note("a text too long to cut safely")
            return tally.tokens
        return self.profile.counter.count(text)

    def role_tokens(self, role: str) -> int:
        found = self.profile.role_tokens.get(role)
        return self.count(role) if found is None else found

    def note(self, reason: str) -> None:
        if reason not in self.notes:
            self.notes.append(reason)

    def add_media(self, tally: MediaTally) -> None:
        self.images += tally.images
        self.audio += tally.audio
        if tally.note is not None:
            self.note(tally.note)

    def add_json_estimate(self, value: Any, what: str) -> None:
        """Count an unknown structure by the tokens of its JSON (a labelled estimate)."""
        self.overhead += self.count(json_text(value))
        self.note(f"{what}: counted as its JSON (estimate)")


def _template_note(model: str) -> str:
    if "gpt-oss" in model:
        # Harmony frames messages like the cookbook (<|start|>role<|message|>…<|end|>), but
        # the serving stack adds its own system message, which only it knows.
        return "gpt-oss: harmony format, the server's default system message not counted"
    return f"chat template of {model} unpublished: OpenAI formatting assumed"


def finish(parts: Parts, *, chat: bool) -> RequestCount:
    """The final, immutable breakdown; applies the estimate rule and the exactness checks."""
    profile = parts.profile
    text, tools = parts.text, parts.tools
    if profile.rule is not None:
        text, tools = profile.rule.apply(text), profile.rule.apply(tools)
    if chat and not profile.openai_chat and profile.exact:
        parts.note(_template_note(profile.model))
    total = text + parts.images + parts.audio + tools + parts.overhead
    # Positional: keyword passing costs measurably on the per-request path.
    return RequestCount(
        total,
        not parts.notes,
        text,
        parts.images,
        parts.audio,
        tools,
        parts.overhead,
        profile.counter.name,
        tuple(parts.notes),
    )

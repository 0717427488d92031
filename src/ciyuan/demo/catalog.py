"""``GET /v1/models``: the models the demo imitates, in OpenAI's or Anthropic's list format.

The demo answers for any model name; this list is what a client discovers, nothing more. A
request carrying ``anthropic-version`` gets Anthropic's shape, as the real endpoints differ.
"""

from __future__ import annotations

from typing import Any, Final

from .exchange import DemoRequest, JsonReply
from .wire_errors import WireError

CREATED: Final = 1_715_367_049
OPENAI_MODELS: Final = (
    "gpt-6.2-sol",
    "gpt-6-luna",
    "gpt-5.5",
    "gpt-5.4-mini",
    "gpt-5.4-nano",
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3",
    "o4-mini",
    "gpt-3.5-turbo",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
)
ANTHROPIC_MODELS: Final = (
    ("claude-opus-5-5", "Claude Opus 5.5"),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5"),
    ("claude-haiku-5-5", "Claude Haiku 5.5"),
    ("claude-opus-4-8", "Claude Opus 4.8"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
)


def _openai(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": CREATED, "owned_by": "system"}


def _anthropic(model: str, name: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": name,
        "created_at": "2026-05-14T00:00:00Z",
    }


def models(req: DemoRequest) -> JsonReply:
    prefix = "/v1/models/"
    wanted = req.path[len(prefix) :] if req.path.startswith(prefix) else None
    if "anthropic-version" in req.headers:
        entries = [_anthropic(model, name) for model, name in ANTHROPIC_MODELS]
        if wanted is not None:
            return JsonReply(_find(entries, wanted))
        return JsonReply(
            {
                "data": entries,
                "has_more": False,
                "first_id": entries[0]["id"],
                "last_id": entries[-1]["id"],
            }
        )
    listed = [_openai(model) for model in OPENAI_MODELS]
    if wanted is not None:
        return JsonReply(_find(listed, wanted))
    return JsonReply({"object": "list", "data": listed})


def _find(entries: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    for entry in entries:
        if entry["id"] == wanted:
            return entry
    raise WireError(404, f"The model '{wanted}' does not exist", "model", "model_not_found")

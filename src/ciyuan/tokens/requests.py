"""``count_request``: the input tokens of a request body for each API the gateway serves.

- ``chat``: ``chat.py`` (exact for OpenAI chat models, see there);
- ``completions`` and ``embeddings``: the ``prompt``/``input`` text or token arrays, with no
  formatting overhead (exact for OpenAI models; token arrays count as their length);
- ``responses``: ``responses_api.py`` (the chat formula, labelled an estimate);
- ``anthropic_messages``: ``anthropic_messages.py`` (always an estimate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from ciyuan.errors import InvalidRequest
from ciyuan.tokens.anthropic_messages import count_anthropic_messages
from ciyuan.tokens.chat import count_chat
from ciyuan.tokens.counts import RequestCount
from ciyuan.tokens.media_parts import ImageSizes
from ciyuan.tokens.request_parts import Parts, finish
from ciyuan.tokens.responses_api import count_responses


def _prompt_tokens(parts: Parts, value: Any, param: str) -> None:
    """A string, an array of strings, an array of token ids, or an array of those arrays."""
    if isinstance(value, str):
        parts.text += parts.count(value)
        return
    if not isinstance(value, list):
        raise InvalidRequest(f"{param} must be a string or an array", param=param)
    if value and all(type(item) is int for item in value):
        parts.text += len(value)
        return
    for index, item in enumerate(value):
        if isinstance(item, str):
            parts.text += parts.count(item)
        elif isinstance(item, list) and all(type(t) is int for t in item):
            parts.text += len(item)
        else:
            raise InvalidRequest(
                f"{param}[{index}] must be a string or an array of token ids",
                param=f"{param}[{index}]",
            )


def count_completions(
    model: str, body: Mapping[str, Any], image_sizes: ImageSizes | None = None
) -> RequestCount:
    parts = Parts(model)
    _prompt_tokens(parts, body.get("prompt", ""), "prompt")
    suffix = body.get("suffix")
    if isinstance(suffix, str):
        parts.text += parts.count(suffix)
    return finish(parts, chat=False)


def count_embeddings(
    model: str, body: Mapping[str, Any], image_sizes: ImageSizes | None = None
) -> RequestCount:
    parts = Parts(model)
    if "input" not in body:
        raise InvalidRequest("input is required", param="input")
    _prompt_tokens(parts, body["input"], "input")
    return finish(parts, chat=False)


_COUNTERS: Final[dict[str, Callable[[str, Mapping[str, Any], ImageSizes | None], RequestCount]]] = {
    "chat": count_chat,
    "completions": count_completions,
    "embeddings": count_embeddings,
    "responses": count_responses,
    "anthropic_messages": count_anthropic_messages,
}
APIS: Final = tuple(_COUNTERS)


def count_request(
    model: str,
    body: Mapping[str, Any],
    *,
    api: str = "chat",
    image_sizes: ImageSizes | None = None,
) -> RequestCount:
    """Input tokens of ``body`` sent to ``api`` for ``model``, broken down by part.

    ``image_sizes`` gives the pixel sizes of remote (http) images, by URL, when the caller
    fetched their headers (``image_size_of`` reads a fetched prefix); without it a remote
    image counts as the largest its model allows, labelled an estimate.
    """
    counter = _COUNTERS.get(api)
    assert counter is not None, f"unknown api {api!r}; one of {APIS}"
    if type(body) is not dict and not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object", param="body")
    try:
        return counter(model, body, image_sizes)
    except RecursionError as exc:
        # Absurdly deep JSON (tool schemas nested thousands of levels) must not crash the caller.
        raise InvalidRequest("the request body is nested too deeply", param="body") from exc

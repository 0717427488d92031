"""Input tokens of an OpenAI Responses API request (a labelled estimate).

OpenAI has not published how ``input`` items are rendered, so the chat formula is applied:
``instructions`` as a system message, each message item as a chat message (``input_text``,
``output_text`` as text; ``input_image`` as an image), function calls and their outputs as
tool calls and tool messages, and function tools by the cookbook formula (their fields sit
at the top level here instead of under ``function``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ciyuan.errors import InvalidRequest
from ciyuan.tokens.chat import REPLY_PRIMING, TOKENS_PER_MESSAGE
from ciyuan.tokens.counts import RequestCount
from ciyuan.tokens.media_parts import ImageSizes, MediaTally, image_url_tokens
from ciyuan.tokens.request_parts import Parts, finish
from ciyuan.tokens.tools import calls_tokens, definitions_tokens

_TEXT_PARTS: Final = frozenset({"input_text", "output_text", "text", "refusal", "summary_text"})


def count_responses(
    model: str, body: Mapping[str, Any], image_sizes: ImageSizes | None = None
) -> RequestCount:
    parts = Parts(model, image_sizes)
    parts.note("responses API: chat formatting assumed (unpublished)")
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        parts.overhead += TOKENS_PER_MESSAGE + parts.role_tokens("system")
        parts.text += parts.count(instructions)
    elif instructions is not None:
        raise InvalidRequest("instructions must be a string", param="instructions")
    items = body.get("input", "")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise InvalidRequest("input must be a string or an array of items", param="input")
    for index, item in enumerate(items):
        _item_tokens(parts, item, f"input[{index}]")
    parts.overhead += REPLY_PRIMING
    tools = body.get("tools")
    if tools is not None:
        tally = definitions_tokens(tools, parts.count, parts.encoding_name, "tools")
        parts.tools += tally.tokens
    text_format = (
        body.get("text", {}).get("format") if isinstance(body.get("text"), Mapping) else None
    )
    if isinstance(text_format, Mapping) and text_format.get("type") == "json_schema":
        parts.add_json_estimate(text_format.get("schema"), "text.format schema")
    return finish(parts, chat=False)


def _item_tokens(parts: Parts, item: Any, param: str) -> None:
    if not isinstance(item, Mapping):
        raise InvalidRequest(f"{param} must be an object", param=param)
    kind = item.get("type", "message")
    if kind == "function_call":
        parts.tools += calls_tokens(item, parts.count, param)
        return
    if kind == "function_call_output":
        output = item.get("output", "")
        parts.overhead += TOKENS_PER_MESSAGE
        parts.text += parts.count(output if isinstance(output, str) else str(output))
        return
    if kind != "message":
        parts.add_json_estimate(item, f"input item type {kind}")
        return
    role = item.get("role")
    if not isinstance(role, str):
        raise InvalidRequest(f"{param}.role must be a string", param=f"{param}.role")
    parts.overhead += TOKENS_PER_MESSAGE + parts.role_tokens(role)
    content = item.get("content")
    if isinstance(content, str):
        parts.text += parts.count(content)
        return
    if not isinstance(content, list):
        raise InvalidRequest(
            f"{param}.content must be a string or an array", param=f"{param}.content"
        )
    for index, part in enumerate(content):
        _content_part(parts, part, f"{param}.content[{index}]")


def _content_part(parts: Parts, part: Any, param: str) -> None:
    if not isinstance(part, Mapping):
        raise InvalidRequest(f"{param} must be an object", param=param)
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        value = part.get("text", part.get("refusal"))
        if not isinstance(value, str):
            raise InvalidRequest(f"{param}.text must be a string", param=f"{param}.text")
        parts.text += parts.count(value)
    elif kind == "input_image":
        url = part.get("image_url")
        if url is None:
            parts.add_media(MediaTally(note="input_image by file id: size unknown"))
            return
        detail = part.get("detail") or "auto"
        parts.add_media(
            image_url_tokens(
                parts.model, {"url": url, "detail": detail}, param, sizes=parts.image_sizes
            )
        )
    else:
        parts.add_json_estimate(part, f"content part type {kind}")

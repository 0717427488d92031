"""Input tokens of an Anthropic Messages request: always a labelled estimate.

Anthropic publishes no tokenizer, so text follows the estimate rule for the model
(``estimates.py``: o200k_base x1.20 for Claude). Structure: ``system`` and each message cost
``TOKENS_PER_MESSAGE`` of formatting; images use Anthropic's width x height / 750;
``tool_use`` blocks count their name and input JSON, ``tool_result`` blocks their content;
tool definitions count their name, description and input schema JSON, plus the tool-use
system prompt Anthropic documents for current models (``TOOL_SYSTEM_PROMPT_*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ciyuan.errors import InvalidRequest
from ciyuan.tokens.counts import RequestCount
from ciyuan.tokens.media_parts import ImageSizes, image_base64_tokens, image_url_tokens
from ciyuan.tokens.request_parts import Parts, finish
from ciyuan.tokens.tools import json_text

TOKENS_PER_MESSAGE: Final = 3
TOOL_SYSTEM_PROMPT_AUTO: Final = 346
"""Anthropic's documented tool-use system prompt for tool_choice auto/none."""
TOOL_SYSTEM_PROMPT_FORCED: Final = 313
"""… and for tool_choice any/tool."""


def count_anthropic_messages(
    model: str, body: Mapping[str, Any], image_sizes: ImageSizes | None = None
) -> RequestCount:
    parts = Parts(model, image_sizes)
    parts.note("anthropic messages: formatting unpublished (estimate)")
    system = body.get("system")
    if system is not None:
        parts.overhead += TOKENS_PER_MESSAGE
        _content(parts, system, "system")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be an array of message objects", param="messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise InvalidRequest(f"{param} must be an object", param=param)
        if not isinstance(message.get("role"), str):
            raise InvalidRequest(f"{param}.role must be a string", param=f"{param}.role")
        parts.overhead += TOKENS_PER_MESSAGE
        _content(parts, message.get("content"), f"{param}.content")
    tools = body.get("tools")
    if tools is not None:
        _tools(parts, tools, body.get("tool_choice"))
    return finish(parts, chat=False)


def _tools(parts: Parts, tools: Any, choice: Any) -> None:
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be an array", param="tools")
    if not tools:
        return
    forced = isinstance(choice, Mapping) and choice.get("type") in ("any", "tool")
    parts.overhead += TOOL_SYSTEM_PROMPT_FORCED if forced else TOOL_SYSTEM_PROMPT_AUTO
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise InvalidRequest(f"tools[{index}] must be an object", param=f"tools[{index}]")
        parts.tools += parts.count(json_text(tool))


def _content(parts: Parts, content: Any, param: str) -> None:
    if isinstance(content, str):
        parts.text += parts.count(content)
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"{param} must be a string or an array of blocks", param=param)
    for index, block in enumerate(content):
        _block(parts, block, f"{param}[{index}]")


def _block(parts: Parts, block: Any, param: str) -> None:
    if not isinstance(block, Mapping):
        raise InvalidRequest(f"{param} must be an object", param=param)
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise InvalidRequest(f"{param}.text must be a string", param=f"{param}.text")
        parts.text += parts.count(text)
    elif kind == "image":
        source = block.get("source")
        if not isinstance(source, Mapping):
            raise InvalidRequest(f"{param}.source must be an object", param=f"{param}.source")
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            parts.add_media(
                image_base64_tokens(parts.model, source["data"], f"{param}.source.data")
            )
        elif source.get("type") == "url":
            parts.add_media(
                image_url_tokens(
                    parts.model, {"url": source.get("url")}, param, "source", parts.image_sizes
                )
            )
        else:
            parts.add_json_estimate({"source_type": source.get("type")}, "image source")
    elif kind == "tool_use":
        parts.tools += parts.count(str(block.get("name", ""))) + parts.count(
            json_text(block.get("input"))
        )
    elif kind == "tool_result":
        inner = block.get("content")
        if inner is not None:
            _content(parts, inner, f"{param}.content")
    elif kind in ("thinking", "redacted_thinking"):
        parts.text += parts.count(str(block.get("thinking", block.get("data", ""))))
    elif isinstance(kind, str):
        parts.add_json_estimate(block, f"content block type {kind}")
    else:
        raise InvalidRequest(f"{param}.type must be a string", param=f"{param}.type")

"""Input tokens of a chat completions request: messages, names, tools, media, formatting.

The formatting follows the OpenAI cookbook ("How to count tokens with tiktoken"), which
checked it against the API's reported prompt_tokens: every message costs
``TOKENS_PER_MESSAGE`` plus the tokens of each of its string values (role, content, name),
a name costs ``TOKENS_PER_NAME`` more, and the reply is primed with ``REPLY_PRIMING`` tokens.
Role tokens, the per-message and per-name tokens and the priming are ``overhead``; content and
names are ``text``. The count is exact for the model families in
``registry.CHAT_FORMAT_VERIFIED`` when every part is exact; reasoning models (o-series,
gpt-5, gpt-oss) get the same formula labelled an estimate, since their templates add
tokens nobody has published.

Hot path: one pass over the messages, string contents go straight to the Rust encoder, role
counts are memoised, and nothing is allocated per message beyond the encoder's output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ciyuan.errors import InvalidRequest
from ciyuan.tokens.counters import CHUNK_CHARS
from ciyuan.tokens.counts import RequestCount
from ciyuan.tokens.media_parts import (
    ImageSizes,
    MediaTally,
    image_url_tokens,
    input_audio_tokens,
    video_url_tokens,
)
from ciyuan.tokens.request_parts import Parts, finish
from ciyuan.tokens.tools import calls_tokens, definitions_tokens

TOKENS_PER_MESSAGE: Final = 3
TOKENS_PER_NAME: Final = 1
REPLY_PRIMING: Final = 3
_SKIPPED_KEYS: Final = frozenset({"tool_call_id", "audio", "prefix", "reasoning_content"})


def count_chat(
    model: str, body: Mapping[str, Any], image_sizes: ImageSizes | None = None
) -> RequestCount:
    parts = Parts(model, image_sizes)
    messages = body.get("messages")
    if type(messages) is not list:
        raise InvalidRequest("messages must be an array of message objects", param="messages")
    count_messages(parts, messages, "messages")
    parts.overhead += REPLY_PRIMING
    for key in ("tools", "functions"):
        tools = body.get(key)
        if tools is not None:
            tally = definitions_tokens(tools, parts.count, parts.encoding_name, key)
            parts.tools += tally.tokens
            if not tally.exact:
                parts.notes.append(f"{key}: definitions beyond the cookbook formula (estimate)")
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        parts.add_json_estimate(response_format.get("json_schema"), "response_format schema")
    return finish(parts, chat=True)


def count_messages(parts: Parts, messages: list[Any], param: str) -> None:
    """Add the tokens of chat ``messages``; the hottest loop of the gateway."""
    encode = parts.profile.fast_encode
    roles = parts.profile.role_tokens
    count = parts.count
    text = overhead = 0
    for index, message in enumerate(messages):
        if type(message) is not dict and not isinstance(message, Mapping):
            raise InvalidRequest(f"{param}[{index}] must be an object", param=f"{param}[{index}]")
        overhead += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                if type(value) is str:
                    if len(value) <= CHUNK_CHARS:
                        try:
                            text += len(encode(value))
                        except UnicodeEncodeError:  # lone surrogates: the repairing path
                            text += count(value)
                    else:
                        text += count(value)
                elif value is not None:
                    text += _content_parts(parts, value, f"{param}[{index}].content")
            elif key == "role":
                if type(value) is not str:
                    raise InvalidRequest(
                        f"{param}[{index}].role must be a string", param=f"{param}[{index}].role"
                    )
                known = roles.get(value)
                overhead += count(value) if known is None else known
            else:
                counted = _other_field(parts, key, value, f"{param}[{index}]")
                text += counted
                if key == "name":
                    overhead += TOKENS_PER_NAME
    parts.text += text
    parts.overhead += overhead


def _other_field(parts: Parts, key: str, value: Any, param: str) -> int:
    """Text tokens of a message field other than role and content (tools go to ``parts``)."""
    if key == "name":
        if type(value) is not str:
            raise InvalidRequest(f"{param}.name must be a string", param=f"{param}.name")
        return parts.count(value)
    if key in ("tool_calls", "function_call"):
        if value is not None:
            parts.tools += calls_tokens(value, parts.count, f"{param}.{key}")
            parts.note("tool calls in messages: name + arguments + 3 each (estimate)")
        return 0
    if key in _SKIPPED_KEYS:
        parts.note(f"message field {key} not counted (template unpublished)")
        return 0
    if type(value) is str:
        return parts.count(value)  # the cookbook counts every string field
    return 0


def _content_parts(parts: Parts, content: Any, param: str) -> int:
    """Tokens of a content array; text goes in the return value, media into ``parts``."""
    if not isinstance(content, list):
        raise InvalidRequest(f"{param} must be a string or an array of parts", param=param)
    text = 0
    texts = 0
    for index, part in enumerate(content):
        item = f"{param}[{index}]"
        if type(part) is str:  # some clients send bare strings; providers read them as text
            text += parts.count(part)
            texts += 1
            continue
        if not isinstance(part, Mapping):
            raise InvalidRequest(f"{item} must be an object", param=item)
        kind = part.get("type")
        if kind in ("text", "refusal"):
            value = part.get(kind)
            if not isinstance(value, str):
                raise InvalidRequest(f"{item}.{kind} must be a string", param=f"{item}.{kind}")
            text += parts.count(value)
            texts += 1
        elif kind == "image_url":
            parts.add_media(
                image_url_tokens(parts.model, part.get("image_url"), item, sizes=parts.image_sizes)
            )
        elif kind == "input_audio":
            parts.add_media(input_audio_tokens(parts.model, part.get("input_audio"), item))
        elif kind == "video_url":
            parts.add_media(video_url_tokens(parts.model, part.get("video_url"), item))
        elif kind == "file":
            parts.add_media(MediaTally(note="file parts (PDF …) not counted: provider-side"))
        elif isinstance(kind, str):
            parts.add_json_estimate(part, f"content part type {kind}")
        else:
            raise InvalidRequest(f"{item}.type must be a string", param=f"{item}.type")
    if texts > 1:
        parts.note("several text parts in one message: counted separately (unverified)")
    return text

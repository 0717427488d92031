"""Reading usage out of each provider's stream format, one SSE event at a time.

A meter sees every event on its way to the client. It remembers the text actually delivered (to
count it if the stream ends without usage), recognises the event that carries the final usage,
and says how to render that event once the request is settled: with Ciyuan's figures added as an
extra ``ciyuan`` field, or dropped when the client did not ask for usage (OpenAI only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ciyuan.errors import CiyuanError, InvalidRequest
from ciyuan.gateway.wire_errors import anthropic_error_body, openai_error_object
from ciyuan.pricing.usage import Usage

Render = Callable[[dict[str, Any] | None], bytes | None]
"""Given Ciyuan's figures (or None when unsettled), the bytes to send in place of the event."""


@dataclass(frozen=True, slots=True)
class Step:
    """What to do with one upstream event."""

    forward: bytes | None = None
    usage: Usage | None = None
    render: Render | None = None
    done: bool = False
    """The stream's own end marker (OpenAI's ``[DONE]``, Anthropic's ``message_stop``, a
    Responses ``response.completed`` without usage): held back until settlement has committed,
    so a client never holds a complete stream that a crash left uncharged. ``forward`` is the
    marker to send then (None: OpenAI's ``[DONE]``)."""
    usage_error: str | None = None
    """The event carries usage that cannot be read (why): settled on the local count instead,
    and rendered like a good usage event, so a client that did not ask for usage never gets it."""


def _frame(event_name: bytes | None, data: dict[str, Any]) -> bytes:
    head = b"event: " + event_name + b"\n" if event_name else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def _split(event: bytes) -> tuple[bytes | None, bytes | None]:
    """(event name, data) of one SSE event; data lines are joined as the spec says."""
    name = None
    data: list[bytes] = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return name, (b"\n".join(data) if data else None)


def _json(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class StreamMeter:
    def __init__(self, client_wants_usage: bool) -> None:
        self.client_wants_usage = client_wants_usage
        self.pieces: list[str] = []
        self.first_output = False
        self.finished = False
        """The upstream sent its normal end of stream, not merely closed the connection."""
        self.errored = False
        """The upstream sent an error event of its own (forwarded as it came)."""

    def error_frame(self, error: CiyuanError, figures: dict[str, Any] | None) -> bytes:
        """The event that tells the client its stream broke, in the provider's own format, so
        its SDK raises instead of ending quietly on a truncated reply: OpenAI's data chunk
        with an ``error`` object. ``figures``: Ciyuan's, when what was delivered was charged."""
        chunk: dict[str, Any] = {"error": openai_error_object(error)}
        if figures is not None:
            chunk["ciyuan"] = figures
        return _frame(None, chunk)

    def step(self, event: bytes) -> Step:
        raise NotImplementedError

    def delivered_text(self) -> str:
        return "".join(self.pieces)

    def _took(self, text: object) -> None:
        if isinstance(text, str) and text:
            self.first_output = True
            self.pieces.append(text)

    def final_usage_frame(
        self, usage: Usage, figures: dict[str, Any], model: str, request_id: str
    ) -> bytes | None:
        """An event to send when the upstream reported no usage, if the format has one."""
        return None


class OpenAIStreamMeter(StreamMeter):
    """Chat completions and legacy completions: ``data:`` chunks, usage chunk, ``[DONE]``."""

    def step(self, event: bytes) -> Step:
        _, data = _split(event)
        if data is None:
            return Step(forward=event + b"\n\n")
        if data.strip() == b"[DONE]":
            self.finished = True
            return Step(done=True)
        chunk = _json(data)
        if chunk is None:
            return Step(forward=event + b"\n\n")
        if chunk.get("error") is not None:
            self.errored = True
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            self._took(choice.get("text"))
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._took(delta.get("content"))
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, dict) and isinstance(call.get("function"), dict):
                        self._took(call["function"].get("arguments"))
        reported = chunk.get("usage")
        if reported is None:
            return Step(forward=event + b"\n\n")
        render: Render = lambda figures: self._render(chunk, figures)  # noqa: E731
        try:
            return Step(usage=Usage.from_openai_chat(reported), render=render)
        except InvalidRequest as error:
            return Step(usage_error=error.message, render=render)

    def _render(self, chunk: dict[str, Any], figures: dict[str, Any] | None) -> bytes | None:
        if not self.client_wants_usage:
            if not chunk.get("choices"):
                return None
            chunk.pop("usage", None)  # usage on a content chunk: keep the content only
            return _frame(None, chunk)
        if figures is not None:
            chunk["ciyuan"] = figures
        return _frame(None, chunk)

    def final_usage_frame(
        self, usage: Usage, figures: dict[str, Any], model: str, request_id: str
    ) -> bytes | None:
        if not self.client_wants_usage:
            return None
        chunk = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": usage.input_total,
                "completion_tokens": usage.output_total,
                "total_tokens": usage.input_total + usage.output_total,
            },
            "ciyuan": figures,
        }
        return _frame(None, chunk)


class ResponsesStreamMeter(StreamMeter):
    """The Responses API: named events; the usage rides on ``response.completed``."""

    def step(self, event: bytes) -> Step:
        name, data = _split(event)
        payload = _json(data)
        if payload is None:
            return Step(forward=event + b"\n\n")
        kind = payload.get("type")
        if kind == "error":
            self.errored = True
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
            self._took(payload.get("delta"))
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.finished = True
            response = payload.get("response")
            reported = response.get("usage") if isinstance(response, dict) else None
            if reported is not None:
                render: Render = lambda figures: self._render(name, payload, figures)  # noqa: E731
                try:
                    return Step(usage=Usage.from_openai_responses(reported), render=render)
                except InvalidRequest as error:
                    return Step(usage_error=error.message, render=render)
            return Step(forward=event + b"\n\n", done=True)
        return Step(forward=event + b"\n\n")

    @staticmethod
    def _render(
        name: bytes | None, payload: dict[str, Any], figures: dict[str, Any] | None
    ) -> bytes:
        if figures is not None:
            payload["ciyuan"] = figures
        return _frame(name, payload)

    def error_frame(self, error: CiyuanError, figures: dict[str, Any] | None) -> bytes:
        """The Responses API's own ``error`` event."""
        wire = openai_error_object(error)
        event: dict[str, Any] = {
            "type": "error", "code": wire["code"], "message": wire["message"], "param": None,
        }  # fmt: skip
        if figures is not None:
            event["ciyuan"] = figures
        return _frame(b"error", event)


class AnthropicStreamMeter(StreamMeter):
    """Anthropic messages: input usage on ``message_start``, final output on ``message_delta``."""

    def __init__(self, client_wants_usage: bool) -> None:
        super().__init__(client_wants_usage)
        self._opening_usage: dict[str, Any] = {}

    def step(self, event: bytes) -> Step:
        name, data = _split(event)
        payload = _json(data)
        if payload is None:
            return Step(forward=event + b"\n\n")
        kind = payload.get("type")
        if kind == "error":
            self.errored = True
        elif kind == "message_start":
            message = payload.get("message")
            if isinstance(message, dict) and isinstance(message.get("usage"), dict):
                self._opening_usage = dict(message["usage"])
        elif kind == "content_block_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict):
                self._took(delta.get("text"))
                self._took(delta.get("partial_json"))
                self._took(delta.get("thinking"))
        elif kind == "message_stop":
            self.finished = True
            return Step(forward=event + b"\n\n", done=True)
        elif kind == "message_delta" and payload.get("usage") is not None:
            # message_delta's counts are cumulative and final; fields it omits keep their
            # message_start values.
            render: Render = lambda figures: self._render(name, payload, figures)  # noqa: E731
            try:
                usage = Usage.from_anthropic_stream(self._opening_usage, payload["usage"])
            except InvalidRequest as error:
                return Step(usage_error=error.message, render=render)
            return Step(usage=usage, render=render)
        return Step(forward=event + b"\n\n")

    @staticmethod
    def _render(
        name: bytes | None, payload: dict[str, Any], figures: dict[str, Any] | None
    ) -> bytes:
        if figures is not None:
            payload["ciyuan"] = figures
        return _frame(name, payload)

    def error_frame(self, error: CiyuanError, figures: dict[str, Any] | None) -> bytes:
        """Anthropic's ``error`` event, as its API sends one mid-stream (``overloaded_error``)."""
        body = anthropic_error_body(error)
        if figures is not None:
            body["ciyuan"] = figures
        return _frame(b"error", body)

"""Structured logs: one JSON object per line on stderr, with the request id on every request
line, so an operator's log pipeline can join them with usage events and receipts.

What is never logged: API keys (only their public prefix) or any other secret. Request lines
carry ids, model, status, token counts, cost and timings, nothing a customer typed; only when the
operator turns on ``log_prompts`` (``CIYUAN_LOG_PROMPTS``) do they also carry the prompt and the
completion text (:func:`prompt_text`, capped at ``CONTENT_CHARS_MAX`` each).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Final, Literal

import orjson

LogFormat = Literal["json", "text"]
REQUEST_LOGGER: Final = "ciyuan.requests"
_RESERVED: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}
CONTENT_CHARS_MAX: Final = 16_384
"""Longest prompt or completion text put on one log line (with ``log_prompts``): a request may
carry megabytes, and a log line that size would stall the pipeline that ships it."""
_PROMPT_FIELDS: Final = ("instructions", "system", "messages", "prompt", "input")
"""Where the request bodies of every API carry text: chat and Anthropic messages, Anthropic's
system, the Responses API's instructions and input, completions' prompt, embeddings' input."""
_TEXT_FIELDS: Final = ("content", "text", "input", "prompt")
"""Inside a message or a content part: the fields that hold text (never ids, roles, URLs or
base64 media, which are not what an operator debugging a prompt wants to read)."""


def capped(text: str) -> str:
    if len(text) <= CONTENT_CHARS_MAX:
        return text
    return text[:CONTENT_CHARS_MAX] + f"…[{len(text) - CONTENT_CHARS_MAX} more characters]"


def prompt_text(body: dict[str, Any]) -> str:
    """The text a client sent in a request body of any API, one piece per line, capped."""
    pieces: list[str] = []
    for name in _PROMPT_FIELDS:
        if name in body:
            _collect(body[name], pieces)
    return capped("\n".join(pieces))


def _collect(value: object, pieces: list[str]) -> None:
    if isinstance(value, str):
        pieces.append(value)
    elif isinstance(value, list):
        for item in value:
            _collect(item, pieces)
    elif isinstance(value, dict):
        for name in _TEXT_FIELDS:
            if name in value:
                _collect(value[name], pieces)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(fmt: LogFormat, level: str = "INFO") -> None:
    """Route every ``ciyuan.*`` logger to stderr in the chosen format (idempotent)."""
    root = logging.getLogger("ciyuan")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False

"""Structured logs: one JSON object per line on stderr, with the request id on every request
line, so an operator's log pipeline can join them with usage events and receipts.

What is never logged: API keys (only their public prefix), prompts, completions. Request lines
carry ids, model, status, token counts, cost and timings, nothing a customer typed.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Final, Literal

import orjson

LogFormat = Literal["json", "text"]
REQUEST_LOGGER: Final = "ciyuan.requests"
_RESERVED: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}


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

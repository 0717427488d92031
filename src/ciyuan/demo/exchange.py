"""What a demo handler receives and returns.

Handlers are plain functions ``DemoRequest -> JsonReply | StreamReply`` with no I/O: they build
the whole reply up front (it is deterministic and small). The app in ``app.py`` owns every
side effect — delays, drips, cuts, malformed bytes — so each fault behaves the same on every API.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .faults import Directives
from .wire_errors import WireError, invalid, missing

SYSTEM_FINGERPRINT = "fp_ciyuan_demo"


@dataclass(frozen=True, slots=True)
class DemoRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    body: dict[str, Any]
    directives: Directives
    request_id: str
    created: int
    """Unix seconds; one value per request so every chunk of a stream carries the same one."""


@dataclass(frozen=True, slots=True)
class JsonReply:
    body: Any
    status: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Frame:
    data: bytes
    content: bool = False
    """Content frames are the ones ``cut:N`` counts: text deltas and tool-argument deltas."""


@dataclass(frozen=True, slots=True)
class StreamReply:
    frames: Iterable[Frame]
    broken: bytes = field(default=b'data: {"id": "broken\n\n')
    """What ``malformed`` injects after the first content frame: an SSE line that is not JSON."""


def new_id(prefix: str, nbytes: int = 12) -> str:
    return prefix + secrets.token_hex(nbytes)


def data_frame(obj: Any, content: bool = False) -> Frame:
    return Frame(b"data: " + orjson.dumps(obj) + b"\n\n", content)


def event_frame(event: str, obj: Any, content: bool = False) -> Frame:
    return Frame(b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n", content)


def require_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise missing("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "Invalid type for 'model': expected a non-empty string.")
    return model


def optional_int(body: Mapping[str, Any], *names: str, minimum: int = 1) -> int | None:
    """The first of ``names`` that is set, validated as an integer ≥ ``minimum``."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise invalid(
                name, f"Invalid '{name}': expected an integer >= {minimum}, got {value!r}."
            )
        return value
    return None


def flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(name, f"Invalid type for '{name}': expected a boolean.")
    return value


def include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def bad(message: str, param: str | None = None) -> WireError:
    return WireError(400, message, param)

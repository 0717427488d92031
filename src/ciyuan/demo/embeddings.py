"""OpenAI ``/v1/embeddings``: deterministic unit vectors, ``dimensions`` and base64 honoured.

The SDK asks for ``encoding_format=base64`` by default and decodes little-endian float32, so
both encodings must carry the same numbers.
"""

from __future__ import annotations

import base64
import hashlib
import math
import sys
from array import array
from collections.abc import Mapping
from typing import Any, Final

from . import usage
from .exchange import DemoRequest, JsonReply, optional_int, require_model
from .wire_errors import invalid, missing

DIMENSIONS_DEFAULT: Final = {"text-embedding-3-large": 3072}
DIMENSIONS_FALLBACK: Final = 1536
DIMENSIONS_MAX: Final = 8192
INPUTS_MAX: Final = 2048


def vector(text: str, dimensions: int) -> list[float]:
    """A unit vector fixed by ``text``; float32-representable so base64 round-trips exactly."""
    raw = array("h", hashlib.shake_256(text.encode()).digest(2 * dimensions))
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return array("f", (v / norm for v in raw)).tolist()


def _base64(values: list[float]) -> str:
    packed = array("f", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def _inputs(body: Mapping[str, Any]) -> list[str]:
    raw = body.get("input")
    if raw is None:
        raise missing("input")
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(v, int) for v in raw):
        items = [raw]
    elif isinstance(raw, list) and raw:
        items = raw
    else:
        raise invalid("input", "Invalid 'input': expected a non-empty string or array.")
    if len(items) > INPUTS_MAX:
        raise invalid("input", f"Invalid 'input': at most {INPUTS_MAX} inputs per request.")
    texts: list[str] = []
    for item in items:
        if isinstance(item, str) and item:
            texts.append(item)
        elif isinstance(item, list) and item and all(isinstance(v, int) for v in item):
            texts.append(str(item))
        else:
            raise invalid(
                "input", "Invalid 'input': each input must be a non-empty string or token array."
            )
    return texts


def embeddings(req: DemoRequest) -> JsonReply:
    body = req.body
    model = require_model(body)
    texts = _inputs(body)
    dimensions = optional_int(body, "dimensions") or DIMENSIONS_DEFAULT.get(
        model, DIMENSIONS_FALLBACK
    )
    if dimensions > DIMENSIONS_MAX:
        raise invalid("dimensions", f"Invalid 'dimensions': must be at most {DIMENSIONS_MAX}.")
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise invalid("encoding_format", "Invalid 'encoding_format': expected 'float' or 'base64'.")
    data = []
    for index, text in enumerate(texts):
        values = vector(text, dimensions)
        encoded: Any = _base64(values) if encoding_format == "base64" else values
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    reply: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if not req.directives.no_usage:
        prompt = usage.prompt_tokens(model, body, "embeddings")
        reply["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
    return JsonReply(reply)


__all__ = ["embeddings", "vector"]

"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body bytes.

The timestamp is signed with the body so a captured request cannot be replayed later than the
receiver's tolerance; the scheme (``t=…,v1=…``) follows the one payment providers use, so
receivers know it. ``v1`` names the scheme so a later one can be sent beside it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

SIGNATURE_HEADER: Final = "x-ciyuan-signature"
DELIVERY_HEADER: Final = "x-ciyuan-delivery"
EVENT_HEADER: Final = "x-ciyuan-event"
TOLERANCE_S_DEFAULT: Final = 300


def _digest(secret: str, timestamp_s: int, body: bytes) -> str:
    message = str(timestamp_s).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp_s: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp_s`` (Unix seconds)."""
    assert secret, "an empty webhook secret signs nothing"
    return f"t={timestamp_s},v1={_digest(secret, timestamp_s, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now_s: int, tolerance_s: int = TOLERANCE_S_DEFAULT
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of ``now_s``."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(name, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp_s = int(stamps[0])
    if abs(now_s - timestamp_s) > tolerance_s:
        return False
    expected = _digest(secret, timestamp_s, body)
    # Constant-time comparison against every v1 value (a sender may sign with two secrets
    # while rotating).
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))

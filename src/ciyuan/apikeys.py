"""API keys: 256-bit random secrets shown once, stored only as SHA-256 hashes.

A key looks like ``ck-AbCd3fGh_<43 url-safe chars>``. The part up to the underscore is its
*prefix*: public, unique, indexed, printed in listings and logs so an operator can name a key
without seeing it. A fast hash is right here (unlike for passwords): the secret has 256 bits of
entropy, so there is nothing to brute-force. The stored hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

KEY_SCHEME: Final = "ck-"
PREFIX_CHARS: Final = 8
SECRET_BYTES: Final = 32
KEY_CHARS_MAX: Final = 128
_ALPHABET: Final = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class NewKey:
    secret: Secret
    prefix: str
    hash_hex: str


def generate() -> NewKey:
    prefix = KEY_SCHEME + "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_CHARS))
    raw = f"{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewKey(secret=Secret(raw), prefix=prefix, hash_hex=hash_key(raw))


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def split(raw: str) -> tuple[str, str] | None:
    """The (prefix, hash) of a presented key, or None when it cannot be one of ours."""
    if not raw.startswith(KEY_SCHEME) or len(raw) > KEY_CHARS_MAX:
        return None
    prefix, sep, rest = raw.partition("_")
    if not sep or len(prefix) != len(KEY_SCHEME) + PREFIX_CHARS or not rest:
        return None
    return prefix, hash_key(raw)


def matches(stored_hash_hex: str, presented_hash_hex: str) -> bool:
    return hmac.compare_digest(stored_hash_hex.encode(), presented_hash_hex.encode())

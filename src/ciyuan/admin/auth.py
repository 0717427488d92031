"""The admin key, dashboard sessions and CSRF tokens.

The admin key comes from an environment variable (named by ``Settings.admin_key_env``), never
from the config file, so it is not committed with the configuration. Without it the admin API
and the dashboard are disabled. The JSON API takes the key as ``Authorization: Bearer …``; the
dashboard trades it once for a session cookie.

A session cookie is ``<expires_us>.<session id>.<mac>``. The MAC key is derived from the admin
key, not from a per-process secret, so every gateway behind a load balancer accepts the same
session, and rotating the admin key ends every session at once. A CSRF token is a MAC of the
session id: it is bound to one session, so a token read from one login is useless in another.
Every comparison of a secret is constant-time (``hmac.compare_digest`` on fixed-size digests,
so not even the length of the key leaks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ciyuan.apikeys import Secret
from ciyuan.clock import US_PER_S, Clock
from ciyuan.settings import Settings

log = logging.getLogger("ciyuan.admin")

ADMIN_KEY_CHARS_MIN: Final = 16
"""Shorter admin keys are refused: the key guards every balance, so it must not be guessable."""
ADMIN_KEY_CHARS_MAX: Final = 512
SESSION_COOKIE: Final = "ciyuan_session"
LOGIN_COOKIE: Final = "ciyuan_login"
_SESSION_KEY_LABEL: Final = b"ciyuan dashboard session v1"


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """What the admin surfaces need from the settings: the key (or why there is none)."""

    key: Secret | None
    key_env: str
    session_ttl_s: float

    @property
    def disabled_reason(self) -> str | None:
        if self.key is None:
            return f"the admin API is disabled: set the environment variable {self.key_env}"
        return None


NO_ADMIN: Final = AdminConfig(key=None, key_env="CIYUAN_ADMIN_KEY", session_ttl_s=1.0)
"""For an app built without settings: the admin surfaces answer that they are disabled."""


def admin_config(settings: Settings, environ: Mapping[str, str] | None = None) -> AdminConfig:
    """Read the admin key from the environment variable the settings name."""
    environ = os.environ if environ is None else environ
    raw = environ.get(settings.admin_key_env, "")
    key: Secret | None = None
    if raw and not ADMIN_KEY_CHARS_MIN <= len(raw) <= ADMIN_KEY_CHARS_MAX:
        # Refuse to start the admin surfaces rather than guard money with a weak key.
        log.error(
            "%s must be %d to %d characters; the admin API stays disabled",
            settings.admin_key_env,
            ADMIN_KEY_CHARS_MIN,
            ADMIN_KEY_CHARS_MAX,
        )
    elif raw:
        key = Secret(raw)
    return AdminConfig(
        key=key, key_env=settings.admin_key_env, session_ttl_s=settings.admin_session_ttl_s
    )


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _same(expected: str, presented: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII str, and a form may send anything.
    return hmac.compare_digest(expected.encode(), presented.encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class AdminAuth:
    """Checks the admin key and issues and checks dashboard sessions and CSRF tokens."""

    def __init__(self, key: Secret, *, session_ttl_s: float, clock: Clock) -> None:
        assert session_ttl_s > 0
        self._key_digest = _digest(key.reveal())
        self._session_key = hmac.new(key.reveal().encode(), _SESSION_KEY_LABEL, "sha256").digest()
        self.session_ttl_s = session_ttl_s
        self._clock = clock

    def is_admin_key(self, presented: str | None) -> bool:
        # Digests have a fixed size, so the comparison time depends on neither value's length.
        candidate = _digest(presented or "")
        return hmac.compare_digest(self._key_digest, candidate) and bool(presented)

    def _mac(self, message: str) -> str:
        return _b64(hmac.new(self._session_key, message.encode(), "sha256").digest())

    # ---- sessions -------------------------------------------------------------------------

    def new_session(self) -> str:
        expires_us = self._clock.now_us() + int(self.session_ttl_s * US_PER_S)
        return self.session_cookie(expires_us, secrets.token_urlsafe(18))

    def session_cookie(self, expires_us: int, session_id: str) -> str:
        body = f"{expires_us}.{session_id}"
        return f"{body}.{self._mac('session:' + body)}"

    def session_id(self, cookie: str | None) -> str | None:
        """The session id of a valid, unexpired cookie, else None."""
        if not cookie or len(cookie) > 200:
            return None
        body, _, mac = cookie.rpartition(".")
        expires_text, _, session_id = body.partition(".")
        if not (expires_text.isdigit() and session_id and mac):
            return None
        if not _same(self._mac("session:" + body), mac):
            return None
        if int(expires_text) <= self._clock.now_us():
            return None
        return session_id

    # ---- CSRF -----------------------------------------------------------------------------

    def csrf_token(self, session_id: str) -> str:
        return self._mac("csrf:" + session_id)

    def csrf_ok(self, session_id: str, presented: str | None) -> bool:
        return _same(self.csrf_token(session_id), presented or "")

    def new_login_nonce(self) -> str:
        """A nonce for the login form's cookie; its CSRF token is ``login_token(nonce)``."""
        return secrets.token_urlsafe(18)

    def login_token(self, nonce: str) -> str:
        return self._mac("login:" + nonce)

    def login_ok(self, nonce: str | None, presented: str | None) -> bool:
        if not nonce or len(nonce) > 64:
            return False
        return _same(self.login_token(nonce), presented or "")

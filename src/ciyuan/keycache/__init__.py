"""API-key revocations broadcast to every gateway process, over Redis pub/sub.

Each gateway process caches key lookups for ``auth_cache_ttl_s`` (5 s by default), so a key
revoked in the database could keep working that long. With Redis configured, whoever revokes a
key (``ciyuan keys revoke``, the admin API) also publishes its prefix on ``CHANNEL`` after the
revocation commits, and every subscribed gateway drops that prefix from its cache at once.

The bound a revoked key keeps working after the revocation commits:

- subscribed gateways: the pub/sub delivery time (well under a millisecond on one host), plus
  at most one lookup that read the key just before the commit and cached it just after;
- otherwise (Redis down, the publish failed, a lookup raced the message): ``auth_cache_ttl_s``.

Pub/sub delivers at most once and only to connected subscribers, so a gateway that lost its
subscription clears its whole cache when it subscribes again (whatever was revoked meanwhile
is gone with it); the TTL stays the hard bound in every case. Redis carries only key prefixes,
which are public; never a secret.

``publish_revocation`` is synchronous, for the CLI; ``RevocationListener`` runs in a gateway's
event loop and also publishes asynchronously for in-process revocations (admin API).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

import redis
import redis.asyncio
import redis.exceptions

CHANNEL: Final = "ciyuan:api-keys:revoked"
CONNECT_TIMEOUT_S: Final = 1.0
RECONNECT_S: Final = 1.0
"""Wait between attempts to resubscribe: short, since revocations are missed meanwhile."""

log = logging.getLogger("ciyuan.keycache")

Forget = Callable[[str | None], None]
"""Drop one prefix from the process's auth cache, or every entry when given ``None``."""


def publish_revocation(redis_url: str | None, prefix: str) -> int | None:
    """Tell every gateway to forget ``prefix`` now; the number that heard it, or None.

    Call after the revocation has committed. Never raises: the database already holds the
    revocation, so a Redis failure only widens the delay to the auth-cache TTL (logged).
    """
    if not redis_url:
        return None
    try:
        client = redis.Redis.from_url(
            redis_url, socket_timeout=CONNECT_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S
        )
        try:
            return int(client.publish(CHANNEL, prefix))
        finally:
            client.close()
    except redis.exceptions.RedisError as exc:
        log.warning(
            "could not broadcast the revocation of %s (%s); gateways drop it within their "
            "auth-cache TTL",
            prefix,
            type(exc).__name__,
        )
        return None


class RevocationListener:
    """Subscribes to ``CHANNEL`` and calls ``forget`` for each prefix, resubscribing forever."""

    def __init__(self, redis_url: str, forget: Forget, *, reconnect_s: float = RECONNECT_S) -> None:
        self._client = redis.asyncio.Redis.from_url(
            redis_url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=None
        )
        self._forget = forget
        self._reconnect_s = reconnect_s
        self.subscribed = asyncio.Event()
        """Set while subscribed (tests and readiness wait for it)."""
        self.received = 0

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
            except (redis.exceptions.RedisError, OSError) as exc:
                if self.subscribed.is_set():
                    log.warning(
                        "lost the key-revocation channel (%s); revocations fall back to the "
                        "auth-cache TTL until it is back",
                        type(exc).__name__,
                    )
                self.subscribed.clear()
            await asyncio.sleep(self._reconnect_s)

    async def _listen(self) -> None:
        async with self._client.pubsub() as pubsub:
            await pubsub.subscribe(CHANNEL)
            # Revocations published while this process was not listening were lost to it.
            self._forget(None)
            self.subscribed.set()
            log.info("listening for key revocations on Redis")
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                data = message.get("data")
                prefix = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
                self.received += 1
                self._forget(prefix)

    async def publish(self, prefix: str) -> None:
        """Broadcast from inside a gateway (admin API); failures only widen the delay to TTL."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self._client.publish(CHANNEL, prefix)
        except (redis.exceptions.RedisError, TimeoutError) as exc:
            log.warning(
                "could not broadcast the revocation of %s (%s); gateways drop it within their "
                "auth-cache TTL",
                prefix,
                type(exc).__name__,
            )

    async def aclose(self) -> None:
        await self._client.aclose()

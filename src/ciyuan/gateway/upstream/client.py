"""Sending requests upstream with aiohttp, and translating its failures at the seam.

aiohttp rather than httpx on this path: its client costs a fraction of httpx's per request, and
the gateway's added latency budget is well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import aiohttp

from ciyuan.errors import UpstreamError, UpstreamTimeout
from ciyuan.gateway.upstream.base import Upstream

CONNECTIONS_MAX: Final = 512
RESPONSE_BYTES_MAX: Final = 64 * 1024 * 1024


class UpstreamClient:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        # By (read, connect, stream): built once rather than per request. Keys come from the
        # operator's settings only, so they stay few.
        self._timeouts: dict[tuple[float, float, bool], aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=CONNECTIONS_MAX, ttl_dns_cache=300)
        # No cookie jar: a cookie one client's call brought back (providers' CDNs set them)
        # must not ride along on every other client's calls, and filtering cost CPU per call.
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(
        self,
        upstream: Upstream,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        stream: bool,
    ) -> aiohttp.ClientResponse:
        """POST ``body`` upstream and return the response with its body unread: close it after.

        A stream may rightly last longer than any total limit, so for streams each read is
        bounded instead of the whole exchange.
        """
        assert self._session is not None, "UpstreamClient.start() was not called"
        timeout = self._timeouts.get((upstream.timeout_s, upstream.connect_timeout_s, stream))
        if timeout is None:
            timeout = self._timeouts[upstream.timeout_s, upstream.connect_timeout_s, stream] = (
                _timeout(upstream, stream=stream)
            )
        try:
            return await self._session.post(
                upstream.url(path), data=body, headers=headers, timeout=timeout
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {upstream.name} did not answer in time") from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamError(
                f"cannot connect to upstream {upstream.name}", fallback_safe=True
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream {upstream.name} failed: {type(exc).__name__}") from exc


def _timeout(upstream: Upstream, *, stream: bool) -> aiohttp.ClientTimeout:
    if stream:
        return aiohttp.ClientTimeout(
            total=None, sock_connect=upstream.connect_timeout_s, sock_read=upstream.timeout_s
        )
    return aiohttp.ClientTimeout(total=upstream.timeout_s, sock_connect=upstream.connect_timeout_s)


async def read_capped(response: aiohttp.ClientResponse, limit: int = RESPONSE_BYTES_MAX) -> bytes:
    """The whole response body, refusing one larger than ``limit``."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise UpstreamError(f"upstream response exceeds {limit} bytes")
            chunks.append(chunk)
    except TimeoutError as exc:
        raise UpstreamTimeout("upstream response did not complete in time") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"upstream response failed: {type(exc).__name__}") from exc
    return b"".join(chunks)

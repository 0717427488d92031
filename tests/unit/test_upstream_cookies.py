"""The upstream client keeps no cookies: what a provider's CDN set on one client's call must not
ride along on another client's call (the gateway shares one connection pool among all keys).

A real aiohttp server on loopback plays the provider: it sets a cookie on every answer and
records the Cookie header of every request it gets. It is reached as ``localhost``, not
by address: a cookie jar keeps no cookies from an IP-address host, so that could not fail.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ciyuan.gateway.upstream.base import Upstream
from ciyuan.gateway.upstream.client import UpstreamClient


def test_a_cookie_set_by_the_upstream_is_not_sent_back() -> None:
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("__cf_bm", "client-a-session", path="/")
        return response

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "localhost", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        upstream = Upstream(
            name="cdn", kind="openai", base_url=f"http://localhost:{port}/v1", api_key=None,
            timeout_s=5, connect_timeout_s=5,
        )  # fmt: skip
        client = UpstreamClient()
        await client.start()
        try:
            for _ in range(2):
                response = await client.open(
                    upstream, "chat/completions", b"{}", {"content-type": "application/json"},
                    stream=False,
                )  # fmt: skip
                assert response.status == 200
                assert "__cf_bm" in response.headers.get("Set-Cookie", "")
                await response.read()
                response.release()
        finally:
            await client.close()
            await runner.cleanup()

    asyncio.run(main())
    assert seen == [None, None]

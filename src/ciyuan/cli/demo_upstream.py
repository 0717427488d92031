"""``ciyuan demo-upstream``: the demo upstream alone in its own process, for tests and benchmarks.

It prints exactly one line, ``demo upstream listening on http://HOST:PORT``, once the socket is
accepting connections, so a parent process can wait for that line instead of polling. With
``--port 0`` the system picks a free port and the line names it, which avoids port races in
parallel test runs.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
import uvicorn

from ciyuan.demo import create_app

READY_POLL_S = 0.005


async def _announce_when_ready(server: uvicorn.Server, host: str, port: int) -> None:
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(READY_POLL_S)
    sys.stdout.write(f"demo upstream listening on http://{host}:{port}\n")
    sys.stdout.flush()


def run(host: str, port: int, log_level: str = "warning") -> None:
    """Serve the demo upstream until SIGINT/SIGTERM (uvicorn handles both)."""
    config = uvicorn.Config(
        create_app(),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        # Benchmarks open many connections at once; the default backlog would refuse some.
        backlog=4096,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    bound_port: int = sock.getsockname()[1]

    async def serve() -> None:
        announce = asyncio.create_task(_announce_when_ready(server, host, bound_port))
        try:
            await server.serve(sockets=[sock])
        finally:
            announce.cancel()

    asyncio_runner = asyncio.Runner(loop_factory=config.get_loop_factory())
    with asyncio_runner:
        asyncio_runner.run(serve())


def register(app: typer.Typer) -> None:
    @app.command("demo-upstream")
    def demo_upstream(
        host: Annotated[
            str, typer.Option(help="Interface to listen on (keep it loopback).")
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 8401,
    ) -> None:
        """Run the built-in demo upstream (OpenAI and Anthropic wire protocols) on its own."""
        run(host, port)

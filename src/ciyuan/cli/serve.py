"""``ciyuan serve``: the gateway, and on the embedded default the demo upstream beside it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from typing import Annotated

import typer
import uvicorn

from ciyuan.cli.context import cli_context
from ciyuan.cli.output import console, fail
from ciyuan.errors import CiyuanError
from ciyuan.settings import Settings

STARTUP_WAIT_S = 30.0


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _server(app: object, *, log_level: str = "warning") -> uvicorn.Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        loop="none",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_keep_alive=30,
        server_header=False,
    )
    return uvicorn.Server(config)


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    for _ in range(int(STARTUP_WAIT_S * 100)):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
        raise SystemExit(1)


def _reload_on_sighup(app: object) -> None:
    runtime = app.state.runtime  # type: ignore[attr-defined]

    def reload() -> None:
        try:
            runtime.reload()
        except Exception as error:  # keep serving on the old configuration
            console.print(f"[red]reload failed, keeping the running configuration:[/red] {error}")

    with contextlib.suppress(NotImplementedError, AttributeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)


async def run_gateway(settings: Settings) -> None:
    from ciyuan.bootstrap import build_app, uses_demo

    demo_url = None
    demo_task = None
    if uses_demo(settings):
        from ciyuan.demo.app import create_app as create_demo_app

        demo_sock = _bound_socket("127.0.0.1", 0)
        demo_url = f"http://127.0.0.1:{demo_sock.getsockname()[1]}/v1"
        demo_server = _server(create_demo_app())
        demo_task = asyncio.create_task(demo_server.serve(sockets=[demo_sock]))
        await _wait_started(demo_server, demo_task)

    app = build_app(settings, demo_url=demo_url)
    sock = _bound_socket(settings.host, settings.port)
    server = _server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await _wait_started(server, task)
    _reload_on_sighup(app)
    port = sock.getsockname()[1]
    base = f"http://{settings.host}:{port}"
    console.print(f"[bold green]Ciyuan gateway listening on {base}[/bold green]", highlight=False)
    console.print(f"database: {settings.db}", highlight=False)
    upstream = f"built-in demo at {demo_url}" if demo_url else settings.upstream_url
    console.print(f"upstream: {upstream}", highlight=False)
    console.print(f"OpenAI base_url: {base}/v1", highlight=False)
    console.print(
        "create a key:  ciyuan accounts create demo && ciyuan keys create --account demo "
        "&& ciyuan credits grant demo 10",
        highlight=False,
    )
    try:
        await task
    finally:
        if demo_task is not None:
            demo_server.should_exit = True
            await demo_task


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on (default 8400).")
    ] = None,
) -> None:
    """Run the gateway (SQLite and the built-in demo upstream unless configured otherwise)."""
    try:
        settings = cli_context(ctx).settings(host=host, port=port)
    except ValueError as error:
        fail(str(error), as_json=False)
    try:
        import uvloop

        uvloop.run(run_gateway(settings))
    except ImportError:
        asyncio.run(run_gateway(settings))
    except CiyuanError as error:
        fail(error, as_json=False)
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

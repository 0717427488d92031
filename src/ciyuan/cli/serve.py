"""``ciyuan serve``: the gateway, and on the embedded default the demo upstream beside it.

Scale-out (``--workers N``): the parent binds the listening socket once and forks N workers
that each run the whole gateway on it (the kernel spreads connections between them), and
supervises them: a worker that dies is replaced, and SIGTERM, SIGINT and SIGHUP are passed on.
Nothing but the socket is shared, so every worker opens its own database pool and Redis client
after the fork. Workers share state only through PostgreSQL (money) and Redis (rate limits,
revocations), so they must use both; the same holds for several ``serve`` processes on
different ports or hosts.

TLS: by default the gateway speaks plain http and expects a reverse proxy in front of it to
terminate TLS. With ``--tls-cert``/``--tls-key`` (``tls_certfile``/``tls_keyfile``) uvicorn
serves https itself on the same port, and plain http there is refused (docs/tls.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit

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


def _server(
    app: object, *, log_level: str = "warning", settings: Settings | None = None
) -> uvicorn.Server:
    """A uvicorn server for ``app``; with ``settings`` naming a certificate, one serving https."""
    tls: dict[str, Any] = {}
    if settings is not None and settings.tls_certfile is not None:
        tls = {
            "ssl_certfile": str(settings.tls_certfile),
            "ssl_keyfile": str(settings.tls_keyfile),
        }
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        loop="none",
        http=getattr(getattr(app, "state", None), "http_protocol", "httptools"),
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_keep_alive=30,
        server_header=False,
        **tls,
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


def _masked(url: str) -> str:
    """A URL fit for a log line: no user name or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def _without_password(url: str) -> str:
    """A database URL fit for the banner: its password (in the netloc or the query) masked."""
    parts = urlsplit(url)
    if parts.password is not None:
        user_host = parts.netloc.rpartition("@")
        user = user_host[0].partition(":")[0]
        parts = parts._replace(netloc=f"{user}:***@{user_host[2]}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(name.lower() == "password" for name, _ in query):
        masked = [(n, "***" if n.lower() == "password" else v) for n, v in query]
        parts = parts._replace(query=urlencode(masked, safe="*"))
    return url if parts == urlsplit(url) else parts.geturl()


def tls_problem(settings: Settings) -> str | None:
    """Why the TLS settings cannot work, or None: both files or neither, and readable."""
    files = {"--tls-cert": settings.tls_certfile, "--tls-key": settings.tls_keyfile}
    given = [path for path in files.values() if path is not None]
    if not given:
        return None
    if len(given) == 1:
        return "native TLS needs both --tls-cert and --tls-key (CIYUAN_TLS_CERTFILE/KEYFILE)"
    for option, path in files.items():
        assert path is not None
        if not Path(path).is_file():
            return f"{option}: no such file {path}"
    return None


def _banner(settings: Settings, port: int, demo_url: str | None) -> None:
    scheme = "https" if settings.tls_certfile is not None else "http"
    base = f"{scheme}://{settings.host}:{port}"
    workers = f" ({settings.workers} workers)" if settings.workers > 1 else ""
    console.print(
        f"[bold green]Ciyuan gateway listening on {base}[/bold green]{workers}", highlight=False
    )
    console.print(f"database: {_without_password(settings.db)}", highlight=False)
    if settings.redis:
        limits = f"Redis at {_masked(settings.redis)}, failing {settings.rate_limit_failure}"
    else:
        limits = "in this process (memory)"
    console.print(f"rate limits: {limits}", highlight=False)
    upstream = f"built-in demo at {demo_url}" if demo_url else settings.upstream_url
    console.print(f"upstream: {upstream}", highlight=False)
    console.print(f"OpenAI base_url: {base}/v1", highlight=False)


def scale_out_problem(settings: Settings) -> str | None:
    """Why this configuration cannot run as several processes, or None when it can."""
    if settings.workers == 1:
        return None
    if not settings.db.startswith("postgresql"):
        return (
            f"--workers {settings.workers} needs PostgreSQL (--db postgresql://…): SQLite has "
            "one writer, so the workers would queue on its lock; run one process on SQLite"
        )
    from ciyuan.bootstrap import rate_policy

    if settings.redis is None and rate_policy(settings).has_rate_rules:
        return (
            f"rate limits with --workers {settings.workers} need --redis redis://…: in-process "
            "limits would let every worker admit the full limit"
        )
    return None


async def _start_demo(demo_sock: socket.socket) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    from ciyuan.demo.app import create_app as create_demo_app

    demo_server = _server(create_demo_app())
    demo_task = asyncio.create_task(demo_server.serve(sockets=[demo_sock]))
    await _wait_started(demo_server, demo_task)
    return demo_server, demo_task


async def _serve_gateway(
    settings: Settings, sock: socket.socket, demo_url: str | None, *, ready_fd: int | None
) -> None:
    """One gateway on ``sock`` until it is told to stop; says so on ``ready_fd`` once up."""
    from ciyuan.bootstrap import build_app
    from ciyuan.logs import configure_logging

    configure_logging(settings.log_format)
    app = build_app(settings, demo_url=demo_url)
    server = _server(app, settings=settings)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await _wait_started(server, task)
    _reload_on_sighup(app)
    if ready_fd is None:
        _banner(settings, sock.getsockname()[1], demo_url)
        _hint()
    else:
        os.write(ready_fd, b"w")
    await task


def _hint() -> None:
    console.print(
        "create a key:  ciyuan accounts create demo && ciyuan keys create --account demo "
        "&& ciyuan credits grant demo 10",
        highlight=False,
    )


async def run_gateway(settings: Settings) -> None:
    from ciyuan.bootstrap import uses_demo

    demo_url = None
    demo_task = None
    if uses_demo(settings):
        demo_sock = _bound_socket("127.0.0.1", 0)
        demo_url = f"http://127.0.0.1:{demo_sock.getsockname()[1]}/v1"
        demo_server, demo_task = await _start_demo(demo_sock)

    sock = _bound_socket(settings.host, settings.port)
    try:
        await _serve_gateway(settings, sock, demo_url, ready_fd=None)
    finally:
        if demo_task is not None:
            demo_server.should_exit = True
            await demo_task


# ---- scale-out: one socket, N forked workers, one supervisor ---------------------------------

RESTART_DELAY_S = 1.0
"""Pause before replacing a dead worker, so a worker that cannot start does not spin."""

Main: TypeAlias = Callable[[], Coroutine[Any, Any, None]]


def _child(main: Main) -> NoReturn:
    """Run ``main`` in a forked child and leave without running the parent's cleanup."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    code = 0
    try:
        _run(main())
    except KeyboardInterrupt:
        pass
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _fork(main: Main) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(main)
    return pid


def run_workers(settings: Settings) -> None:
    """Bind once, fork the demo upstream (if used) and ``settings.workers`` gateways, supervise."""
    from ciyuan.bootstrap import uses_demo

    sock = _bound_socket(settings.host, settings.port)
    ready_r, ready_w = os.pipe()
    children: dict[int, Main] = {}
    demo_url = None
    if uses_demo(settings):
        demo_sock = _bound_socket("127.0.0.1", 0)
        demo_url = f"http://127.0.0.1:{demo_sock.getsockname()[1]}/v1"

        async def demo_main() -> None:
            _demo, task = await _start_demo(demo_sock)
            os.write(ready_w, b"d")
            await task

        children[_fork(demo_main)] = demo_main

    async def worker_main() -> None:
        await _serve_gateway(settings, sock, demo_url, ready_fd=ready_w)

    for _ in range(settings.workers):
        children[_fork(worker_main)] = worker_main

    stopping = False

    def on_signal(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        forward = signal.SIGHUP if sig == signal.SIGHUP else signal.SIGTERM
        stopping = stopping or forward == signal.SIGTERM
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, forward)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if not _await_ready(ready_r, len(children), children):
        on_signal(signal.SIGTERM, None)
        _reap_all(children)
        raise SystemExit(1)
    _banner(settings, sock.getsockname()[1], demo_url)
    _hint()
    while children:
        pid, status = os.wait()
        main = children.pop(pid, None)
        if main is None or stopping:
            continue
        console.print(
            f"[red]worker {pid} exited ({_exit_reason(status)}); starting another[/red]",
            highlight=False,
        )
        time.sleep(RESTART_DELAY_S)
        if not stopping:
            children[_fork(main)] = main


def _await_ready(ready_r: int, expected: int, children: dict[int, Main]) -> bool:
    """Whether every child said it is serving before the startup deadline (none died first)."""
    deadline = time.monotonic() + STARTUP_WAIT_S
    got = 0
    while got < expected:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        readable, _, _ = select.select([ready_r], [], [], min(remaining, 0.2))
        if readable:
            got += len(os.read(ready_r, expected - got))
        pid, _status = os.waitpid(-1, os.WNOHANG)
        if pid:
            children.pop(pid, None)
            return False
    return True


def _reap_all(children: dict[int, Main]) -> None:
    while children:
        pid, _status = os.wait()
        children.pop(pid, None)


def _exit_reason(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"code {os.waitstatus_to_exitcode(status)}"


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port to listen on (default 8400).")
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help="Redis URL (redis://…) for rate limits and key revocations shared by every "
            "gateway process (or CIYUAN_REDIS); unset: in-process limits.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Gateway processes sharing the port (default 1); more than one needs "
            "PostgreSQL, and Redis when rate limits are set.",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            help="PEM certificate (chain) to serve https natively (or CIYUAN_TLS_CERTFILE); "
            "needs --tls-key. Unset: plain http, for a TLS-terminating proxy (docs/tls.md).",
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", help="PEM private key of --tls-cert (or CIYUAN_TLS_KEYFILE)."),
    ] = None,
) -> None:
    """Run the gateway (SQLite and the built-in demo upstream unless configured otherwise)."""
    try:
        settings = cli_context(ctx).settings(
            host=host,
            port=port,
            redis=redis,
            workers=workers,
            tls_certfile=tls_cert,
            tls_keyfile=tls_key,
        )
    except ValueError as error:
        fail(str(error), as_json=False)
    problem = tls_problem(settings) or scale_out_problem(settings)
    if problem is not None:
        fail(problem, as_json=False)
    try:
        if settings.workers > 1:
            run_workers(settings)
        else:
            _run(run_gateway(settings))
    except CiyuanError as error:
        fail(error, as_json=False)
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

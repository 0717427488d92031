"""The processes under test, each started on a free loopback port and always stopped.

The demo upstream and the gateway are ready when they print their "listening" line; a server
that prints nothing useful (LiteLLM) is ready when a health URL answers. A server that dies or
is not ready in time fails the run with the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

STARTUP_S_MAX: Final = 90.0
STOP_S_MAX: Final = 10.0
LOG_TAIL_BYTES: Final = 2000
CIYUAN: Final = Path(sys.executable).with_name("ciyuan")


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path) -> str:
    data = path.read_bytes() if path.exists() else b""
    return data[-LOG_TAIL_BYTES:].decode(errors="replace")


def printed(log_path: Path, line: str) -> Callable[[], bool]:
    return lambda: line in log_path.read_text(errors="replace")


def answers(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return ready


def _wait_ready(server: Server, ready: Callable[[], bool], startup_s_max: float) -> None:
    deadline = time.monotonic() + startup_s_max
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited early:\n{log_tail(server.log_path)}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"{server.name} not ready in {startup_s_max:.0f} s:\n{log_tail(server.log_path)}"
    )


def _stop(server: Server) -> None:
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(STOP_S_MAX)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(STOP_S_MAX)


@contextlib.contextmanager
def running(
    name: str,
    argv: list[str],
    *,
    port: int,
    workdir: Path,
    ready: Callable[[Path], Callable[[], bool]],
    env: Mapping[str, str] | None = None,
    startup_s_max: float = STARTUP_S_MAX,
) -> Iterator[Server]:
    """Start ``argv`` logging to ``workdir/<name>.log``; yield it once ready; stop it after."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_ready(server, ready(log_path), startup_s_max)
        yield server
    finally:
        _stop(server)


def demo_upstream(workdir: Path) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    return running(
        "demo-upstream",
        [str(CIYUAN), "demo-upstream", "--port", str(port)],
        port=port,
        workdir=workdir,
        ready=lambda log: printed(log, "demo upstream listening on"),
    )


def ciyuan_gateway(
    workdir: Path, db_url: str, upstream_url: str
) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    upstreams = f'[{{"name":"demo","kind":"demo","base_url":"{upstream_url}/v1"}}]'
    return running(
        "ciyuan",
        [str(CIYUAN), "serve", "--port", str(port)],
        port=port,
        workdir=workdir,
        ready=lambda log: printed(log, "Ciyuan gateway listening on"),
        env={"CIYUAN_DB": db_url, "CIYUAN_UPSTREAMS": upstreams},
    )

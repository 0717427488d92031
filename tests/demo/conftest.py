"""One demo upstream per test session, served by uvicorn on a free loopback port in a thread.

A real server rather than an ASGI transport: the SDKs, SSE parsing and abrupt connection cuts
are exactly what these tests exist to check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from ciyuan.demo import create_app

STARTUP_S_MAX = 10.0


@pytest.fixture(scope="session")
def demo_url() -> Iterator[str]:
    config = uvicorn.Config(
        create_app(),
        host="127.0.0.1",
        port=0,
        loop="asyncio",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="critical",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_S_MAX
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "demo upstream did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)
    sock.close()

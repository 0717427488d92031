"""``ciyuan demo-upstream`` as its own process: it announces readiness on one stdout line."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

READY_PREFIX = "demo upstream listening on http://"


def test_command_announces_and_serves() -> None:
    ciyuan = Path(sys.executable).with_name("ciyuan")
    process = subprocess.Popen(
        [str(ciyuan), "demo-upstream", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(READY_PREFIX), (line, process.stderr and process.stderr.read())
        url = line.strip().removeprefix("demo upstream listening on ")
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2,
            },
            timeout=10,
        )
        assert reply.json()["usage"]["completion_tokens"] == 2
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()
    # uvicorn re-raises the signal it caught after a graceful shutdown.
    assert process.returncode in (0, -signal.SIGTERM)

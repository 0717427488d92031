"""``ciyuan serve --workers N`` refuses what cannot work across processes, with a clear reason."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import CIYUAN, child_env


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CIYUAN, "serve", "--port", "0", *args],
        check=False,
        env=child_env(**env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_workers_refuse_sqlite(tmp_path: Path) -> None:
    done = _serve(tmp_path, "--workers", "2")
    assert done.returncode != 0
    assert "needs PostgreSQL" in done.stdout + done.stderr


def test_workers_with_rate_limits_need_redis(tmp_path: Path) -> None:
    done = _serve(
        tmp_path,
        "--workers",
        "2",
        CIYUAN_DB="postgresql://nobody@127.0.0.1:1/none",
        CIYUAN_RATE_RPM_DEFAULT="10",
    )
    assert done.returncode != 0
    assert "need --redis" in done.stdout + done.stderr

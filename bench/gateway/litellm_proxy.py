"""LiteLLM's proxy as the comparison point, installed only into the benchmark's own venv.

``litellm[proxy]`` goes into ``bench/.venv-litellm`` (git-ignored), never into the project's
venv or its dependencies. The proxy runs one worker against the same demo upstream, offline:
the local cost map, no telemetry, and a master key (it refuses to start without one, and auth
is part of what a gateway does on every call anyway).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path
from typing import Final

from bench.gateway.servers import Server, answers, free_port, running

VENV: Final = Path(__file__).resolve().parents[1] / ".venv-litellm"
LITELLM: Final = VENV / "bin" / "litellm"
INSTALL_S_MAX: Final = 480.0
MASTER_KEY: Final = "sk-bench-0123456789abcdef0123456789abcdef"
OFFLINE_ENV: Final = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
    "LITELLM_MODE": "PRODUCTION",
    "DISABLE_SCHEMA_UPDATE": "True",
    "NO_DOCS": "True",
}
CONFIG: Final = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {api_base}
      api_key: sk-bench-dummy
litellm_settings:
  telemetry: false
  set_verbose: false
general_settings:
  master_key: {master_key}
"""


def version() -> str | None:
    if not LITELLM.exists():
        return None
    python = VENV / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip() or None


def ensure_installed() -> str | None:
    """None when the proxy is there (installing it if needed), else why it is not."""
    if LITELLM.exists():
        return None
    python3 = shutil.which("python3")
    if python3 is None:
        return "no python3 on PATH to create bench/.venv-litellm"
    print(f"installing litellm[proxy] into {VENV} (at most {INSTALL_S_MAX:.0f} s)...", flush=True)
    try:
        subprocess.run([python3, "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"],
            check=True,
            timeout=INSTALL_S_MAX,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except subprocess.TimeoutExpired:
        return f"installing litellm[proxy] took longer than {INSTALL_S_MAX:.0f} s"
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or b"")[-500:].decode(errors="replace").strip()
        return f"installing litellm[proxy] failed ({error.returncode}): {tail}"
    return (
        None if LITELLM.exists() else "pip finished but bench/.venv-litellm/bin/litellm is missing"
    )


def proxy(workdir: Path, upstream_url: str) -> contextlib.AbstractContextManager[Server]:
    config = workdir / "litellm.yaml"
    config.write_text(CONFIG.format(api_base=f"{upstream_url}/v1", master_key=MASTER_KEY))
    port = free_port()
    argv = [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--num_workers", "1", "--telemetry", "False"]
    return running(
        "litellm",
        argv,
        port=port,
        workdir=workdir,
        ready=lambda _log: answers(f"http://127.0.0.1:{port}/health/liveliness"),
        env=OFFLINE_ENV,
    )

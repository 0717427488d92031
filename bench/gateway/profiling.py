"""Where the gateway's time goes: py-spy attached to the running gateway under load.

py-spy is a tool for whoever runs the benchmark, not a project dependency: ``--profile`` looks
for it beside the venv's python or on PATH. Samples are taken only from threads holding the
GIL (``--gil``), so the shares are shares of the Python CPU time the gateway spent, and
``busy`` (samples / possible samples) says how much of one core that was.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

RATE_HZ: Final = 200
TOP_N: Final = 12
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")

# The deepest frame whose file matches decides the area; the first matching rule wins.
AREAS: Final = (
    ("ledger store (SQLite)", ("ciyuan/store/", "sqlite3/")),
    ("token counting", ("ciyuan/tokens/", "tiktoken", "quicktok", "tokenizers")),
    ("metering, pricing, ledger", ("ciyuan/metering/", "ciyuan/pricing/", "ciyuan/ledger/")),
    ("gateway relay and routing", ("ciyuan/gateway/", "ciyuan/apikeys", "ciyuan/clock")),
    ("upstream client (aiohttp)", ("aiohttp/", "multidict/", "yarl/")),
    ("starlette / anyio", ("starlette/", "anyio/")),
    ("HTTP server (uvicorn)", ("uvicorn/", "httptools/", "h11/")),
    ("executor hand-off (threads)", ("concurrent/futures/", "threading.py", "queue.py")),
    ("asyncio / uvloop", ("asyncio/", "uvloop/", "selectors.py")),
    ("JSON", ("json/", "orjson")),
)


@dataclass(frozen=True, slots=True)
class Share:
    name: str
    samples: int
    percent: float


@dataclass(frozen=True, slots=True)
class Profile:
    label: str
    samples: int
    busy_percent: float
    areas: tuple[Share, ...]
    self_top: tuple[Share, ...]
    inclusive_top: tuple[Share, ...]
    threads: tuple[Share, ...]


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, duration_s: int, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` for ``duration_s``; wait on the returned process for the file."""
    tool = py_spy()
    assert tool is not None, "py-spy not found"
    argv = [tool, "record", "--pid", str(pid), "--duration", str(duration_s)]
    argv += ["--rate", str(RATE_HZ), "--format", "raw", "--threads", "--gil", "--function"]
    argv += ["--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stacks(text: str) -> Iterable[tuple[list[str], int]]:
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            yield match["stack"].split(";"), int(match["count"])


def _file(frame: str) -> str:
    match = _FRAME.match(frame)
    return match["file"] if match else ""


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    return f"{match['function']} ({match['file']})" if match else frame


def area_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        path = _file(frame)
        for name, needles in AREAS:
            if any(needle in path for needle in needles):
                return name
    return f"other ({_file(frames[-1]) or frames[-1]})"


def _shares(counter: Counter[str], total: int, n: int | None = None) -> tuple[Share, ...]:
    return tuple(Share(name, count, 100 * count / total) for name, count in counter.most_common(n))


def summarize(label: str, raw: Path, duration_s: float) -> Profile:
    """Areas, top self and inclusive functions, and the split across threads."""
    areas: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for stack, count in _stacks(raw.read_text(errors="replace")):
        thread, frames = stack[0], stack[1:] or stack
        total += count
        threads[thread.split(": ", 1)[-1]] += count
        areas[area_of(frames)] += count
        self_time[_short(frames[-1])] += count
        for name in {_short(frame) for frame in frames}:
            inclusive[name] += count
    total = max(total, 1)
    ciyuan_inclusive = Counter({k: v for k, v in inclusive.items() if "ciyuan/" in k})
    return Profile(
        label=label,
        samples=total,
        busy_percent=100 * total / (RATE_HZ * duration_s),
        areas=_shares(areas, total),
        self_top=_shares(self_time, total, TOP_N),
        inclusive_top=_shares(ciyuan_inclusive, total, TOP_N),
        threads=_shares(threads, total),
    )


def render(profile: Profile) -> str:
    lines = [
        f"profile: {profile.label}: {profile.samples} samples holding the GIL, "
        f"gateway busy {profile.busy_percent:.0f}% of one core",
        "  threads: " + ", ".join(f"{s.name} {s.percent:.0f}%" for s in profile.threads),
        "  by area (deepest matching frame):",
    ]
    lines += [f"    {s.percent:5.1f}%  {s.name}" for s in profile.areas]
    lines.append("  top functions, self time:")
    lines += [f"    {s.percent:5.1f}%  {s.name}" for s in profile.self_top]
    lines.append("  top Ciyuan functions, inclusive time:")
    lines += [f"    {s.percent:5.1f}%  {s.name}" for s in profile.inclusive_top]
    return "\n".join(lines)

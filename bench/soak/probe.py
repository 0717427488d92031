"""What a process holds right now, read from /proc (Linux): memory, file descriptors, threads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Probe:
    rss_kb: int
    fds: int
    threads: int


def _status_field(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            # "VmRSS:	  123456 kB" or "Threads:	7": the number is the first word after ":".
            return int(line.split(":", 1)[1].split()[0])
    raise ValueError(f"no {name} in /proc status")


def probe(pid: int) -> Probe | None:
    """The process's resident memory, open fds and threads; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return Probe(
            rss_kb=_status_field(status, "VmRSS"),
            fds=fds,
            threads=_status_field(status, "Threads"),
        )
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None

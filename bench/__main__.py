"""``python -m bench``: every benchmark in one command, each in its own process, one after the
other (they must not share the two cores). ``--quick`` shortens each to a smoke run.

Each benchmark prints its own ratios against a baseline measured in the same run; see
bench/README.md for what each one compares. The soak (``python -m bench soak --minutes 10``)
runs only when named: it takes minutes by design and judges leaks, not speed. Options after
a single named benchmark go to it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

FULL: dict[str, list[str]] = {
    "tokens": [],
    "ledger": [],
    "limits": [],
    "gateway": [],
    "scale": [],
    "reports": [],
    "receipts": [],
}
QUICK: dict[str, list[str]] = {
    "tokens": ["--mb", "1", "--requests", "300"],
    "ledger": ["--seconds", "2"],
    "limits": ["--ops", "2000"],
    "gateway": ["--quick"],
    "scale": ["--duration", "3"],
    "reports": ["--events", "100000"],
    "receipts": ["--sizes", "20000", "--samples", "10"],
}
ON_REQUEST: dict[str, list[str]] = {"soak": []}
"""Run only when named: not part of the default run."""
ON_REQUEST_QUICK: dict[str, list[str]] = {"soak": ["--minutes", "1"]}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke runs")
    parser.add_argument(
        "only", nargs="*", help=f"benchmarks to run, of: {', '.join([*FULL, *ON_REQUEST])}"
    )
    args, passed_on = parser.parse_known_args()
    plan = {**QUICK, **ON_REQUEST_QUICK} if args.quick else {**FULL, **ON_REQUEST}
    unknown = [name for name in args.only if name not in plan]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}")
    if passed_on and len(args.only) != 1:
        parser.error(f"options {' '.join(passed_on)} need exactly one benchmark named")
    failed = []
    for name in args.only or list(FULL):
        print(f"\n=== bench.{name} ===", flush=True)
        argv = [sys.executable, "-m", f"bench.{name}", *plan[name], *passed_on]
        done = subprocess.run(argv, check=False)
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

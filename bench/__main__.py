"""``python -m bench``: every benchmark in one command, each in its own process, one after the
other (they must not share the two cores). ``--quick`` shortens each to a smoke run.

Each benchmark prints its own ratios against a baseline measured in the same run; see
bench/README.md for what each one compares.
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
}
QUICK: dict[str, list[str]] = {
    "tokens": ["--mb", "1", "--requests", "300"],
    "ledger": ["--seconds", "2"],
    "limits": ["--ops", "2000"],
    "gateway": ["--quick"],
    "scale": ["--duration", "3"],
    "reports": ["--events", "100000"],
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke runs")
    parser.add_argument("only", nargs="*", help=f"benchmarks to run, of: {', '.join(FULL)}")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    failed = []
    for name in args.only or list(plan):
        print(f"\n=== bench.{name} ===", flush=True)
        done = subprocess.run([sys.executable, "-m", f"bench.{name}", *plan[name]], check=False)
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

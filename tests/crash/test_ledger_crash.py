"""Real processes against one account, on SQLite and PostgreSQL.

Concurrency: four processes race reserve+settle pairs at a balance that covers 30 of them; the
total spent never exceeds the credit and every acknowledged settle is in the ledger.
Crash: a process streaming pairs is SIGKILLed mid-stream; after reopening, the chain verifies,
every balance reconciles, nothing it acknowledged is missing, and its pending hold expires.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ciyuan.clock import US_PER_S, FixedClock, SystemClock
from ciyuan.ledger.transfers import TransferKind
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from ciyuan.store.sql_store import SqlStore
from tests.conftest import child_env
from tests.contract.ledger_helpers import assert_consistent

UNIT = 1_000_000_000
WORKER = [sys.executable, "-m", "tests.crash.ledger_worker"]


def acks(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"reserved": [], "settled": [], "refused": []}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in found:  # a torn last line is no acknowledgement
            found[parts[0]].append(parts[1])
    return found


def funded(db_url: str, units: int) -> tuple[SqlStore, str]:
    store = open_store(db_url)
    assert isinstance(store, SqlStore)
    account = store.create_account("acme")
    store.grant(account.id, Amount(units * UNIT))
    return store, account.id


def test_processes_racing_one_balance_never_overspend(db_url: str, tmp_path: Path) -> None:
    store, account_id = funded(db_url, 30)
    ack_files = [tmp_path / f"acks-{i}.txt" for i in range(4)]
    workers = [
        subprocess.Popen([*WORKER, db_url, account_id, f"w{i}", "12", str(path)], env=child_env())
        for i, path in enumerate(ack_files)
    ]
    assert all(worker.wait(120) == 0 for worker in workers)
    settled = [rid for path in ack_files for rid in acks(path)["settled"]]
    refused = [rid for path in ack_files for rid in acks(path)["refused"]]
    assert len(settled) == 30 and len(refused) == 18
    charged = {
        t.reference
        for t in store.transfers(account_id, limit=1000)
        if t.kind is TransferKind.CHARGE
    }
    assert charged == set(settled)
    balance = store.balance(account_id)
    assert balance.available == Amount.zero() and balance.pending == Amount.zero()
    assert_consistent(store)
    store.close()


def test_a_killed_process_loses_nothing_it_acknowledged(db_url: str, tmp_path: Path) -> None:
    store, account_id = funded(db_url, 1_000_000)
    store.close()
    ack_file = tmp_path / "acks.txt"
    ack_file.touch()
    worker = subprocess.Popen(
        [*WORKER, db_url, account_id, "k", "100000", str(ack_file)], env=child_env()
    )
    deadline = time.monotonic() + 60
    while len(acks(ack_file)["settled"]) < 40 and time.monotonic() < deadline:
        assert worker.poll() is None, "the worker ended before it was killed"
        time.sleep(0.02)
    worker.kill()  # SIGKILL: no cleanup, no rollback, mid-stream
    worker.wait()
    done = acks(ack_file)
    assert len(done["settled"]) >= 40

    later = FixedClock(SystemClock().now_us() + 3600 * US_PER_S)
    reopened = open_store(db_url, clock=later)
    assert isinstance(reopened, SqlStore)
    assert_consistent(reopened)
    charged = {
        t.reference
        for t in reopened.transfers(account_id, limit=100_000)
        if t.kind is TransferKind.CHARGE
    }
    assert set(done["settled"]) <= charged
    for request_id in done["settled"]:
        assert reopened.usage_event(request_id) is not None
    # A hold the killed process took and never settled is released by the sweeper.
    reopened.expire_reservations()
    assert reopened.balance(account_id).pending == Amount.zero()
    assert reopened.balance(account_id).posted == Amount((1_000_000 - len(charged)) * UNIT)
    assert_consistent(reopened)
    reopened.close()

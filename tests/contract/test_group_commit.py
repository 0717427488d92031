"""SQLite group commit: writes share a COMMIT, and none is acknowledged before it.

Run on a real SQLite file, watched through a second connection as another process would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ciyuan.clock import FixedClock
from ciyuan.errors import Conflict, InsufficientCredit, Unavailable
from ciyuan.gateway.group_commit import CommitBatcher
from ciyuan.pricing.money import Amount
from ciyuan.store.sqlite import (
    WAL_AUTOCHECKPOINT_PAGES,
    WAL_REWIND_PAGES,
    SqliteStore,
    WalCheckpointer,
    path_from_url,
)
from tests.contract.ledger_helpers import NextCommitFails, assert_consistent, event, raw

USD = Amount.parse


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ciyuan.db'}"


@pytest.fixture
def store(url: str) -> Iterator[SqliteStore]:
    opened = SqliteStore(url, FixedClock())
    yield opened
    opened.close()


def _transfers(url: str) -> int:
    return int(raw(url, "SELECT COUNT(*) FROM transfers")[0][0])


def test_a_deferred_write_is_invisible_until_its_batch_commits(
    store: SqliteStore, url: str
) -> None:
    account = store.create_account("deferred")
    before = _transfers(url)
    outcomes: list[BaseException | None] = []
    with store.deferred_commit():
        store.grant(account.id, USD("5"))
    assert store.when_committed(outcomes.append)
    assert _transfers(url) == before, "another connection saw an uncommitted write"
    assert outcomes == []
    store.commit_batch()
    assert outcomes == [None]
    assert _transfers(url) == before + 1
    assert not store.when_committed(outcomes.append), "nothing is left to wait for"


def test_a_failed_write_rolls_back_alone(store: SqliteStore, url: str) -> None:
    account = store.create_account("partial")
    with store.deferred_commit():
        store.grant(account.id, USD("1"), idempotency_key="k")
        with pytest.raises(Conflict):
            store.grant(account.id, USD("2"), idempotency_key="k")  # same key, other body
        store.grant(account.id, USD("3"))
    store.commit_batch()
    assert store.get_account(account.id).balance.available == USD("4")
    assert_consistent(store)


def test_writes_of_one_event_loop_turn_share_one_commit(store: SqliteStore, url: str) -> None:
    accounts = [store.create_account(f"loop-{i}") for i in range(20)]
    for account in accounts:
        store.grant(account.id, USD("1"))
    batcher = CommitBatcher(store)
    commits_before = store.commits

    async def spend(index: int) -> Amount:
        account_id = accounts[index].id
        hold = await batcher.call(
            store.reserve, account_id, USD("0.5"), request_id=f"r{index}", timeout_s=60
        )
        settlement = await batcher.call(
            store.settle, hold, USD("0.25"), event(account_id, f"r{index}")
        )
        # Acknowledged: durable, so a separate connection sees it.
        seen = raw(url, "SELECT COUNT(*) FROM transfers WHERE reference = ?", (f"r{index}",))
        assert seen[0][0] == 1
        return settlement.available_after

    async def main() -> list[Amount]:
        return await asyncio.gather(*(spend(i) for i in range(len(accounts))))

    balances = asyncio.run(main())
    assert balances == [USD("0.75")] * len(accounts)
    # A reserve and a settle each for 20 requests, made in the same turns: two commits.
    assert store.commits - commits_before == 2
    assert_consistent(store)


def test_threads_share_commits_and_every_acknowledged_write_is_durable(
    store: SqliteStore, url: str
) -> None:
    accounts = [store.create_account(f"thread-{i}") for i in range(16)]
    for account in accounts:
        store.grant(account.id, USD("100"))
    writes_before, commits_before = store.writes_committed, store.commits
    acknowledged: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        account_id = accounts[index].id
        for n in range(40):
            request_id = f"t{index}-{n}"
            hold = store.reserve(account_id, USD("0.01"), request_id=request_id, timeout_s=60)
            store.settle(hold, USD("0.005"), event(account_id, request_id))
            with lock:
                acknowledged.append(request_id)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(accounts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writes = store.writes_committed - writes_before
    assert writes == 16 * 40 * 2
    # Sixteen threads contend for the one connection: some writes must have shared a commit.
    assert store.commits - commits_before < writes
    stored = {row[0] for row in raw(url, "SELECT reference FROM transfers WHERE kind = 'charge'")}
    assert set(acknowledged) <= stored
    assert_consistent(store)


def test_a_failed_first_write_ends_its_batch_and_the_next_one_commits(store: SqliteStore) -> None:
    account = store.create_account("first-fails")
    store.grant(account.id, USD("1"), idempotency_key="k")
    with store.deferred_commit():
        with pytest.raises(Conflict):
            store.grant(account.id, USD("2"), idempotency_key="k")  # the batch's first write
        store.grant(account.id, USD("3"))
    store.commit_batch()
    assert store.get_account(account.id).balance.available == USD("4")
    assert_consistent(store)


def test_an_unconfirmed_hold_guards_the_balance_at_once_and_commits_at_the_turn_end(
    store: SqliteStore, url: str
) -> None:
    account = store.create_account("unconfirmed")
    store.grant(account.id, USD("1"))
    batcher = CommitBatcher(store)
    seen: dict[str, object] = {}

    async def main() -> None:
        hold, committed = batcher.call_unconfirmed(
            store.reserve, account.id, USD("0.75"), request_id="u1", timeout_s=60
        )
        assert committed is not None and not committed.done()
        # Not durable yet: another connection (another process) does not see it ...
        seen["before"] = raw(url, "SELECT COUNT(*) FROM reservations WHERE request_id = 'u1'")
        # ... but the one writer does: a second hold cannot spend the same credit.
        with pytest.raises(InsufficientCredit):
            batcher.call_unconfirmed(
                store.reserve, account.id, USD("0.5"), request_id="u2", timeout_s=60
            )
        await committed
        seen["after"] = raw(url, "SELECT COUNT(*) FROM reservations WHERE request_id = 'u1'")
        await batcher.call(store.settle, hold, USD("0.25"), event(account.id, "u1"))

    asyncio.run(main())
    assert seen == {"before": [(0,)], "after": [(1,)]}
    assert store.get_account(account.id).balance.available == USD("0.75")
    assert_consistent(store)


def test_an_unconfirmed_hold_whose_commit_fails_reports_it_and_holds_nothing(
    store: SqliteStore, url: str
) -> None:
    account = store.create_account("lost-hold")
    store.grant(account.id, USD("1"))
    batcher = CommitBatcher(store)
    real = store._conn
    store._conn = NextCommitFails(real, armed=True)  # type: ignore[assignment]

    async def main() -> None:
        _, committed = batcher.call_unconfirmed(
            store.reserve, account.id, USD("0.75"), request_id="lost", timeout_s=60
        )
        assert committed is not None
        with pytest.raises(Unavailable):
            await committed

    try:
        asyncio.run(main())
    finally:
        store._conn = real
    assert raw(url, "SELECT COUNT(*) FROM reservations WHERE request_id = 'lost'") == [(0,)]
    assert store.get_account(account.id).balance.available == USD("1")
    assert_consistent(store)


def test_the_background_checkpointer_copies_the_wal_into_the_database_file(
    store: SqliteStore, url: str
) -> None:
    database = path_from_url(url)
    checkpointer = WalCheckpointer(store, interval_s=0.02)
    checkpointer.start()
    try:
        assert raw_pragma(store, "wal_autocheckpoint") == WAL_REWIND_PAGES
        size_before = database.stat().st_size
        account = store.create_account("checkpointed")
        for n in range(200):
            store.grant(account.id, USD("0.01"), idempotency_key=f"g{n}")
        deadline = time.monotonic() + 10
        while database.stat().st_size == size_before and time.monotonic() < deadline:
            time.sleep(0.02)
        # Only a checkpoint writes pages into the database file, and the writer's own waits
        # for thousands of pages more than these grants wrote.
        assert database.stat().st_size > size_before
        assert checkpointer.checkpoints > 0
    finally:
        checkpointer.stop()
    assert raw_pragma(store, "wal_autocheckpoint") == WAL_AUTOCHECKPOINT_PAGES


def test_under_steady_writes_the_wal_is_rewound_and_stays_bounded(
    store: SqliteStore, url: str
) -> None:
    wal = path_from_url(url).with_name(path_from_url(url).name + "-wal")
    # A background copy that runs all the time, beside a writer that never pauses: alone, it
    # never completes a checkpoint and the WAL grows with every write. The writer's own
    # checkpoint every 64 pages completes and lets the WAL start over.
    checkpointer = WalCheckpointer(store, interval_s=0.001, rewind_pages=64)
    checkpointer.start()
    try:
        account = store.create_account("steady")
        for n in range(600):
            store.grant(account.id, USD("0.01"), idempotency_key=f"s{n}")
        pages = wal.stat().st_size // 4096
    finally:
        checkpointer.stop()
    written = 600 * 8  # a grant dirties at least 8 pages (transfer, indexes, lot, balances)
    assert pages < written / 4, f"the WAL holds {pages} pages after ~{written} page writes"


def raw_pragma(store: SqliteStore, name: str) -> int:
    with store.read_transaction() as tx:
        row = tx.one(f"PRAGMA {name}")
    assert row is not None
    return int(row[0])

"""The SQLite adapter: the embedded default, one file in WAL mode, one writer, group commit.

Writers share one connection behind a lock (SQLite has one writer anyway), and every write
transaction starts with ``BEGIN IMMEDIATE`` so it never fails half-way on a lock upgrade; other
processes (the CLI beside a running gateway) wait up to ``busy_timeout``.

Group commit: each write runs in a SAVEPOINT of a shared batch transaction, and the batch
commits once for every write in it. An operation is acknowledged (its call returns) only after
the COMMIT that made it durable, so batching never weakens durability; it only shares the cost
of a commit (an fsync at ``durability=power``) among the writes that arrived together. Batches
form two ways:

- threads: a writer that sees others queued for the connection leaves the commit to the last of
  them and waits; the last one commits and wakes everyone in the batch;
- the gateway's event loop (``deferred_commit``): writes made inline leave the batch open, and
  the loop commits it once per turn (``commit_batch``), resolving the waiting requests.

A failed write rolls back its own savepoint only; a failed COMMIT fails every write of the
batch, none of which was acknowledged. Durability is a setting: ``process``
(``synchronous=NORMAL``: a commit survives the process being killed at any instant, not a power
cut) or ``power`` (``synchronous=FULL``: an fsync per commit batch).

Savepoint journals stay in memory (``temp_store=MEMORY``): on disk, every write after a batch's
first cost a temporary file's I/O. At ``process`` durability the gateway copies the WAL back
into the database file from a thread of its own (:class:`WalCheckpointer`): SQLite's automatic
checkpoint runs inside whichever COMMIT crosses its threshold, with two fsyncs, and that
stalled the event loop for about 0.2 ms per request on average; the writer keeps only a rare
one, to rewind the WAL.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from ciyuan.clock import Clock
from ciyuan.errors import Conflict, Unavailable
from ciyuan.store.migrations import migrations_for
from ciyuan.store.sql_base import Row, Tx
from ciyuan.store.sql_store import SqlStore

BUSY_TIMEOUT_MS: Final = 5000
BATCH_WRITES_MAX: Final = 256
"""A batch commits after this many writes even if more are queued: bounded latency."""
_SYNCHRONOUS: Final = {"process": "NORMAL", "power": "FULL"}
WAL_AUTOCHECKPOINT_PAGES: Final = 1000
"""SQLite's own default threshold, restored when a background checkpointer stops."""
WAL_CHECKPOINT_INTERVAL_S: Final = 0.1
WAL_REWIND_PAGES: Final = 8192
"""With a background checkpointer, the writer's own (completing) checkpoint runs this rarely:
the WAL stays under about 32 MiB with 4 KiB pages."""

log = logging.getLogger("ciyuan.store")

CommitCallback = Callable[[BaseException | None], None]


class _SqliteTx(Tx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def lock_accounts(self, account_ids: Sequence[str]) -> None:
        """BEGIN IMMEDIATE already holds the database's one write lock."""

    def lock_head(self) -> tuple[int, str]:
        row = self._conn.execute("SELECT seq, hash FROM ledger_head WHERE id = 1").fetchone()
        assert row is not None
        return int(row[0]), str(row[1])


def path_from_url(url: str) -> Path:
    assert url.startswith("sqlite:///"), url
    return Path(url.removeprefix("sqlite:///"))


class SqliteStore(SqlStore):
    def __init__(self, url: str, clock: Clock, *, durability: str = "process") -> None:
        super().__init__(url, clock)
        if durability not in _SYNCHRONOUS:
            raise ValueError(
                f"durability must be one of {sorted(_SYNCHRONOUS)}, not {durability!r}"
            )
        path = path_from_url(url)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._committed = threading.Condition(self._lock)
        self._queued = 0
        """Threads waiting for the connection: a writer that sees any leaves them the commit."""
        self._queue_lock = threading.Lock()
        self._batch = _Batch()
        self._deferring = threading.local()
        self.commits = 0
        self.writes_committed = 0
        """How well batching works: writes per commit is ``writes_committed / commits``."""
        self._conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[durability]}")
        self._conn.execute("PRAGMA temp_store = MEMORY")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self.path = path
        self.durability = durability
        self._migrate()
        self._after_migrations()

    def _migrate(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS ciyuan_migrations "
                    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
                )
                done = {
                    row[0] for row in self._conn.execute("SELECT version FROM ciyuan_migrations")
                }
                for migration in migrations_for("sqlite"):
                    if migration.version in done:
                        continue
                    for statement in _statements(migration.sql):
                        self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO ciyuan_migrations (version, name) VALUES (?, ?)",
                        (migration.version, migration.name),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _connection(self) -> Iterator[None]:
        """The connection's lock, counting this thread as queued until it holds it."""
        with self._queue_lock:
            self._queued += 1
        try:
            self._lock.acquire()
        finally:
            with self._queue_lock:
                self._queued -= 1
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._connection():
            batch = self._open_batch()
            # The first write of a batch needs no savepoint: undoing it undoes the batch.
            alone = not batch.writes
            if not alone:
                self._conn.execute("SAVEPOINT write")
            try:
                yield _SqliteTx(self._conn)
            except BaseException as error:
                self._undo_write(batch, error, alone=alone)
                self._end_turn(batch, wait=False)
                if isinstance(error, sqlite3.IntegrityError):
                    raise Conflict(f"the write conflicts with stored data: {error}") from error
                raise
            if not alone:
                self._conn.execute("RELEASE write")
            batch.writes += 1
            self._end_turn(batch, wait=True)
            if batch.error is not None:
                raise Unavailable(f"the SQLite commit failed: {batch.error}") from batch.error

    def _end_turn(self, batch: _Batch, *, wait: bool) -> None:
        """Commit the batch, or leave it to a writer still to come (and, with ``wait``,
        block until that writer's COMMIT: nothing is acknowledged before it is durable)."""
        if batch.done:
            return
        if getattr(self._deferring, "on", False):
            if not batch.writes:
                self._commit_locked()  # nothing to keep: end the empty batch now
            return  # the event loop commits the batch at the end of its turn
        if batch.writes and batch.writes < BATCH_WRITES_MAX and self._queued_writers():
            if wait:
                while not batch.done:
                    self._committed.wait()
            return
        self._commit_locked()

    def _queued_writers(self) -> bool:
        with self._queue_lock:
            return self._queued > 0

    def _open_batch(self) -> _Batch:
        if not self._conn.in_transaction:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise Unavailable(f"the SQLite database is busy or unreadable: {exc}") from exc
            self._batch = _Batch()
        return self._batch

    def _undo_write(self, batch: _Batch, error: BaseException, *, alone: bool) -> None:
        """Roll back one failed write; if SQLite rolled back the whole batch, fail the batch."""
        if alone:
            # The batch held only this write: end it, nothing committed and nobody waiting.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._finish_batch(batch, None)
        elif self._conn.in_transaction:
            self._conn.execute("ROLLBACK TO write")
            self._conn.execute("RELEASE write")
        else:
            self._finish_batch(batch, error)

    def _commit_locked(self) -> None:
        """COMMIT the open batch (the caller holds the lock) and wake everyone waiting on it."""
        batch = self._batch
        if batch.done:
            return
        if self._conn.in_transaction:
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                self._finish_batch(batch, exc)
                return
            self.commits += 1
            self.writes_committed += batch.writes
        self._finish_batch(batch, None)

    def _finish_batch(self, batch: _Batch, error: BaseException | None) -> None:
        batch.done, batch.error = True, error
        self._committed.notify_all()
        callbacks, batch.callbacks = batch.callbacks, []
        for callback in callbacks:
            callback(error)

    @contextmanager
    def deferred_commit(self) -> Iterator[None]:
        """Writes made by this thread inside the block leave their batch open for
        ``commit_batch``; the caller must not acknowledge them before ``when_committed`` fires."""
        self._deferring.on = True
        try:
            yield
        finally:
            self._deferring.on = False

    def when_committed(self, callback: CommitCallback) -> bool:
        """Call ``callback(error)`` once the batch open now commits (or fails).

        Returns False, without calling it, when no write is waiting for a commit.
        """
        with self._lock:
            batch = self._batch
            if batch.done or not batch.writes:
                return False
            batch.callbacks.append(callback)
            return True

    def commit_batch(self) -> None:
        """Commit the open batch, if any (the gateway calls this once per event-loop turn)."""
        with self._connection():
            self._commit_locked()

    @contextmanager
    def read_transaction(self) -> Iterator[Tx]:
        """A deferred transaction: one WAL snapshot, and other processes may write meanwhile.

        An open batch commits first: a read shows only what is durable."""
        with self._connection():
            self._commit_locked()
            self._conn.execute("BEGIN")
            try:
                yield _SqliteTx(self._conn)
            finally:
                self._conn.execute("COMMIT")

    def set_wal_autocheckpoint(self, pages: int) -> None:
        """SQLite's automatic checkpoint threshold on the writer's connection (0: off)."""
        with self._lock:
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")

    def close(self) -> None:
        with self._lock:
            self._commit_locked()
            self._conn.close()


class WalCheckpointer:
    """Checkpoints the store's WAL from its own thread and connection, off the writer's path.

    This thread runs a PASSIVE checkpoint every ``interval_s``: it copies what it can without
    waiting for the writer or any reader. That alone cannot bound the WAL: under steady load
    the writer appends while the copy runs, the checkpoint never completes, and only a complete
    one lets the next transaction start the WAL over (a soak grew it, and the memory mapping of
    its index, by ~150 bytes a request). So the writer keeps a checkpoint of its own, at
    ``rewind_pages`` instead of SQLite's 1000: run right after one of its COMMITs, with nothing
    appending, it completes, and as the background copy has done nearly all of it by then,
    it costs the event loop one short checkpoint per ``rewind_pages`` frames instead of a long
    one per 1000. ``stop`` hands the job back to SQLite's default."""

    def __init__(
        self,
        store: SqliteStore,
        interval_s: float = WAL_CHECKPOINT_INTERVAL_S,
        rewind_pages: int = WAL_REWIND_PAGES,
    ) -> None:
        self._store = store
        self._interval_s = interval_s
        self._rewind_pages = rewind_pages
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._store.set_wal_autocheckpoint(self._rewind_pages)
        self._thread = threading.Thread(target=self._run, name="ciyuan-wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        self._store.set_wal_autocheckpoint(WAL_AUTOCHECKPOINT_PAGES)

    def _run(self) -> None:
        conn = sqlite3.connect(
            str(self._store.path), isolation_level=None, check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )  # fmt: skip
        try:
            conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self._store.durability]}")
            while not self._stop.wait(self._interval_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # busy or I/O: the next round tries again
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            conn.close()


class _Batch:
    """One commit's worth of writes and the callers waiting for it."""

    __slots__ = ("callbacks", "done", "error", "writes")

    def __init__(self) -> None:
        self.writes = 0
        self.done = False
        self.error: BaseException | None = None
        self.callbacks: list[CommitCallback] = []


def _statements(script: str) -> list[str]:
    """Split a migration into statements (our migrations hold no ';' inside literals)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]

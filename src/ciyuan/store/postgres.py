"""The PostgreSQL adapter: many gateway processes sharing one database.

Transactions run at READ COMMITTED: every balance change is a single conditional ``UPDATE``
(PostgreSQL re-checks its ``WHERE`` against the newest row version after waiting for a
concurrent writer), and rows a transaction touches are locked with ``SELECT … FOR UPDATE`` in
account-id order first, so concurrent gateways can neither overdraw nor deadlock. Migrations run
under an advisory lock so several processes starting at once apply each migration exactly once.

Transactions run in libpq's pipeline mode: a statement whose rows nobody reads (an ``INSERT``,
``UPDATE`` or ``DELETE`` without ``RETURNING``, a lock) is sent without waiting for its answer,
and the next statement that returns rows, or the COMMIT, collects every answer at once. A settle
that runs eighteen statements then waits on about seven round trips instead of nineteen, and the
shared rows it locks (revenue, the chain head) are held for fewer of them. A failure of a
statement sent ahead surfaces at that next wait, still inside the transaction, which it aborts.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from ciyuan.clock import Clock
from ciyuan.errors import Conflict, Unavailable
from ciyuan.store.migrations import migrations_for
from ciyuan.store.sql_base import Row, Tx
from ciyuan.store.sql_store import SqlStore

MIGRATION_LOCK_ID: Final = 0x63697975616E  # "ciyuan"
_SILENT_VERBS: Final = ("INSERT", "UPDATE", "DELETE", "SET")
CONNECT_TIMEOUT_S: Final = 5.0
POOL_SIZE_MAX: Final = 16


class _PostgresTx(Tx):
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._conn.execute(_dialect(sql), tuple(params), prepare=True)
        if _answers_nothing(sql):
            return []  # sent ahead: the pipeline's next wait collects its outcome
        return cursor.fetchall()

    def lock_accounts(self, account_ids: Sequence[str]) -> None:
        ordered = sorted(set(account_ids))
        # Sent ahead: the locks are taken, in order, before any later statement runs.
        self._conn.execute(
            "SELECT id FROM accounts WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (ordered,),
            prepare=True,
        )

    def lock_head(self) -> tuple[int, str]:
        # Taken after the account locks (see Tx.lock_accounts): the one global lock order.
        row = self._conn.execute(
            "SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE", prepare=True
        ).fetchone()
        assert row is not None
        return int(row[0]), str(row[1])


@functools.lru_cache(maxsize=1024)
def _dialect(sql: str) -> str:
    return sql.replace("?", "%s")


@functools.lru_cache(maxsize=1024)
def _answers_nothing(sql: str) -> bool:
    """A write or setting whose result nobody reads (SQLite returns no rows for it either)."""
    return sql.lstrip().upper().startswith(_SILENT_VERBS) and "RETURNING" not in sql.upper()


class PostgresStore(SqlStore):
    def __init__(self, url: str, clock: Clock, *, pool_size_max: int = POOL_SIZE_MAX) -> None:
        super().__init__(url, clock)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size_max,
            kwargs={"autocommit": False, "connect_timeout": int(CONNECT_TIMEOUT_S)},
            timeout=CONNECT_TIMEOUT_S,
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise Unavailable(f"cannot reach PostgreSQL: {exc}") from exc
        except Exception as exc:  # psycopg_pool raises PoolTimeout, not a psycopg.Error
            self._pool.close()
            raise Unavailable(f"cannot reach PostgreSQL within {CONNECT_TIMEOUT_S:.0f} s") from exc
        self._migrate()

    def _migrate(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS ciyuan_migrations "
                "(version BIGINT PRIMARY KEY, name TEXT NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM ciyuan_migrations")}
            for migration in migrations_for("postgres"):
                if migration.version in done:
                    continue
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO ciyuan_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
        self._after_migrations()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        try:
            with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
                yield _PostgresTx(conn)
        except psycopg.errors.IntegrityError as exc:
            raise Conflict(
                f"the write conflicts with stored data: {exc.diag.message_primary}"
            ) from exc
        except psycopg.OperationalError as exc:
            raise Unavailable(f"PostgreSQL is unavailable: {exc}") from exc

    @contextmanager
    def read_transaction(self) -> Iterator[Tx]:
        """One snapshot for every statement (reconcile and verify read several tables)."""
        with self.transaction() as tx:
            tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield tx

    def close(self) -> None:
        self._pool.close()

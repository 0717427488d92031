"""Persistence behind the metering ports: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from ciyuan.clock import Clock, SystemClock
from ciyuan.metering.ports import Store


def open_store(url: str, *, clock: Clock | None = None, durability: str = "process") -> Store:
    """The store for a database URL: ``sqlite:///path`` or ``postgresql://…``."""
    clock = clock or SystemClock()
    if url.startswith("sqlite:///"):
        from ciyuan.store.sqlite import SqliteStore

        return SqliteStore(url, clock, durability=durability)
    if url.startswith(("postgresql://", "postgres://")):
        from ciyuan.store.postgres import PostgresStore

        return PostgresStore(url, clock)
    raise ValueError(
        f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite:/// or postgresql://"
    )

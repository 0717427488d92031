"""The gateway checkpoints SQLite's WAL from its own thread only at ``durability=process``.

At ``power`` every COMMIT fsyncs anyway and a WAL the background copy cannot rewind made those
fsyncs dearer, so SQLite's own checkpoint stays in charge there. Checked on the real app's
store connection while the app is serving (its lifespan started), and after it stops.
"""

from __future__ import annotations

import anyio
import pytest

from ciyuan.bootstrap import build_app
from ciyuan.settings import Settings
from ciyuan.store.sqlite import WAL_AUTOCHECKPOINT_PAGES, WAL_REWIND_PAGES, SqliteStore


def _autocheckpoint(store: SqliteStore) -> int:
    with store.read_transaction() as tx:
        row = tx.one("PRAGMA wal_autocheckpoint")
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("durability", "serving"),
    [("process", WAL_REWIND_PAGES), ("power", WAL_AUTOCHECKPOINT_PAGES)],
)
def test_the_writer_checkpoints_rarely_only_at_process_durability(
    sqlite_url: str, demo_url: str, durability: str, serving: int
) -> None:
    app = build_app(Settings(db=sqlite_url, durability=durability), demo_url=f"{demo_url}/v1")
    store = app.state.runtime.metering.store
    assert isinstance(store, SqliteStore)
    seen: list[int] = []

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            seen.append(_autocheckpoint(store))

    try:
        anyio.run(serve)
    finally:
        app.state.runtime.store_executor.shutdown()
    assert seen == [serving]
    assert _autocheckpoint(store) == WAL_AUTOCHECKPOINT_PAGES  # handed back on shutdown

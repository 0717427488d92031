"""Group commit for store calls made inline on the event loop (SQLite).

An inline call writes inside the store's open batch and does not commit; its request then
waits for the batch's COMMIT, which the loop runs once per turn, after every request that
became ready in that turn has written. Requests finishing together share one commit (one fsync
at ``durability=power``), and none is answered before its write is durable.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

from ciyuan.errors import Unavailable

T = TypeVar("T")


class BatchingStore(Protocol):
    def deferred_commit(self) -> AbstractContextManager[None]: ...

    def when_committed(self, callback: Callable[[BaseException | None], None]) -> bool: ...

    def commit_batch(self) -> None: ...


class CommitBatcher:
    def __init__(self, store: BatchingStore) -> None:
        self._store = store
        self._scheduled = False

    async def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """``fn(*args, **kwargs)`` now, answered once what it wrote has committed."""
        with self._store.deferred_commit():
            result = fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        committed: asyncio.Future[None] = loop.create_future()

        def on_commit(error: BaseException | None) -> None:
            # Another thread (the sweeper's) may commit the batch first.
            if threading.get_ident() == loop_thread:
                _resolve(committed, error)
            else:
                loop.call_soon_threadsafe(_resolve, committed, error)

        if self._store.when_committed(on_commit):
            if not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._commit)
            await committed
        return result

    def _commit(self) -> None:
        self._scheduled = False
        self._store.commit_batch()


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        failure = Unavailable(f"the ledger write could not be committed: {error}")
        failure.__cause__ = error
        future.set_exception(failure)

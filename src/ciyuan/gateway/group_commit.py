"""Group commit for store calls made inline on the event loop (SQLite).

An inline call writes inside the store's open batch and does not commit; its request then
waits for the batch's COMMIT, which the loop runs once per turn, after every request that
became ready in that turn has written. Requests finishing together share one commit (one fsync
at ``durability=power``), and none is answered before its write is durable.

A write that nothing outside the process acts on may go on before its commit
(:meth:`CommitBatcher.call_unconfirmed`): a credit hold, which the gateway forwards behind while
the COMMIT runs, overlapping the upstream's work. The hold is already visible to every later
write on the one connection, so it guards the balance at once, and its request's settle, which
is awaited, commits with it or after it.
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
        result, committed = self.call_unconfirmed(fn, *args, **kwargs)
        if committed is not None:
            await committed
        return result

    def call_unconfirmed(
        self, fn: Callable[..., T], *args: object, **kwargs: object
    ) -> tuple[T, asyncio.Future[None] | None]:
        """``fn(*args, **kwargs)`` now, and a future that resolves once what it wrote has
        committed (raising ``Unavailable`` if the COMMIT failed), or None when it wrote nothing
        that waits for one. The caller must not acknowledge the write before the future does.

        The batch commits at the end of this loop turn, as for ``call``."""
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

        if not self._store.when_committed(on_commit):
            return result, None
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._commit)
        return result, committed

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

"""Ids sort in the order they were made, even within one millisecond or under a fixed clock,
and never repeat."""

from __future__ import annotations

import threading

from ciyuan.clock import FixedClock, new_id


def test_ids_under_a_fixed_clock_sort_in_creation_order() -> None:
    clock = FixedClock()
    ids = [new_id("key", clock) for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_made_by_threads_never_repeat() -> None:
    made: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [new_id("req") for _ in range(500)]
        with lock:
            made.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 2000


def test_later_time_gives_a_later_id() -> None:
    clock = FixedClock()
    first = new_id("req", clock)
    clock.advance(1)
    assert new_id("req", clock) > first

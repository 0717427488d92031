"""The whole gateway SIGKILLed under concurrent streaming load, round after round, on one database.

Each round starts ``ciyuan serve`` on the same database (SQLite file or PostgreSQL schema) in front
of the demo upstream, runs client threads through the official SDKs (streaming and plain chat
completions and Anthropic messages, the streams dripping so that a kill lands inside them), and
kills the gateway at a random instant while streams are in flight. Holds expire after two seconds
(``CIYUAN_RESERVATION_TIMEOUT_S``) and the sweeper runs every quarter second, so a killed
process's holds must be gone early in the next round.

Design invariant 5: killing the gateway at any instant leaves no reservation stuck forever, no
charge applied twice, and every response that reached a client charged. After every round:

- the hash chain verifies and every balance reconciles (the store calls behind ``ciyuan ledger
  verify`` and ``reconcile``; the commands themselves, with ``--json``, run once at the end: a CLI
  start costs a second of CPU, and the machine is shared);
- every response a client was shown its charge for (a 200 with ``x-ciyuan-cost``, or a stream's
  ``ciyuan`` figures, usually followed by ``[DONE]``/``message_stop``) is charged exactly once:
  its request's transfers sum to the figure shown, it has exactly one usage event of that cost;
  a stream that asked for no usage and reached ``[DONE]`` is charged too;
- no request has transfers but a hold not settled, or is charged other than its settlement says;
- usage events are one per request id, and each account's spend (its events) equals the charges
  in the ledger and its posted debits;
- the posted balance never went below the floor, at any transfer, and the available is not now;
- a spend cap (budget) holds exactly the pending holds and has spent exactly the charges;
- the holds pending when a gateway was killed are released by the next gateway's sweeper (and,
  after the last round, none is left at all).

Two customers: one rich, and one kept near its (negative) floor by small top-ups each round, so
that refusals, overage and the floor are exercised under the crashes as well.

A partial stream the kill cut off (output reached the client, its charge did not) is billed by
the next gateway's sweeper for the stream's last progress mark (every 0.2 s here,
``CIYUAN_STREAM_PROGRESS_INTERVAL_S``), or, if it was cut before its first mark, its hold
expires. The test requires each killed hold to end one of those two ways, a billed one only for
a stream whose client saw output, and none to be charged twice.

The last test pins one window the random kills rarely hit: an Anthropic stream settled by
counting (no usage reported) sends ``message_stop`` before its settle commits.
"""

from __future__ import annotations

import functools
import json
import os
import random
import secrets
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

from ciyuan import apikeys
from ciyuan.metering.ports import Store
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from ciyuan.store.sql_store import SqlStore
from tests.conftest import CIYUAN, Process, child_env
from tests.contract.ledger_helpers import assert_consistent, raw
from tests.crash.stream_load import KINDS, WIRE_ERRORS, Load, Result
from tests.e2e.conftest import start_gateway

ROUNDS: Final = 5
CLIENTS: Final = 5
HOLD_TIMEOUT_S: Final = 2.0
SWEEP_S: Final = 0.25
PROGRESS_S: Final = 0.2
SETTINGS: Final = {
    "CIYUAN_RESERVATION_TIMEOUT_S": str(HOLD_TIMEOUT_S),
    "CIYUAN_SWEEP_INTERVAL_S": str(SWEEP_S),
    "CIYUAN_STREAM_PROGRESS_INTERVAL_S": str(PROGRESS_S),
}
WAIT_S: Final = HOLD_TIMEOUT_S + SWEEP_S + 60
"""Deadline for a condition the gateway must reach; generous for a loaded machine, as it is only
reached early when the behaviour is right."""
RICH_CREDIT: Final = Amount.parse("5")
TIGHT_CREDIT: Final = Amount.parse("0.0002")
TIGHT_TOP_UP: Final = Amount.parse("0.00005")
"""Less than its two workers spend in a round: the tight customer soon hovers at its floor and is
often refused (a refusal first releases the account's overdue holds: the killed gateway's)."""
TIGHT_FLOOR: Final = Amount.parse("-0.0003")
CHARGE_KINDS: Final = ("charge", "overage")


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def customer(
    store: Store, name: str, credit: Amount, floor: Amount | None = None
) -> tuple[str, str]:
    account = store.create_account(name)
    if floor is not None:
        store.set_floor(account.id, floor)
    store.grant(account.id, credit)
    new = apikeys.generate()
    store.create_api_key(account.id, new.prefix, new.hash_hex, "crash")
    return account.id, new.secret.reveal()


class LedgerCli:
    """``ciyuan ledger verify`` and ``reconcile`` with ``--json``, run side by side."""

    def __init__(self, db_url: str) -> None:
        env = child_env(CIYUAN_DB=db_url)
        self._runs = {
            command: subprocess.Popen(
                [*CIYUAN, "ledger", command, "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for command in ("verify", "reconcile")
        }

    def assert_ok(self, when: str) -> None:
        for command, run in self._runs.items():
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, f"ledger {command} failed {when}: {out!r} {err!r}"
            report = json.loads(out)
            assert report["ok"] is True, f"ledger {command} {when}: {report}"
            assert not report.get("problem") and not report.get("differences"), report


@dataclass
class Audit:
    """What the database says about the customers' money, checked against the clients."""

    pending: set[str] = field(default_factory=set)
    """Request ids whose holds are pending."""
    states: dict[str, str] = field(default_factory=dict)
    """Each request id's hold state."""


def audit(
    db_url: str,
    accounts: list[str],
    budget: str,
    shown: dict[str, Result],
    delivered: set[str],
    when: str,
) -> Audit:
    """Every check of the module docstring that reads the database; returns the open holds.

    ``accounts[0]`` has the spend cap ``budget``."""
    ids = ", ".join("?" * len(accounts))
    transfers = raw(
        db_url,
        "SELECT seq, debit_account_id, credit_account_id, amount_nanos, kind, reference "
        "FROM transfers ORDER BY seq",
    )
    holds = raw(
        db_url,
        "SELECT request_id, account_id, state, amount_nanos, charged_nanos FROM reservations "
        f"WHERE account_id IN ({ids})",
        tuple(accounts),
    )
    events = raw(
        db_url,
        f"SELECT request_id, account_id, cost_nanos FROM usage_events WHERE account_id IN ({ids})",
        tuple(accounts),
    )
    balances = {
        row[0]: row[1:]
        for row in raw(
            db_url,
            "SELECT id, credits_posted, debits_posted, debits_pending, floor_nanos FROM accounts "
            f"WHERE id IN ({ids})",
            tuple(accounts),
        )
    }

    charged: dict[str, int] = defaultdict(int)
    kinds: Counter[tuple[str, str]] = Counter()
    for _, debit, _, amount, kind, reference in transfers:
        if kind in CHARGE_KINDS and debit in accounts:
            charged[reference] += amount
            kinds[(reference, kind)] += 1
    doubled = [key for key, count in kinds.items() if count > 1]
    assert not doubled, f"{when}: charged twice: {doubled}"

    hold_of = {row[0]: row for row in holds}
    assert len(hold_of) == len(holds)
    for request_id, _, state, _, charged_nanos in holds:
        expected = charged_nanos if state == "settled" else 0
        assert charged.get(request_id, 0) == expected, (
            f"{when}: {request_id} ({state}) has transfers of {charged.get(request_id, 0)} "
            f"nanos, its settlement says {expected}"
        )
    assert set(charged) <= set(hold_of), f"{when}: charges without a hold"

    event_ids = [row[0] for row in events]
    assert len(event_ids) == len(set(event_ids)), f"{when}: a usage event is duplicated"
    event_cost = {row[0]: row[2] for row in events}
    for request_id, cost_nanos in event_cost.items():
        assert request_id in hold_of, f"{when}: usage event {request_id} has no hold"
        assert cost_nanos == charged.get(request_id, 0), (
            f"{when}: usage event {request_id} says {cost_nanos} nanos, the ledger "
            f"{charged.get(request_id, 0)}"
        )
    for request_id, row in hold_of.items():
        if row[2] == "settled":
            assert request_id in event_cost, f"{when}: settled {request_id} has no usage event"

    for account_id in accounts:
        credits_posted, debits_posted, debits_pending, floor_nanos = balances[account_id]
        spend = sum(row[2] for row in events if row[1] == account_id)
        ledger_charges = sum(
            row[3] for row in transfers if row[1] == account_id and row[4] in CHARGE_KINDS
        )
        assert spend == ledger_charges == debits_posted, (
            f"{when}: account {account_id} spent {spend} by its events, {ledger_charges} by "
            f"its charges, {debits_posted} posted"
        )
        posted = 0
        for seq, debit, credit, amount, _, _ in transfers:
            if account_id in (debit, credit):
                posted += amount if credit == account_id else -amount
                assert posted >= floor_nanos, (
                    f"{when}: {account_id} posted {posted} nanos after transfer {seq}, below its "
                    f"floor {floor_nanos}"
                )
        assert credits_posted - debits_posted - debits_pending >= floor_nanos

    # The budget's holds went wherever the balance's holds went: settled into spend, or released.
    budget_holds = raw(
        db_url, "SELECT reservation_id, held_nanos FROM budget_holds WHERE budget_id = ?", (budget,)
    )
    spend_rows = raw(
        db_url, "SELECT spent_nanos, held_nanos FROM budget_spend WHERE budget_id = ?", (budget,)
    )
    spent, held = (spend_rows[0][0], spend_rows[0][1]) if spend_rows else (0, 0)
    rich_pending = {
        row[0]: row[3] for row in holds if row[1] == accounts[0] and row[2] == "pending"
    }
    reservation_ids = {
        row[0]: row[1] for row in raw(db_url, "SELECT id, request_id FROM reservations")
    }
    assert {reservation_ids[row[0]]: row[1] for row in budget_holds} == {
        rid: amount for rid, amount in rich_pending.items() if amount
    }, f"{when}: the budget holds are not the pending holds"
    assert held == sum(rich_pending.values()), f"{when}: budget held {held}"
    assert spent == balances[accounts[0]][1], f"{when}: budget spent {spent}, posted debits differ"

    # Invariant 5: a stream seen through to [DONE] without figures (no usage asked) is charged.
    for request_id in delivered:
        assert hold_of[request_id][2] == "settled" and charged.get(request_id, 0) > 0, (
            f"{when}: {request_id} reached its client in full, its hold is {hold_of[request_id]}"
        )

    # Invariant 5: what a client was shown as charged is charged, exactly once, at that figure.
    for request_id, result in shown.items():
        assert result.cost is not None
        assert request_id in hold_of and hold_of[request_id][2] == "settled", (
            f"{when}: {result} was shown a charge, its hold is "
            f"{hold_of.get(request_id, ('', '', 'missing'))[2]}"
        )
        assert charged.get(request_id, 0) == result.cost.nanos == event_cost[request_id], (
            f"{when}: {result} was charged {charged.get(request_id, 0)} nanos"
        )
    return Audit(
        pending={row[0] for row in holds if row[2] == "pending"},
        states={row[0]: row[2] for row in holds},
    )


def all_kinds_complete(earlier: list[Result], load: Load | None = None) -> bool:
    """Some call of every kind was seen through (in ``earlier`` or by ``load`` so far)."""
    results = [*earlier, *(load.results() if load else [])]
    return {r.kind for r in results if r.complete} == set(KINDS)


def none_pending(db_url: str, request_ids: set[str]) -> bool:
    """None of these requests' holds is pending any more."""
    if not request_ids:
        return True
    rows = raw(db_url, "SELECT request_id FROM reservations WHERE state = 'pending'")
    return not {row[0] for row in rows} & request_ids


@pytest.mark.slow
def test_gateway_killed_mid_stream_round_after_round(
    db_url: str, demo_upstream: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CIYUAN_CRASH_SEED") or secrets.randbits(32))
    print(f"CIYUAN_CRASH_SEED={seed}")  # shown with a failure: rerun the same kill instants
    rng = random.Random(seed)
    store = open_store(db_url)
    assert isinstance(store, SqlStore)
    rich, rich_key = customer(store, "rich", RICH_CREDIT)
    tight, tight_key = customer(store, "tight", TIGHT_CREDIT, floor=TIGHT_FLOOR)
    accounts = [rich, tight]
    # A cap that never binds: its holds must follow the balance's through every crash.
    budget = store.set_budget(account_id=rich, api_key_id=None, period="total", amount=RICH_CREDIT)
    keys = [rich_key, tight_key, rich_key]  # of five workers, three rich and two near the floor

    shown: dict[str, Result] = {}
    delivered: set[str] = set()
    every: list[Result] = []
    killed_holds: set[str] = set()
    recovered: set[str] = set()
    process: Process | None = None
    load: Load | None = None
    try:
        for round_no in range(ROUNDS):
            if round_no:
                store.grant(tight, TIGHT_TOP_UP)
            process, base_url = start_gateway(
                db_url, demo_upstream, tmp_path / f"gateway-{round_no}.log", **SETTINGS
            )
            load = Load(base_url, keys, clients=CLIENTS, seed=seed + round_no).start()
            # The holds the killed gateway left are released by this one's sweeper.
            wait_until(
                functools.partial(none_pending, db_url, killed_holds),
                f"the holds of the gateway killed in round {round_no - 1} expire",
            )
            wait_until(load.stream_in_flight, "a stream is delivering output")
            if round_no == ROUNDS - 1:
                # Every kind of call must have been seen through, once at least, for the checks
                # below to cover it; usually long done by the last round.
                wait_until(
                    functools.partial(all_kinds_complete, every, load), "every kind completed"
                )
                wait_until(load.stream_in_flight, "a stream is delivering output")
            time.sleep(rng.uniform(0.05, 0.8))  # the random instant of the kill
            load.stop_starting()
            process.kill()  # SIGKILL: no shutdown, no settle of what is in flight
            process = None
            results = load.stop()
            load = None
            every += results
            unexpected = [r for r in results if r.unexpected]
            assert not unexpected, unexpected
            for result in results:
                if result.cost is not None:
                    assert result.request_id is not None
                    shown[result.request_id] = result
                elif result.complete:
                    assert result.request_id is not None
                    delivered.add(result.request_id)
            when = f"after round {round_no} (seed {seed})"
            found = audit(db_url, accounts, budget.id, shown, delivered, when)
            for request_id in killed_holds:
                assert found.states[request_id] in ("expired", "settled"), (request_id, found)
                if found.states[request_id] == "settled":
                    recovered.add(request_id)
            killed_holds = found.pending
            # What `ciyuan ledger verify` and `reconcile` run, without a CLI start per round.
            assert_consistent(store)

        # A last restart, with no load: the sweeper alone must leave no hold pending.
        process, _ = start_gateway(db_url, demo_upstream, tmp_path / "gateway-last.log", **SETTINGS)
        wait_until(
            lambda: not raw(db_url, "SELECT 1 FROM reservations WHERE state = 'pending'"),
            "no hold is pending",
        )
        found = audit(
            db_url, accounts, budget.id, shown, delivered, f"after the last restart (seed {seed})"
        )
        assert not found.pending
        recovered |= {rid for rid in killed_holds if found.states[rid] == "settled"}
        LedgerCli(db_url).assert_ok("after the last restart")
    finally:
        if load is not None:
            load.stop_starting()
        if process is not None:
            process.kill()
        if load is not None:
            load.stop()
        store.close()

    # The load did what the test needs: charges shown, streams finished, and streams cut short.
    complete = [r for r in every if r.complete]
    cut = [r for r in every if "stream" in r.kind and r.output_seen and not r.complete]
    errors = Counter((r.error or "").split(":")[0] for r in every if r.error)
    print(
        f"{len(every)} calls, {len(complete)} complete, {len(shown)} shown a charge, {len(cut)} cut"
    )
    print(f"failed calls: {dict(errors)}")
    assert all_kinds_complete(every)
    assert all(r.request_id in shown or r.request_id in delivered for r in complete)
    assert cut, "no kill landed inside a stream"
    # A killed hold billed by the sweeper is a stream whose client saw output, billed from a
    # progress mark (partial, lost with its gateway), and never one the client was shown.
    saw_output = {r.request_id for r in every if r.output_seen}
    for request_id in recovered:
        assert request_id in saw_output and request_id not in shown, request_id
        (marked,) = raw(
            db_url,
            "SELECT status, error_code FROM usage_events WHERE request_id = ?",
            (request_id,),
        )
        assert marked == ("partial", "gateway_lost"), (request_id, marked)
    print(f"{len(recovered)} killed streams billed from their progress marks")


def test_a_stream_cut_by_a_killed_gateway_is_billed_from_its_progress_mark(
    sqlite_url: str, demo_upstream: str, tmp_path: Path
) -> None:
    """Invariant 5 for the part of a stream a client got before its gateway died: the stream
    marks its progress on its hold every 0.1 s; after the SIGKILL, the sweeper (here the store's,
    run by the test once the hold is overdue and the mark has lapsed) bills that mark, no more
    output than the client saw, and a second sweep changes nothing."""
    import openai

    store = open_store(sqlite_url)
    account, key = customer(store, "cut", Amount.parse("1"))
    process, base_url = start_gateway(
        sqlite_url, demo_upstream, tmp_path / "gateway.log",
        CIYUAN_RESERVATION_TIMEOUT_S="1", CIYUAN_STREAM_PROGRESS_INTERVAL_S="0.1",
    )  # fmt: skip
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=30)
    received = ""
    try:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=400, stream=True,
            messages=[{"role": "user", "content": "tell me a long story"}],
            extra_headers={"x-demo-fault": "drip:20"},
        )  # fmt: skip
        started = time.monotonic()
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received += chunk.choices[0].delta.content
            if time.monotonic() - started > 1.0:
                break
        process.kill()  # SIGKILL mid-stream: this gateway never settles
        stream.close()
    finally:
        if process.popen.poll() is None:
            process.kill()
        client.close()
    assert received, "the client saw no output before the kill"
    (state,) = raw(sqlite_url, "SELECT state FROM reservations")
    assert state == ("pending",)
    time.sleep(1.5)  # the hold is overdue and its last mark (alive 0.3 s) has lapsed
    assert store.expire_reservations() == 1
    assert store.expire_reservations() == 0
    (event,) = raw(
        sqlite_url, "SELECT status, error_code, output_tokens, cost_nanos FROM usage_events"
    )
    status, error_code, output_tokens, cost_nanos = event
    assert (status, error_code) == ("partial", "gateway_lost")
    assert 0 < output_tokens <= len(received)  # the demo sends a few characters per token
    assert cost_nanos > 0 and store.balance(account).debits_posted == cost_nanos
    assert_consistent(store)
    store.close()


@pytest.mark.postgres
def test_a_stream_end_reaches_the_client_only_once_charged(
    pg_url: str, demo_upstream: str, tmp_path: Path
) -> None:
    """An Anthropic stream whose upstream reports no usage is settled by counting, after the
    upstream ends; its ``message_stop`` must not reach the client before that settle commits,
    or a kill in between leaves a whole response delivered and never charged (invariant 5).

    The test holds the customer's account row so the settle blocks, waits until PostgreSQL shows
    the gateway blocked behind it (all it sent before the settle is then on the wire), and
    SIGKILLs it. PostgreSQL only: SQLite offers no way to see a writer waiting for its lock.
    """
    import anthropic
    import psycopg

    store = open_store(pg_url)
    account, key = customer(store, "late", Amount.parse("1"))
    store.close()
    process, base_url = start_gateway(pg_url, demo_upstream, tmp_path / "gateway.log")
    client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=30)
    seen: list[str] = []
    try:
        raw_response = client.messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=16, stream=True,
            messages=[{"role": "user", "content": "count me"}],
            extra_headers={"x-demo-fault": "no-usage,drip:20"},
        )  # fmt: skip
        request_id = raw_response.headers["x-ciyuan-request-id"]
        with psycopg.connect(pg_url) as locker:
            # The hold is committed (the headers came after it); now the settle must wait.
            locker.execute("SELECT id FROM accounts WHERE id = %s FOR UPDATE", (account,))
            locker_pid = locker.info.backend_pid
            reader = threading.Thread(target=_read_events, args=(raw_response.parse(), seen))
            reader.start()
            with psycopg.connect(pg_url, autocommit=True) as watcher:
                wait_until(
                    functools.partial(_blocked_behind, watcher, locker_pid),
                    "the gateway's settle waits for the account row",
                )
            process.kill()
            reader.join(30)
            locker.rollback()
    finally:
        if process.popen.poll() is None:
            process.kill()
        client.close()
    holds = raw(pg_url, "SELECT state FROM reservations WHERE request_id = ?", (request_id,))
    charged = raw(pg_url, "SELECT 1 FROM transfers WHERE reference = ?", (request_id,))
    assert "message_stop" not in seen or (holds == [("settled",)] and charged), (
        f"the client received the whole stream ({seen}) but its hold is {holds}, uncharged"
    )


def _read_events(stream: Any, seen: list[str]) -> None:
    """Record each event's type until the stream ends or breaks (the gateway is killed)."""
    try:
        for event in stream:
            seen.append(event.type)
    except WIRE_ERRORS:
        seen.append("broken")


def _blocked_behind(conn: Any, locker_pid: int) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
        (locker_pid,),
    ).fetchone()
    return bool(row and row[0])

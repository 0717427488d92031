"""Invariant 7 for keys: stored only as hashes, compared in constant time.

Keys are issued the ways an operator issues them (``ciyuan keys create`` and ``rotate`` as real
processes, and the store API the admin API and dashboard use), then every row of every table
of the real database is read back, on SQLite (and its raw file and WAL bytes) and PostgreSQL:
no secret, and no secret part after the public prefix, may be anywhere. Lookups refuse a key
that differs in its last character or that has the right prefix with another secret, from the
store and from the auth cache alike, and the comparison made is ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from ciyuan import apikeys
from ciyuan.clock import FixedClock
from ciyuan.errors import AuthenticationFailed
from ciyuan.metering.pipeline import Metering, MeteringPolicy
from ciyuan.metering.ports import Store
from ciyuan.pricing.catalog import Catalog
from ciyuan.store import open_store
from tests.cli.test_cli_json import ciyuan


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def metering(store: Store, cache_ttl_s: float) -> Metering:
    policy = MeteringPolicy(
        reservation_timeout_s=60,
        output_tokens_default=100,
        auth_cache_ttl_s=cache_ttl_s,
        allow_unpriced_models=False,
    )
    return Metering(store, Catalog.load_default(), policy, FixedClock())


def database_text(db_url: str) -> str:
    """Every row of every table, as text; on SQLite also the raw bytes of the file and WAL
    (deleted or rewritten rows would linger there)."""
    if db_url.startswith("sqlite:///"):
        path = Path(db_url.removeprefix("sqlite:///"))
        with closing(sqlite3.connect(path)) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            rows = [repr(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables]
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        return "\n".join(rows) + raw.decode("latin-1")
    with psycopg.connect(db_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        ]
        assert "api_keys" in tables
        return "\n".join(
            str(conn.execute(f'SELECT t::text FROM "{t}" t').fetchall()) for t in tables
        )


def test_only_hashes_are_stored(db_url: str, store: Store) -> None:
    account = store.create_account("hashed")
    issued: list[str] = []
    for _ in range(3):
        new = apikeys.generate()
        store.create_api_key(account.id, new.prefix, new.hash_hex, "store")
        issued.append(new.secret.reveal())
    rotated_from = apikeys.split(issued[0])
    assert rotated_from is not None
    new = apikeys.generate()
    store.rotate_api_key(rotated_from[0], new.prefix, new.hash_hex, overlap_s=60)
    issued.append(new.secret.reveal())
    created = ciyuan(db_url, "keys", "create", "--account", "hashed", "--tag", "team=x")
    rotated = ciyuan(db_url, "keys", "rotate", created["prefix"], "--overlap", "1h")
    issued += [created["key"], rotated["key"]]
    store.revoke_api_key(created["prefix"])

    text = database_text(db_url)
    for raw in issued:
        prefix, _, secret_part = raw.partition("_")
        assert raw not in text and secret_part not in text, "a key's secret is in the database"
        # The scan does see the table: the public prefix and the hash are there.
        assert prefix in text and hashlib.sha256(raw.encode()).hexdigest() in text


def test_a_near_miss_key_is_refused_from_store_and_cache(store: Store) -> None:
    account = store.create_account("near-miss")
    new = apikeys.generate()
    store.create_api_key(account.id, new.prefix, new.hash_hex, None)
    raw = new.secret.reveal()
    last = "A" if raw[-1] != "A" else "B"
    wrong = [
        raw[:-1] + last,  # differs in its last character only
        f"{new.prefix}_{apikeys.generate().secret.reveal().partition('_')[2]}",  # other secret
        raw + "x",
        raw[:-1],
    ]
    # TTL 0: every lookup reads the store; TTL 60: the good key's record is cached first, so a
    # wrong secret under the same prefix is checked against the cached hash.
    for ttl in (0.0, 60.0):
        meter = metering(store, ttl)
        assert meter.authenticate(raw).id is not None
        for presented in wrong:
            with pytest.raises(AuthenticationFailed):
                meter.authenticate(presented)
            if ttl:
                with pytest.raises(AuthenticationFailed):
                    meter.authenticate_cached(presented)
        assert meter.authenticate(raw).account_id == account.id


def test_the_lookup_compares_in_constant_time(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every verdict on a presented key comes from ``hmac.compare_digest`` over full-length
    digests, also for an unknown prefix (so its timing tells nothing)."""
    account = store.create_account("timing")
    new = apikeys.generate()
    store.create_api_key(account.id, new.prefix, new.hash_hex, None)
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    meter = metering(store, 60.0)
    raw = new.secret.reveal()
    wrong = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    unknown = apikeys.generate().secret.reveal()
    meter.authenticate(raw)  # from the store
    meter.authenticate(raw)  # from the cache
    for presented in (wrong, unknown):
        with pytest.raises(AuthenticationFailed):
            meter.authenticate(presented)
    assert len(calls) == 4, "one constant-time comparison per lookup"
    stored = new.hash_hex.encode()
    assert calls[0] == (stored, stored) and calls[1] == (stored, stored)
    assert calls[2] == (stored, apikeys.hash_key(wrong).encode())
    assert calls[3][1] == apikeys.hash_key(unknown).encode() and len(calls[3][0]) == 64

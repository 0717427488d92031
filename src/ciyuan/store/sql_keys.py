"""API keys on SQL: creation with scopes, expiry, tags and rate-limit numbers; revocation; and
rotation with an overlap window, in one transaction so the old and new key are never both
missing or both unlimited.

Only the hash of a key is stored. Scopes and tags are JSON columns read back into tuples and
dicts; NULL scope means "no restriction", never "nothing allowed".
"""

# ruff: noqa: S608  (SQL is composed from constant column lists only; values are bound)

from __future__ import annotations

from typing import Any, Final

import orjson

from ciyuan.clock import US_PER_S, new_id
from ciyuan.errors import InvalidRequest, NotFound
from ciyuan.metering.ports import ApiKeyRecord, KeyOptions
from ciyuan.store.sql_base import Row, SqlBase, Tx

KEY_COLUMNS: Final = (
    "k.id, k.account_id, a.name, k.prefix, k.hash_hex, k.label, k.created_us, k.revoked_us, "
    "k.expires_us, k.models, k.apis, k.metadata, k.rpm, k.tpm, k.concurrency_max, "
    "k.rotated_from_id"
)
KEY_SELECT: Final = f"SELECT {KEY_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id"
_OPTION_COLUMNS: Final = "expires_us, models, apis, metadata, rpm, tpm, concurrency_max"
OVERLAP_S_MAX: Final = 90 * 24 * 3600
"""Longest overlap a rotation may give the old key: a forgotten rotation must end."""


def _json_list(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(orjson.loads(text))


def api_key_from_row(row: Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row[0],
        account_id=row[1],
        account_name=row[2],
        prefix=row[3],
        hash_hex=row[4],
        label=row[5],
        created_us=row[6],
        revoked_us=row[7],
        expires_us=row[8],
        models=_json_list(row[9]),
        apis=_json_list(row[10]),
        metadata=orjson.loads(row[11] or "{}"),
        rpm=row[12],
        tpm=row[13],
        concurrency_max=row[14],
        rotated_from_id=row[15],
    )


def _option_params(options: KeyOptions) -> tuple[Any, ...]:
    def listed(values: tuple[str, ...] | None) -> str | None:
        return None if values is None else orjson.dumps(list(values)).decode()

    return (
        options.expires_us,
        listed(options.models),
        listed(options.apis),
        orjson.dumps(options.metadata, option=orjson.OPT_SORT_KEYS).decode(),
        options.rpm,
        options.tpm,
        options.concurrency_max,
    )


def _options_of(record: ApiKeyRecord) -> KeyOptions:
    return KeyOptions(
        expires_us=record.expires_us,
        models=record.models,
        apis=record.apis,
        metadata=dict(record.metadata),
        rpm=record.rpm,
        tpm=record.tpm,
        concurrency_max=record.concurrency_max,
    )


class KeyQueries(SqlBase):
    def create_api_key(
        self,
        account_id: str,
        prefix: str,
        hash_hex: str,
        label: str | None,
        options: KeyOptions | None = None,
    ) -> ApiKeyRecord:
        options = options or KeyOptions()
        with self.transaction() as tx:
            key_id = self._insert_key(tx, account_id, prefix, hash_hex, label, options, None)
            row = tx.one(f"{KEY_SELECT} WHERE k.id = ?", (key_id,))
        assert row is not None
        return api_key_from_row(row)

    def _insert_key(
        self,
        tx: Tx,
        account_id: str,
        prefix: str,
        hash_hex: str,
        label: str | None,
        options: KeyOptions,
        rotated_from_id: str | None,
    ) -> str:
        for name, value in (
            ("rpm", options.rpm),
            ("tpm", options.tpm),
            ("concurrency", options.concurrency_max),
        ):
            if value is not None and value <= 0:
                raise InvalidRequest(f"{name} must be a positive whole number", param=name)
        key_id = new_id("key", self._clock)
        tx.execute(
            "INSERT INTO api_keys (id, account_id, prefix, hash_hex, label, created_us, "
            f"rotated_from_id, {_OPTION_COLUMNS}) VALUES ({', '.join('?' * 14)})",
            (
                key_id,
                account_id,
                prefix,
                hash_hex,
                label,
                self._clock.now_us(),
                rotated_from_id,
                *_option_params(options),
            ),
        )
        return key_id

    def find_api_key(self, prefix: str) -> ApiKeyRecord | None:
        with self.read_transaction() as tx:
            row = tx.one(f"{KEY_SELECT} WHERE k.prefix = ?", (prefix,))
        return api_key_from_row(row) if row else None

    def get_api_key(self, prefix_or_id: str) -> ApiKeyRecord:
        with self.read_transaction() as tx:
            return self._key_in(tx, prefix_or_id)

    def _key_in(self, tx: Tx, prefix_or_id: str) -> ApiKeyRecord:
        row = tx.one(f"{KEY_SELECT} WHERE k.prefix = ? OR k.id = ?", (prefix_or_id, prefix_or_id))
        if row is None:
            raise NotFound(f"no api key with prefix or id {prefix_or_id!r}")
        return api_key_from_row(row)

    def list_api_keys(self, account_id: str | None = None) -> list[ApiKeyRecord]:
        sql = KEY_SELECT
        params: tuple[Any, ...] = ()
        if account_id is not None:
            sql += " WHERE k.account_id = ?"
            params = (account_id,)
        with self.read_transaction() as tx:
            rows = tx.execute(sql + " ORDER BY k.created_us, k.id", params)
        return [api_key_from_row(row) for row in rows]

    def revoke_api_key(self, prefix_or_id: str) -> ApiKeyRecord:
        with self.transaction() as tx:
            tx.execute(
                "UPDATE api_keys SET revoked_us = ? WHERE (prefix = ? OR id = ?) AND revoked_us "
                "IS NULL",
                (self._clock.now_us(), prefix_or_id, prefix_or_id),
            )
            return self._key_in(tx, prefix_or_id)

    def rotate_api_key(
        self, prefix_or_id: str, prefix: str, hash_hex: str, *, overlap_s: float
    ) -> tuple[ApiKeyRecord, ApiKeyRecord]:
        if not 0 <= overlap_s <= OVERLAP_S_MAX:
            raise InvalidRequest(
                f"the overlap must be between 0 and {OVERLAP_S_MAX // 86400} days",
                param="overlap",
            )
        now_us = self._clock.now_us()
        overlap_end_us = now_us + int(overlap_s * US_PER_S)
        with self.transaction() as tx:
            old = self._key_in(tx, prefix_or_id)
            if not old.usable_at(now_us):
                raise InvalidRequest(
                    f"api key {old.prefix} is revoked or expired; create a new key instead"
                )
            new_id_ = self._insert_key(
                tx, old.account_id, prefix, hash_hex, old.label, _options_of(old), old.id
            )
            # The old key keeps an earlier expiry if it had one: rotation never extends a key.
            tx.execute(
                "UPDATE api_keys SET expires_us = ? WHERE id = ? AND "
                "(expires_us IS NULL OR expires_us > ?)",
                (overlap_end_us, old.id, overlap_end_us),
            )
            old_after = self._key_in(tx, old.id)
            new = self._key_in(tx, new_id_)
        return old_after, new

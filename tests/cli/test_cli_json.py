"""The ``ciyuan`` command as an operator runs it: a real process per command, ``--json`` output
parsed, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.conftest import CIYUAN, child_env


def ciyuan(db_url: str, *args: str, expect_ok: bool = True) -> dict[str, Any]:
    done = subprocess.run(
        [*CIYUAN, "--db", db_url, *args, "--json"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if expect_ok:
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))
    assert done.returncode != 0 and done.stdout == ""
    return dict(json.loads(done.stderr))


def test_operator_workflow_with_json(db_url: str) -> None:
    created = ciyuan(db_url, "accounts", "create", "acme")
    assert created["account"]["name"] == "acme" and created["account"]["balance"] == "0.00"

    key = ciyuan(db_url, "keys", "create", "--account", "acme", "--label", "ci")
    assert key["key"].startswith(key["prefix"] + "_") and key["label"] == "ci"

    granted = ciyuan(db_url, "credits", "grant", "acme", "10.5", "--idempotency-key", "once")
    assert granted["balance"] == "10.50"
    replayed = ciyuan(db_url, "credits", "grant", "acme", "10.5", "--idempotency-key", "once")
    assert replayed["transfer_id"] == granted["transfer_id"] and replayed["balance"] == "10.50"
    ciyuan(db_url, "credits", "grant", "acme", "0.000000001")
    assert ciyuan(db_url, "credits", "balance", "acme")["balance"] == "10.500000001"

    listed = ciyuan(db_url, "keys", "list", "--account", "acme")["keys"]
    assert [k["prefix"] for k in listed] == [key["prefix"]]
    assert all(key["key"] not in json.dumps(k) for k in listed), "the secret must never be listed"

    revoked = ciyuan(db_url, "keys", "revoke", key["prefix"])
    assert revoked["key"]["revoked"] is not None

    names = {a["name"] for a in ciyuan(db_url, "accounts", "list")["accounts"]}
    assert {"acme", "ciyuan:funding", "ciyuan:revenue"} <= names
    usage = ciyuan(db_url, "usage", "--account", "acme")
    assert usage["usage"] == [] and usage["total"]["requests"] == 0


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("accounts", "create", "ciyuan:evil"), "invalid_request"),
        (("credits", "grant", "nobody", "1"), "not_found"),
        (("credits", "grant", "acme", "1.0000000001"), "error"),
        (("keys", "revoke", "ck-nosuchkey"), "not_found"),
    ],
)
def test_bad_input_is_a_json_error_on_stderr(
    sqlite_url: str, args: tuple[str, ...], code: str
) -> None:
    ciyuan(sqlite_url, "accounts", "create", "acme")
    error = ciyuan(sqlite_url, *args, expect_ok=False)
    assert error["error"]["code"] == code and error["error"]["message"]

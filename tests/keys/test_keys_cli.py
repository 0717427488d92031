"""``ciyuan keys`` and ``ciyuan budgets`` as an operator runs them: a real process per command,
``--json`` parsed, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from tests.cli.test_cli_json import ciyuan


def test_fleet_keys_and_budgets_with_json(db_url: str) -> None:
    ciyuan(db_url, "accounts", "create", "acme")
    key = ciyuan(
        db_url, "keys", "create", "--account", "acme", "--models", "gpt-4o*", "--apis",
        "chat,embeddings", "--expires", "2026-12-31", "--tag", "team=search", "--rpm", "60",
        "--tpm", "20000", "--concurrency", "4",
    )  # fmt: skip
    assert key["models"] == ["gpt-4o*"] and key["apis"] == ["chat", "embeddings"]
    assert key["expires"] == "2027-01-01T00:00:00+00:00", "the key works through 31 December"
    assert key["tags"] == {"team": "search"}
    assert (key["rpm"], key["tpm"], key["concurrency"]) == (60, 20000, 4)

    rotated = ciyuan(db_url, "keys", "rotate", key["prefix"], "--overlap", "1h")
    assert rotated["key"].startswith(rotated["prefix"] + "_") and rotated["key"] != key["key"]
    assert rotated["rotated_from"] == key["id"] and rotated["tags"] == {"team": "search"}
    assert rotated["old"]["prefix"] == key["prefix"] and rotated["old"]["expires"] is not None
    listed = ciyuan(db_url, "keys", "list", "--account", "acme")["keys"]
    assert [k["prefix"] for k in listed] == [key["prefix"], rotated["prefix"]]
    assert key["key"] not in json.dumps(listed) and rotated["key"] not in json.dumps(listed)

    budget = ciyuan(
        db_url, "budgets", "set", "--key", rotated["prefix"], "--period", "month", "--amount",
        "50", "--thresholds", "50,80,100", "--webhook", "https://hooks.example/ciyuan",
    )["budget"]  # fmt: skip
    assert budget["key"] == rotated["prefix"] and budget["amount"] == "50.00"
    assert budget["thresholds"] == [50, 80, 100]
    ciyuan(db_url, "budgets", "set", "--account", "acme", "--period", "total", "--amount", "500")
    listed_budgets = ciyuan(db_url, "budgets", "list", "--account", "acme")["budgets"]
    assert {(b["period"], b["spent"], b["remaining"]) for b in listed_budgets} == {
        ("month", "0.00", "50.00"),
        ("total", "0.00", "500.00"),
    }
    assert {b["resets"] is None for b in listed_budgets} == {True, False}
    removed = ciyuan(db_url, "budgets", "remove", budget["id"])
    assert removed["budget"]["id"] == budget["id"]
    assert len(ciyuan(db_url, "budgets", "list")["budgets"]) == 1
    assert ciyuan(db_url, "budgets", "webhooks")["webhooks"] == []


def test_bad_fleet_input_is_a_json_error(sqlite_url: str) -> None:
    ciyuan(sqlite_url, "accounts", "create", "acme")
    for args, code in [
        (("keys", "create", "--account", "acme", "--apis", "images"), "invalid_request"),
        (
            ("keys", "create", "--account", "acme", "--expires", "2026-12-31T10:00"),
            "invalid_request",
        ),
        (("keys", "rotate", "ck-nosuchkey", "--overlap", "1h"), "not_found"),
        (("keys", "rotate", "ck-nosuchkey", "--overlap", "soon"), "invalid_request"),
        (("budgets", "set", "--amount", "5"), "invalid_request"),
        (
            ("budgets", "set", "--account", "acme", "--amount", "5", "--period", "year"),
            "invalid_request",
        ),
        (
            ("budgets", "set", "--account", "acme", "--amount", "5", "--thresholds", "x"),
            "invalid_request",
        ),
        (("budgets", "remove", "bud_nope"), "not_found"),
    ]:
        error = ciyuan(sqlite_url, *args, expect_ok=False)
        assert error["error"]["code"] == code, (args, error)

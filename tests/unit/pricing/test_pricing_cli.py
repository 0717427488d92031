"""``ciyuan prices`` and ``ciyuan cost`` through a fresh typer app and CliRunner.

Each command runs with --json and must print exactly one JSON object; operator prices go to a
prices file under tmp_path, and a refused change must leave that file as it was.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ciyuan.cli import cost, prices

DATA = Path(__file__).parent / "data"
TOMORROW = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()
    prices.register(root)
    cost.register(root)
    return root


def run(app: typer.Typer, *args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(app, [*args, "--json"])
    if ok:
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)
    assert result.exit_code != 0
    return json.loads(result.stderr)["error"]


def test_prices_list_filters(app: typer.Typer, tmp_path: Path) -> None:
    data = run(app, "prices", "list", "--provider", "anthropic", "--file", str(tmp_path / "p.toml"))
    models = [row["model"] for row in data["prices"]]
    assert "claude-haiku-4-5" in models
    assert all(row["provider"] == "anthropic" for row in data["prices"])
    mini = run(app, "prices", "list", "--model", "gpt-4o-mini*", "--file", str(tmp_path / "p.toml"))
    (row,) = [r for r in mini["prices"] if r["model"] == "gpt-4o-mini"]
    assert row["per_million"]["input"] == "0.15"
    assert row["per_million"]["cache_read"] == "0.075"
    assert row["layer"] == "shipped"


def test_prices_set_then_list_and_cost(app: typer.Typer, tmp_path: Path) -> None:
    file = str(tmp_path / "p.toml")
    data = run(
        app,
        "prices",
        "set",
        "my-model",
        "--input",
        "0.5",
        "--output",
        "1.5",
        "--cache-read",
        "0.05",
        "--from",
        TOMORROW,
        "--file",
        file,
    )
    assert data["changed"] is True
    assert data["price"]["per_million"]["cache_read"] == "0.05"
    listed = run(app, "prices", "list", "--model", "my-model", "--at", TOMORROW, "--file", file)
    assert [r["model"] for r in listed["prices"]] == ["my-model"]
    assert listed["prices"][0]["layer"] == "operator"
    priced = run(
        app,
        "cost",
        "my-model",
        "--input-tokens",
        "1000",
        "--output-tokens",
        "100",
        "--at",
        TOMORROW,
        "--file",
        file,
    )
    assert priced["total"] == "0.00065"  # 1000 x $0.5/M + 100 x $1.5/M
    # The same price again is a no-op, not a new version.
    assert (
        run(
            app,
            "prices",
            "set",
            "my-model",
            "--input",
            "0.5",
            "--output",
            "1.5",
            "--cache-read",
            "0.05",
            "--from",
            TOMORROW,
            "--file",
            file,
        )["changed"]
        is False
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "-1", "--output", "1"], "--input: price '-1' must be a finite, non-negative"),
        (["--input", "abc", "--output", "1"], "--input: price 'abc' is not a decimal"),
        (["--input", "0.0000001", "--output", "1"], "finer than 1e-9"),
        (["--input", "1", "--output", "1", "--from", "2020-01-01"], "in the past"),
        (["--input", "1", "--output", "1", "--from", "soon"], "not a date"),
    ],
)
def test_prices_set_refuses_bad_input(
    app: typer.Typer, tmp_path: Path, args: list[str], message: str
) -> None:
    file = tmp_path / "p.toml"
    error = run(app, "prices", "set", "m", *args, "--file", str(file), ok=False)
    assert error["code"] == "invalid_request"
    assert message in error["message"]
    assert not file.exists()


def test_prices_import_litellm_dry_run_then_real(app: typer.Typer, tmp_path: Path) -> None:
    file = tmp_path / "p.toml"
    sample = str(DATA / "litellm_model_prices.json")
    dry = run(
        app,
        "prices",
        "import",
        sample,
        "--format",
        "litellm",
        "--from",
        TOMORROW,
        "--dry-run",
        "--file",
        str(file),
    )
    assert dry["dry_run"] is True
    assert not file.exists()
    real = run(
        app,
        "prices",
        "import",
        sample,
        "--format",
        "litellm",
        "--from",
        TOMORROW,
        "--file",
        str(file),
    )
    # Prices identical to the shipped ones in force are not duplicated.
    assert "gpt-4o-mini" in real["unchanged"]
    assert "gpt-4o-audio-preview-2024-12-17" in real["unchanged"]
    assert "deepseek/deepseek-chat" in real["unchanged"]
    assert real["skipped"] == ["dall-e-3: no per-token input and output price"]
    assert file.exists() or real["added"] == []


def test_prices_import_refuses_malformed_file(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("model,input,output\nok,1,2\nbroken,1,lots\n")
    file = tmp_path / "p.toml"
    error = run(
        app,
        "prices",
        "import",
        str(bad),
        "--format",
        "csv",
        "--from",
        TOMORROW,
        "--file",
        str(file),
        ok=False,
    )
    assert "bad.csv: line 3 ('broken')" in error["message"]
    assert not file.exists()
    error = run(
        app, "prices", "import", str(bad), "--format", "yaml", "--file", str(file), ok=False
    )
    assert "--format must be one of" in error["message"]


def test_cost_of_a_chat_request(app: typer.Typer, tmp_path: Path) -> None:
    body = tmp_path / "request.json"
    body.write_text(
        json.dumps(
            {
                "model": "gpt-4o-mini",
                "max_tokens": 100,
                "messages": [{"role": "user", "content": "Hello there, how are you?"}],
            }
        )
    )
    data = run(app, "cost", "gpt-4o-mini", "--chat", str(body), "--file", str(tmp_path / "p.toml"))
    counted = data["counted"]["input_tokens"]
    assert counted > 0
    assert data["usage"]["input_tokens"] == counted
    assert data["usage"]["output_tokens"] == 100
    assert data["total_nanos"] == counted * 150 + 100 * 600
    assert data["reservation_nanos"] >= data["total_nanos"]


def test_cost_of_an_unknown_model(app: typer.Typer, tmp_path: Path) -> None:
    error = run(
        app, "cost", "no-such-model", "--input-tokens", "1", "--file", str(tmp_path / "p"), ok=False
    )
    assert error["code"] == "unknown_model"


def test_cost_batch_and_cached(app: typer.Typer, tmp_path: Path) -> None:
    data = run(
        app,
        "cost",
        "gpt-4o-mini",
        "--input-tokens",
        "1000",
        "--cached",
        "1000",
        "--output-tokens",
        "1000",
        "--batch",
        "--file",
        str(tmp_path / "p"),
    )
    # (150k + 75k + 600k nanos) / 2
    assert data["total_nanos"] == 412_500
    assert [line["bucket"] for line in data["lines"]] == [
        "input",
        "cache_read",
        "output",
        "batch_discount",
    ]

"""``ciyuan count`` through typer's CliRunner: files, stdin, --json, --chat, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from ciyuan.cli.count import register
from ciyuan.tokens import count_text


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer from flattening "count" into the root
        """Nothing."""

    return app


def test_files_json_has_per_file_counts_and_a_total(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("Hello, world!", encoding="utf-8")
    second.write_text("你好，世界！今天天气很好。", encoding="utf-8")
    result = CliRunner().invoke(_app(), ["count", "--json", str(first), str(second)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [f["tokens"] for f in data["files"]] == [4, 9]
    assert data["total"] == 13 and data["exact"] and data["encoding"] == "o200k_base"


def test_stdin_and_model_option() -> None:
    result = CliRunner().invoke(
        _app(), ["count", "--json", "-m", "gpt-4", "-"], input="お誕生日おめでとう"
    )
    data = json.loads(result.stdout)
    assert data["total"] == 9 and data["encoding"] == "cl100k_base"
    human = CliRunner().invoke(_app(), ["count"], input="tiktoken is great!")
    assert human.exit_code == 0 and "6" in human.stdout


def test_estimate_is_labelled() -> None:
    result = CliRunner().invoke(_app(), ["count", "--json", "-m", "claude-sonnet-4-5"], input="hi")
    data = json.loads(result.stdout)
    assert not data["exact"] and data["estimate_rules"]
    assert data["total"] == count_text("claude-sonnet-4-5", "hi").tokens


def test_chat_body(tmp_path: Path) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    result = CliRunner().invoke(_app(), ["count", "--json", "--chat", str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total"] == 3 + 1 + 1 + 3 and data["exact"] and data["model"] == "gpt-4o"
    human = CliRunner().invoke(_app(), ["count", "--chat", str(path)])
    assert "overhead" in human.stdout


def test_errors_exit_non_zero_with_json_on_stderr(tmp_path: Path) -> None:
    missing = CliRunner().invoke(_app(), ["count", "--json", str(tmp_path / "nope.txt")])
    assert missing.exit_code == 1
    assert json.loads(missing.stderr)["error"]["code"] == "invalid_request"
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": "x"}', encoding="utf-8")
    invalid = CliRunner().invoke(_app(), ["count", "--json", "--chat", str(bad)])
    assert invalid.exit_code == 1 and "messages" in invalid.stderr
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    assert CliRunner().invoke(_app(), ["count", str(binary)]).exit_code == 1

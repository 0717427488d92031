"""Every command has help text, and the README shows the commands a newcomer needs."""

from __future__ import annotations

from pathlib import Path

import click
import typer.main
from typer.testing import CliRunner

from ciyuan.cli import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def all_commands() -> list[tuple[str, click.Command]]:
    root = typer.main.get_command(app)
    found: list[tuple[str, click.Command]] = []

    def walk(prefix: str, command: click.Command) -> None:
        found.append((prefix, command))
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(f"{prefix} {name}".strip(), sub)

    walk("", root)
    return found


def test_every_command_has_help() -> None:
    missing = [
        name or "ciyuan" for name, command in all_commands() if not (command.help or "").strip()
    ]
    assert missing == []


def test_help_and_version_run() -> None:
    runner = CliRunner()
    for name, _ in all_commands():
        result = runner.invoke(app, [*name.split(), "--help"])
        assert result.exit_code == 0, (name, result.output)
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("ciyuan ")


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "make serve" in first_block and "make test" in first_block

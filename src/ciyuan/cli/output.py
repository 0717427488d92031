"""How every command prints: a rich table or message for people, one JSON object for scripts.

With ``--json`` a command prints exactly one JSON object on stdout and nothing else there;
errors go to stderr (as JSON under ``--json``) with a non-zero exit status.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.table import Table

from ciyuan.errors import CiyuanError

console = Console()
err_console = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print one JSON object on stdout, for scripts.")


def emit_json(data: Mapping[str, Any]) -> None:
    sys.stdout.write(
        orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    )
    sys.stdout.write("\n")
    sys.stdout.flush()


def emit(data: Mapping[str, Any], *, as_json: bool, human: Any = None) -> None:
    """Print ``data`` as JSON, or ``human`` (a rich renderable or str) for people."""
    if as_json:
        emit_json(data)
    elif human is not None:
        console.print(human)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    grid = Table(title=title, show_lines=False, header_style="bold")
    for name in columns:
        numeric = name.lower() in {
            "requests",
            "tokens",
            "input",
            "output",
            "cached",
            "cost",
            "balance",
            "available",
            "pending",
            "posted",
            "amount",
            "count",
            "total",
        }
        grid.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    return grid


def fail(error: CiyuanError | str, *, as_json: bool, exit_code: int = 1) -> NoReturn:
    """Report an operating error and exit: JSON on stderr under --json, red text otherwise."""
    code = error.code if isinstance(error, CiyuanError) else "error"
    message = error.message if isinstance(error, CiyuanError) else error
    if as_json:
        sys.stderr.write(
            orjson.dumps({"error": {"code": code, "message": message}}).decode() + "\n"
        )
    else:
        err_console.print(f"[red]error[/red] ({code}): {message}")
    raise typer.Exit(exit_code)

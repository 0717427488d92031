"""``ciyuan count``: model tokens of files, stdin, or a whole API request body.

    ciyuan count notes.md chapter2.md           per-file counts and a total
    cat prompt.txt | ciyuan count --model gpt-4  stdin (also as the file name "-")
    ciyuan count --chat request.json            a chat completions body, broken down
    ciyuan count --chat body.json --api anthropic_messages
    ciyuan count --chat body.json --fetch-images  size http(s) images from their headers

With ``--json`` it prints one JSON object. An estimate (a model with no known tokenizer) is
always labelled as one, with its rule.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Group
from rich.text import Text

from ciyuan.cli.output import JsonOption, emit, fail, table
from ciyuan.errors import CiyuanError, InvalidRequest
from ciyuan.tokens import APIS, count_request, count_texts, encoding_name_for
from ciyuan.tokens.media_fetch import fetch_image_sizes, remote_image_urls

DEFAULT_MODEL = "gpt-4o"


def _read_text(name: str) -> str:
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {name}: {exc.strerror}", param="files") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{name} is not UTF-8 text", param="files") from exc


def _count_files(model: str, names: list[str], as_json: bool) -> None:
    texts = [_read_text(name) for name in names]
    counts = count_texts(model, texts)
    total = sum(count.tokens for count in counts)
    exact = all(count.exact for count in counts)
    rules = sorted({count.rule for count in counts if count.rule})
    data: dict[str, Any] = {
        "model": model,
        "encoding": counts[0].encoding if counts else encoding_name_for(model),
        "exact": exact,
        "files": [
            {"path": name, "tokens": count.tokens, "exact": count.exact}
            for name, count in zip(names, counts, strict=True)
        ],
        "total": total,
    }
    if rules:
        data["estimate_rules"] = rules
    rows: list[list[Any]] = [
        [name, count.tokens] for name, count in zip(names, counts, strict=True)
    ]
    if len(names) > 1:
        rows.append(["total", total])
    label = "exact" if exact else "estimate: " + "; ".join(rules)
    grid = table(f"{model} ({data['encoding']})", ["File", "Tokens"], rows)
    emit(data, as_json=as_json, human=Group(grid, Text(label)))


def _count_body(model: str | None, path: str, api: str, as_json: bool, fetch: bool) -> None:
    raw = sys.stdin.buffer.read() if path == "-" else _read_text(path).encode()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"{path} is not JSON: {exc}", param="chat") from exc
    if not isinstance(body, dict):
        raise InvalidRequest(f"{path} must hold a JSON object", param="chat")
    chosen = model or body.get("model") or DEFAULT_MODEL
    if not isinstance(chosen, str):
        raise InvalidRequest("model must be a string", param="model")
    sizes = fetch_image_sizes(remote_image_urls(body)) if fetch else None
    result = count_request(chosen, body, api=api, image_sizes=sizes)
    parts = ("text", "images", "audio", "tools", "overhead")
    data: dict[str, Any] = {"model": chosen, "api": api, "encoding": result.encoding}
    data.update({part: getattr(result, part) for part in parts})
    data.update({"total": result.total, "exact": result.exact, "notes": list(result.notes)})
    rows: list[list[Any]] = [[part, getattr(result, part)] for part in parts]
    rows.append(["total", result.total])
    label = "exact" if result.exact else "estimate:\n  " + "\n  ".join(result.notes)
    grid = table(f"{chosen} {api} ({result.encoding})", ["Part", "Tokens"], rows)
    emit(data, as_json=as_json, human=Group(grid, Text(label)))


def register(app: typer.Typer) -> None:
    """Add ``count`` to the root ``ciyuan`` app."""

    @app.command("count")
    def count(
        files: Annotated[
            list[str] | None,
            typer.Argument(help="Text files to count; '-' or none: standard input."),
        ] = None,
        model: Annotated[
            str | None,
            typer.Option("--model", "-m", help=f"Model whose tokenizer counts ({DEFAULT_MODEL})."),
        ] = None,
        chat: Annotated[
            str | None,
            typer.Option(help="A request body (JSON file or '-'): count it as a whole request."),
        ] = None,
        api: Annotated[
            str, typer.Option(help=f"API of the --chat body: {', '.join(APIS)}.")
        ] = "chat",
        fetch_images: Annotated[
            bool,
            typer.Option(
                help="Fetch the first 64 KiB of http(s) images (5 s timeout) to size them."
            ),
        ] = False,
        as_json: bool = JsonOption,
    ) -> None:
        """Count model tokens of files or stdin, or of a whole request body (--chat)."""
        try:
            if api not in APIS:
                raise InvalidRequest(f"--api must be one of {', '.join(APIS)}", param="api")
            if chat is not None:
                if files:
                    raise InvalidRequest("give either FILE arguments or --chat, not both")
                _count_body(model, chat, api, as_json, fetch_images)
            else:
                _count_files(model or DEFAULT_MODEL, files or ["-"], as_json)
        except CiyuanError as error:
            fail(error, as_json=as_json)

"""``ciyuan cost``: what a call would cost, itemised, and what the gateway would reserve for it.

Token counts come from the options, or for ``--chat request.json`` from the offline token
counter (the body's ``max_completion_tokens``/``max_tokens`` bound the output unless
``--output-tokens`` is given). The cost uses the same code as the gateway's settlement.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any

import typer

from ciyuan.cli.output import JsonOption, emit, fail, table
from ciyuan.cli.prices import DEFAULT_PRICES_FILE, PricesFileOption
from ciyuan.errors import CiyuanError, InvalidRequest, UnknownModel
from ciyuan.pricing.catalog import Catalog
from ciyuan.pricing.cost import cost_of, worst_case_cost
from ciyuan.pricing.money import nanos_per_token_to_per_million
from ciyuan.pricing.usage import Usage
from ciyuan.tokens import count_request


def cost(
    model: Annotated[str, typer.Argument(help="Model name as clients send it.")],
    input_tokens: Annotated[int, typer.Option(min=0, help="Uncached input tokens.")] = 0,
    output_tokens: Annotated[
        int | None, typer.Option(min=0, help="Output tokens (reasoning excluded).")
    ] = None,
    cached: Annotated[int, typer.Option(min=0, help="Cached input tokens (reads).")] = 0,
    cache_write: Annotated[int, typer.Option(min=0, help="5-minute cache writes.")] = 0,
    cache_write_1h: Annotated[int, typer.Option(min=0, help="1-hour cache writes.")] = 0,
    reasoning: Annotated[int, typer.Option(min=0, help="Reasoning tokens.")] = 0,
    audio_input: Annotated[int, typer.Option(min=0, help="Audio input tokens.")] = 0,
    audio_output: Annotated[int, typer.Option(min=0, help="Audio output tokens.")] = 0,
    chat: Annotated[
        Path | None,
        typer.Option(help="A Chat Completions request body (JSON): count its input tokens."),
    ] = None,
    batch: Annotated[bool, typer.Option(help="Price at the batch API's discount.")] = False,
    at: Annotated[
        str | None, typer.Option(help="Price in force on this date (YYYY-MM-DD).")
    ] = None,
    prices_file: Annotated[Path, PricesFileOption] = DEFAULT_PRICES_FILE,
    as_json: bool = JsonOption,
) -> None:
    """Estimate the cost of a call to MODEL, line by line."""
    try:
        catalog = Catalog.load(operator_file=prices_file)
        when = _moment(at)
        price = catalog.price_for(model, when)
        if price is None:
            raise UnknownModel(f"no price for model {model!r} in the catalog")
        counted: dict[str, Any] | None = None
        if chat is not None:
            body = _read_body(chat)
            request_count = count_request(model, body, api="chat")
            input_tokens += request_count.total
            counted = {"input_tokens": request_count.total, "exact": request_count.exact}
            if output_tokens is None:
                output_tokens = _max_output(body)
        usage = Usage(
            input_tokens=input_tokens,
            cache_read_tokens=cached,
            cache_write_5m_tokens=cache_write,
            cache_write_1h_tokens=cache_write_1h,
            output_tokens=output_tokens or 0,
            reasoning_tokens=reasoning,
            audio_input_tokens=audio_input,
            audio_output_tokens=audio_output,
        )
        result = cost_of(usage, price, batch=batch)
        reserve = worst_case_cost(price, usage.input_total, usage.output_total)
    except CiyuanError as error:
        fail(error, as_json=as_json)
    data = {
        **result.to_dict(),
        "requested_model": model,
        "usage": usage.as_dict(),
        "reservation": str(reserve),
        "reservation_nanos": reserve.nanos,
        "source": price.source,
    }
    if counted is not None:
        data["counted"] = counted
    human = table(
        f"{price.model} (price from {price.effective_from.isoformat()}): {result.total} USD",
        ["bucket", "tokens", "USD per M", "amount"],
        [
            (
                line.bucket,
                line.tokens or "",
                nanos_per_token_to_per_million(line.unit_nanos) if line.unit_nanos else "",
                str(line.amount),
            )
            for line in result.lines
        ],
    )
    emit(data, as_json=as_json, human=human)


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(f"--at {text!r} is not a date (YYYY-MM-DD)", param="at") from None


def _read_body(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read {path}: {exc}", param="chat") from exc
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{path} is not valid JSON: {exc}", param="chat") from exc
    if not isinstance(body, dict):
        raise InvalidRequest(f"{path} must hold a JSON object (a request body)", param="chat")
    return body


def _max_output(body: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if type(value) is int and value >= 0:
            return value
    return 0


def register(app: typer.Typer) -> None:
    app.command("cost")(cost)

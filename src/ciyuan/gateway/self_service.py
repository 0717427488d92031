"""Self-service for a key holder: its own balance and usage, with its own API key.

Both routes read only the account the presented key belongs to: there is no parameter that
names an account or a key, so no value a caller sends can reach another account's data. Errors
are in OpenAI's format (the app's handler renders them), like every other ``/v1`` route.
"""

from __future__ import annotations

from typing import Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ciyuan.admin.reports import event_to_json, parse_group_by, parse_time_us, row_to_json
from ciyuan.errors import InvalidRequest
from ciyuan.gateway.request_parsing import api_key_of
from ciyuan.gateway.runtime import Runtime
from ciyuan.pricing.money import CURRENCY

SELF_GROUPS: Final = ("model", "api", "day", "hour", "status", "key")
"""What a key holder may group by: nothing that names the operator's upstreams."""
RECENT_SELF_MAX: Final = 100


def _json(body: object) -> Response:
    return Response(
        orjson.dumps(body), headers={"cache-control": "no-store"}, media_type="application/json"
    )


async def balance(request: Request) -> Response:
    """``GET /v1/ciyuan/balance``: the caller's account balance, in exact decimal strings."""
    runtime: Runtime = request.app.state.runtime
    api_key = await runtime.authenticate(api_key_of(request))
    found = await runtime.in_store(runtime.metering.store.balance, api_key.account_id)
    return _json(
        {
            "object": "ciyuan.balance",
            "account": api_key.account_name,
            "currency": CURRENCY,
            "available": str(found.available),
            "posted": str(found.posted),
            "pending": str(found.pending),
        }
    )


async def usage(request: Request) -> Response:
    """``GET /v1/ciyuan/usage``: the caller's usage, grouped (default by model), plus with
    ``?recent=N`` its newest requests and their receipt ids."""
    runtime: Runtime = request.app.state.runtime
    api_key = await runtime.authenticate(api_key_of(request))
    query = request.query_params
    group_by = parse_group_by(query.get("group_by", "model"), SELF_GROUPS)
    since_us = parse_time_us(query.get("since"), "since")
    until_us = parse_time_us(query.get("until"), "until")
    recent_text = query.get("recent", "0")
    if not recent_text.isdigit() or int(recent_text) > RECENT_SELF_MAX:
        raise InvalidRequest(
            f"recent must be an integer from 0 to {RECENT_SELF_MAX}", param="recent"
        )
    store = runtime.metering.store
    rows = await runtime.in_store(
        store.usage_report,
        group_by=group_by,
        since_us=since_us,
        until_us=until_us,
        account_id=api_key.account_id,
    )
    body: dict[str, object] = {
        "object": "ciyuan.usage",
        "account": api_key.account_name,
        "currency": CURRENCY,
        "group_by": group_by,
        "since_us": since_us,
        "until_us": until_us,
        "data": [row_to_json(row) for row in rows],
    }
    if int(recent_text):
        events = await runtime.in_store(
            store.recent_usage, account_id=api_key.account_id, limit=int(recent_text)
        )
        body["recent"] = [event_to_json(e) for e in events]
    return _json(body)


def routes() -> list[Route]:
    return [
        Route("/v1/ciyuan/balance", balance, methods=["GET"]),
        Route("/v1/ciyuan/usage", usage, methods=["GET"]),
    ]

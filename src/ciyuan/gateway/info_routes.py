"""Routes that answer locally, charge nothing, and still require a valid key: the model list and
Anthropic's token counter."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ciyuan.errors import InvalidRequest
from ciyuan.gateway.request_parsing import api_key_of, parse_json_object, read_body, required_model
from ciyuan.gateway.runtime import Runtime
from ciyuan.tokens import count_request


async def list_models(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    api_key = await runtime.authenticate(api_key_of(request))
    catalog = runtime.router.catalog
    if "anthropic-version" in request.headers:
        names = runtime.metering.allowed_models(api_key, runtime.router.models("anthropic"))
        data = [
            {"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z"}
            for n in names
        ]
        body = {
            "data": data,
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
        return Response(orjson.dumps(body), media_type="application/json")
    listed: list[dict[str, object]] = []
    for name in runtime.metering.allowed_models(api_key, runtime.router.models("openai")):
        price = catalog.price_for(name)
        listed.append(
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": price.provider if price else "ciyuan",
            }
        )
    return Response(orjson.dumps({"object": "list", "data": listed}), media_type="application/json")


async def receipt(request: Request) -> Response:
    """``GET /v1/ciyuan/receipts/{request_id}``: the caller's own receipt, checkable offline.

    Another account's request id answers 404 exactly like an unknown one.
    """
    runtime: Runtime = request.app.state.runtime
    api_key = await runtime.authenticate(api_key_of(request))
    request_id = request.path_params["request_id"]
    if not 1 <= len(request_id) <= 64:
        raise InvalidRequest("request id must be 1 to 64 characters", param="request_id")
    found = await runtime.in_store(
        runtime.metering.store.receipt, request_id, account_id=api_key.account_id
    )
    return Response(orjson.dumps(found), media_type="application/json")


async def count_tokens(request: Request) -> Response:
    """Anthropic's ``/v1/messages/count_tokens``, answered from the local counter."""
    runtime: Runtime = request.app.state.runtime
    await runtime.authenticate(api_key_of(request))
    raw = await read_body(request, runtime.limits.body_bytes_max, runtime.limits.body_timeout_s)
    body = parse_json_object(raw)
    model = required_model(body)
    runtime.router.resolve(model, "anthropic")
    counted = count_request(model, body, api="anthropic_messages")
    return Response(orjson.dumps({"input_tokens": counted.total}), media_type="application/json")

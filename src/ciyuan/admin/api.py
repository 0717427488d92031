"""The admin HTTP API under ``/admin/``: accounts, grants, keys, usage, requests, prices, ledger.

Every route but the OpenAPI document needs ``Authorization: Bearer <admin key>``; a client API
key is refused like any wrong key. A session cookie from the dashboard is *not* accepted here,
so a cross-site form can never reach the JSON API with the operator's cookie. Errors have one
shape, ``{"error": {"code", "message"}}``, with the codes and statuses of ``ciyuan.errors``.
Handlers parse, call the store on its executor and format: no ledger or pricing logic here.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ciyuan import apikeys
from ciyuan.admin.auth import AdminAuth, AdminConfig
from ciyuan.admin.openapi import OPENAPI
from ciyuan.admin.reports import (
    RECENT_MAX,
    event_to_json,
    parse_group_by,
    parse_time_us,
    row_to_json,
)
from ciyuan.admin.views import account_json, key_json, price_json
from ciyuan.errors import AuthenticationFailed, CiyuanError, InvalidRequest, NotFound
from ciyuan.gateway.request_parsing import parse_json_object, read_body
from ciyuan.gateway.runtime import Runtime
from ciyuan.gateway.wire_errors import status_of
from ciyuan.pricing.money import CURRENCY, Amount, MoneyError

log = logging.getLogger("ciyuan.admin")
ADMIN_BODY_BYTES_MAX: Final = 64 * 1024
IDEMPOTENCY_KEY_CHARS_MAX: Final = 128
LABEL_CHARS_MAX: Final = 200
_BOOLEAN: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def json_response(data: object, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data),
        status,
        headers={"cache-control": "no-store"},
        media_type="application/json",
    )


def error_response(error: CiyuanError) -> Response:
    response = json_response(
        {"error": {"code": error.code, "message": error.message}}, status_of(error)
    )
    if isinstance(error, AuthenticationFailed):
        response.headers["www-authenticate"] = 'Bearer realm="ciyuan-admin"'
    return response


async def _on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CiyuanError)
    return error_response(exc)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(CiyuanError("internal error"))


async def _on_http(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, in the API's error shape."""
    assert isinstance(exc, HTTPException)
    code = "not_found" if exc.status_code == 404 else "invalid_request"
    message = f"no admin route {request.method} {request.url.path}"
    return json_response({"error": {"code": code, "message": message}}, exc.status_code)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _require_admin(request: Request) -> None:
    auth: AdminAuth = request.app.state.auth
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationFailed("the admin API needs Authorization: Bearer <admin key>")
    if not auth.is_admin_key(value.strip()):
        raise AuthenticationFailed("invalid admin key")


async def _body(request: Request) -> dict[str, Any]:
    raw = await read_body(request, ADMIN_BODY_BYTES_MAX, _runtime(request).limits.body_timeout_s)
    return parse_json_object(raw)


def _text(body: dict[str, Any], name: str, *, required: bool, chars_max: int) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > chars_max:
        raise InvalidRequest(f"{name} must be a string of 1 to {chars_max} characters", param=name)
    return value.strip()


def _amount(value: object, name: str) -> Amount:
    if not isinstance(value, str):
        raise InvalidRequest(f'{name} must be a decimal string such as "10.00"', param=name)
    try:
        return Amount.parse(value)
    except MoneyError as error:
        raise InvalidRequest(f"{name}: {error}", param=name) from None


def _limit(request: Request, default: int = 50) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= RECENT_MAX:
        raise InvalidRequest(f"limit must be an integer from 1 to {RECENT_MAX}", param="limit")
    return int(text)


# ---- accounts and grants ------------------------------------------------------------------


async def list_accounts(request: Request) -> Response:
    _require_admin(request)
    runtime = _runtime(request)
    accounts = await runtime.in_store(runtime.metering.store.list_accounts)
    return json_response(
        {"currency": CURRENCY, "data": [account_json(account) for account in accounts]}
    )


async def create_account(request: Request) -> Response:
    _require_admin(request)
    body = await _body(request)
    name = _text(body, "name", required=True, chars_max=64)
    assert name is not None
    runtime = _runtime(request)
    account = await runtime.in_store(runtime.metering.store.create_account, name)
    return json_response(account_json(account), 201)


async def get_account(request: Request) -> Response:
    _require_admin(request)
    runtime = _runtime(request)
    store = runtime.metering.store
    account = await runtime.in_store(store.get_account, request.path_params["account"])
    keys = await runtime.in_store(store.list_api_keys, account.id)
    return json_response({**account_json(account), "api_keys": [key_json(k) for k in keys]})


async def grant(request: Request) -> Response:
    """Add credit. An idempotency key is required: a retried grant must never pay twice."""
    _require_admin(request)
    body = await _body(request)
    # Both places are checked when both are given: a body key that would be silently ignored
    # could make a client believe two different grants are distinct.
    given = [request.headers.get("idempotency-key"), body.get("idempotency_key")]
    keys = [key for key in given if key is not None]
    if not keys or any(
        not isinstance(key, str) or not 1 <= len(key) <= IDEMPOTENCY_KEY_CHARS_MAX for key in keys
    ):
        raise InvalidRequest(
            "a grant needs an Idempotency-Key header (or idempotency_key) of 1 to "
            f"{IDEMPOTENCY_KEY_CHARS_MAX} characters",
            param="idempotency_key",
        )
    if len(set(keys)) > 1:
        raise InvalidRequest(
            "the Idempotency-Key header and idempotency_key differ", param="idempotency_key"
        )
    idempotency_key = str(keys[0])
    amount = _amount(body.get("amount"), "amount")
    expires_at = body.get("expires_at")
    if expires_at is not None and not isinstance(expires_at, str):
        # parse_time_us reads text: any other JSON value is the client's mistake, not a 500.
        raise InvalidRequest(
            "expires_at must be a date (2026-11-01) or an ISO 8601 time string",
            param="expires_at",
        )
    expires_us = parse_time_us(expires_at, "expires_at")
    runtime = _runtime(request)
    store = runtime.metering.store
    account = await runtime.in_store(store.get_account, request.path_params["account"])
    transfer = await runtime.in_store(
        store.grant,
        account.id,
        amount,
        idempotency_key=f"admin-grant:{idempotency_key}",
        expires_us=expires_us,
    )
    balance = await runtime.in_store(store.balance, account.id)
    return json_response(
        {
            "transfer_id": transfer.id,
            "account_id": account.id,
            "amount": str(transfer.amount),
            "created_us": transfer.created_us,
            "expires_us": expires_us,
            "available": str(balance.available),
        },
        201,
    )


# ---- api keys -----------------------------------------------------------------------------


async def list_keys(request: Request) -> Response:
    _require_admin(request)
    runtime = _runtime(request)
    store = runtime.metering.store
    account_id = None
    if account := request.query_params.get("account"):
        account_id = (await runtime.in_store(store.get_account, account)).id
    keys = await runtime.in_store(store.list_api_keys, account_id)
    prefix = request.query_params.get("prefix", "")
    return json_response({"data": [key_json(k) for k in keys if k.prefix.startswith(prefix)]})


async def create_key(request: Request) -> Response:
    """Issue a key. Its secret is in this response only: it is stored as a hash."""
    _require_admin(request)
    body = await _body(request)
    account_ref = _text(body, "account", required=True, chars_max=64)
    label = _text(body, "label", required=False, chars_max=LABEL_CHARS_MAX)
    assert account_ref is not None
    runtime = _runtime(request)
    store = runtime.metering.store
    account = await runtime.in_store(store.get_account, account_ref)
    record = await create_api_key(runtime, account.id, label)
    return json_response(record, 201)


async def create_api_key(runtime: Runtime, account_id: str, label: str | None) -> dict[str, Any]:
    """Shared with the dashboard: a new key's record with its secret, shown this once."""
    store = runtime.metering.store
    account = await runtime.in_store(store.get_account, account_id)
    if account.kind.value != "customer":
        raise InvalidRequest("keys are issued to customer accounts only", param="account")
    new = apikeys.generate()
    record = await runtime.in_store(
        store.create_api_key, account.id, new.prefix, new.hash_hex, label
    )
    return {**key_json(record), "key": new.secret.reveal()}


async def revoke_key(request: Request) -> Response:
    _require_admin(request)
    runtime = _runtime(request)
    record = await runtime.in_store(
        runtime.metering.store.revoke_api_key, request.path_params["key"]
    )
    await runtime.announce_revocation(record.prefix)
    return json_response(key_json(record))


# ---- usage, requests, prices, ledger ------------------------------------------------------


async def usage(request: Request) -> Response:
    _require_admin(request)
    runtime = _runtime(request)
    store = runtime.metering.store
    query = request.query_params
    group_by = parse_group_by(query.get("group_by", "model"))
    since_us = parse_time_us(query.get("since"), "since")
    until_us = parse_time_us(query.get("until"), "until")
    account_id = None
    if account := query.get("account"):
        account_id = (await runtime.in_store(store.get_account, account)).id
    rows = await runtime.in_store(
        store.usage_report,
        group_by=group_by,
        since_us=since_us,
        until_us=until_us,
        account_id=account_id,
    )
    return json_response(
        {
            "group_by": group_by,
            "since_us": since_us,
            "until_us": until_us,
            "account_id": account_id,
            "currency": CURRENCY,
            "data": [row_to_json(row) for row in rows],
        }
    )


async def requests_recent(request: Request) -> Response:
    _require_admin(request)
    runtime = _runtime(request)
    store = runtime.metering.store
    account_id = None
    if account := request.query_params.get("account"):
        account_id = (await runtime.in_store(store.get_account, account)).id
    events = await runtime.in_store(
        store.recent_usage, account_id=account_id, limit=_limit(request)
    )
    return json_response({"data": [{**event_to_json(e), "upstream": e.upstream} for e in events]})


async def request_receipt(request: Request) -> Response:
    _require_admin(request)
    runtime = _runtime(request)
    request_id = request.path_params["request_id"]
    if not 1 <= len(request_id) <= 64:
        raise InvalidRequest("request id must be 1 to 64 characters", param="request_id")
    found = await runtime.in_store(runtime.metering.store.receipt, request_id)
    return json_response(found)


async def prices(request: Request) -> Response:
    _require_admin(request)
    catalog = _runtime(request).router.catalog
    operator = set(catalog.operator_prices)
    return json_response(
        {"currency": CURRENCY, "data": [price_json(p, p in operator) for p in catalog.current()]}
    )


async def ledger_verify(request: Request) -> Response:
    """Walk the hash chain: from the newest checkpoint (cheap) or, with ``?full=true``, all."""
    _require_admin(request)
    runtime = _runtime(request)
    text = request.query_params.get("full", "false").lower()
    if text not in _BOOLEAN:
        # A typo (full=ture) must not silently run the cheap check the operator did not ask for.
        raise InvalidRequest("full must be true or false", param="full")
    full = _BOOLEAN[text]
    report = await runtime.in_store(runtime.metering.store.verify_chain, from_checkpoint=not full)
    return json_response({**report.to_dict(), "full": full})


async def openapi(request: Request) -> Response:
    """The OpenAPI 3 document of this API: public, it holds no secret."""
    return json_response(OPENAPI)


def api_routes() -> list[Route]:
    """Every admin route (paths relative to ``/admin``); the OpenAPI test checks this list."""
    return [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/accounts", list_accounts, methods=["GET"]),
        Route("/accounts", create_account, methods=["POST"]),
        Route("/accounts/{account}", get_account, methods=["GET"]),
        Route("/accounts/{account}/grants", grant, methods=["POST"]),
        Route("/keys", list_keys, methods=["GET"]),
        Route("/keys", create_key, methods=["POST"]),
        Route("/keys/{key}/revoke", revoke_key, methods=["POST"]),
        Route("/usage", usage, methods=["GET"]),
        Route("/requests", requests_recent, methods=["GET"]),
        Route("/requests/{request_id}/receipt", request_receipt, methods=["GET"]),
        Route("/prices", prices, methods=["GET"]),
        Route("/ledger/verify", ledger_verify, methods=["GET"]),
    ]


def _disabled(reason: str) -> Starlette:
    async def refuse(request: Request) -> Response:
        return error_response(NotFound(reason))

    return Starlette(
        routes=[
            Route(
                "/{path:path}",
                refuse,
                methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            )
        ]
    )


def admin_api(runtime: Runtime, config: AdminConfig) -> Starlette:
    """The app mounted at ``/admin``; answers 404 with the reason when no admin key is set."""
    if config.key is None:
        reason = config.disabled_reason
        assert reason is not None
        return _disabled(reason)
    app = Starlette(
        routes=api_routes(),
        exception_handlers={
            CiyuanError: _on_error,
            HTTPException: _on_http,
            Exception: _on_unexpected,
        },
    )
    app.state.runtime = runtime
    app.state.auth = AdminAuth(
        config.key, session_ttl_s=config.session_ttl_s, clock=runtime.metering.clock
    )
    return app

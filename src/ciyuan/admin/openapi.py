"""The OpenAPI 3.1 document of the admin API, written by hand next to the routes it describes.

``tests/admin`` validates it with ``openapi-spec-validator`` and checks that every route of
``admin_api`` appears in it, so the two cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any, Final


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(description: str, schema: dict[str, Any], status: str = "200") -> dict[str, Any]:
    errors = {
        code: {"$ref": f"#/components/responses/{name}"}
        for code, name in (("400", "BadRequest"), ("401", "Unauthorized"), ("404", "NotFound"))
    }
    return {status: {"description": description, "content": _json(schema)}, **errors}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _list_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "array", "items": _ref(name)}},
    }


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_MONEY: Final = {"type": "string", "pattern": r"^-?\d+\.\d{2,9}$", "examples": ["10.00"]}
_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
_COUNT: Final = {"type": "integer", "minimum": 0}
_MS: Final = {"type": ["integer", "null"], "minimum": 0}
_ACCOUNT_PARAM: Final = _path("account", "Account id (acc_…) or name.")
_SINCE: Final = _query("since", "From this date (UTC) or ISO 8601 time, inclusive.")
_UNTIL: Final = _query("until", "Until this date (UTC) or ISO 8601 time, exclusive.")
_BY_ACCOUNT: Final = _query("account", "Only this account (id or name).")

_SCHEMAS: Final[dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Balance": {
        "type": "object",
        "required": ["posted", "pending", "available"],
        "properties": {"posted": _MONEY, "pending": _MONEY, "available": _MONEY},
    },
    "Account": {
        "type": "object",
        "required": ["id", "name", "kind", "created_at", "balance"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["customer", "funding", "revenue", "expiry"]},
            "created_at": _TIME,
            "floor": {"type": ["string", "null"]},
            "balance": _ref("Balance"),
            "api_keys": {"type": "array", "items": _ref("ApiKey")},
        },
    },
    "NewAccount": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 64}},
    },
    "NewGrant": {
        "type": "object",
        "required": ["amount"],
        "properties": {
            "amount": _MONEY,
            "idempotency_key": {
                "type": ["string", "null"],
                "maxLength": 128,
                "description": "Or the Idempotency-Key header; one of the two is required.",
            },
            "expires_at": {
                "type": ["string", "null"],
                "description": "Unspent credit expires then (a date or ISO 8601 time).",
            },
        },
    },
    "Grant": {
        "type": "object",
        "required": ["transfer_id", "account_id", "amount", "available"],
        "properties": {
            "transfer_id": {"type": "string"},
            "account_id": {"type": "string"},
            "amount": _MONEY,
            "created_us": {"type": "integer"},
            "expires_us": {"type": ["integer", "null"]},
            "available": _MONEY,
        },
    },
    "ApiKey": {
        "type": "object",
        "required": ["id", "prefix", "account_id", "active"],
        "properties": {
            "id": {"type": "string"},
            "prefix": {"type": "string"},
            "account_id": {"type": "string"},
            "account_name": {"type": "string"},
            "label": {"type": ["string", "null"]},
            "created_at": _TIME,
            "revoked_at": _TIME,
            "expires_at": _TIME,
            "active": {"type": "boolean"},
        },
    },
    "NewApiKey": {
        "type": "object",
        "required": ["account"],
        "properties": {
            "account": {"type": "string", "description": "Account id or name."},
            "label": {"type": "string", "maxLength": 200},
        },
    },
    "CreatedApiKey": {
        "allOf": [
            _ref("ApiKey"),
            {
                "type": "object",
                "required": ["key"],
                "properties": {
                    "key": {"type": "string", "description": "The secret: shown this once only."}
                },
            },
        ]
    },
    "ReportRow": {
        "type": "object",
        "required": ["group", "requests", "cost"],
        "properties": {
            "group": {"type": "object", "additionalProperties": {"type": "string"}},
            "requests": _COUNT,
            "errors": _COUNT,
            "input_tokens": _COUNT,
            "cached_tokens": _COUNT,
            "output_tokens": _COUNT,
            "reasoning_tokens": _COUNT,
            "cost": _MONEY,
            "latency_ms_p50": _MS,
            "latency_ms_p99": _MS,
            "ttft_ms_p50": _MS,
        },
    },
    "UsageEvent": {
        "type": "object",
        "required": ["request_id", "created_at", "account_id", "model", "status", "cost"],
        "properties": {
            "request_id": {"type": "string", "description": "Also the receipt id."},
            "created_at": _TIME,
            "account_id": {"type": "string"},
            "api_key_id": {"type": "string"},
            "api": {"type": "string"},
            "model": {"type": "string"},
            "upstream": {"type": "string"},
            "status": {"type": "string", "enum": ["ok", "error", "partial"]},
            "http_status": {"type": "integer"},
            "input_tokens": _COUNT,
            "cached_tokens": _COUNT,
            "output_tokens": _COUNT,
            "reasoning_tokens": _COUNT,
            "usage_source": {"type": "string"},
            "cost": _MONEY,
            "latency_ms": _COUNT,
            "ttft_ms": _MS,
            "error_code": {"type": ["string", "null"]},
            "receipt_url": {"type": "string"},
        },
    },
    "Price": {
        "type": "object",
        "required": ["model", "provider", "effective_from", "per_million_tokens"],
        "properties": {
            "model": {"type": "string"},
            "provider": {"type": "string"},
            "effective_from": {"type": "string", "format": "date"},
            "origin": {"type": "string", "enum": ["shipped", "operator"]},
            "per_million_tokens": {"type": "object", "additionalProperties": {"type": "string"}},
            "call_fee": _MONEY,
            "tiers": {"type": "array", "items": {"type": "object"}},
            "source": {"type": "string"},
        },
    },
    "ChainVerification": {
        "type": "object",
        "required": ["ok", "entries_checked", "head_seq", "head_hash"],
        "properties": {
            "ok": {"type": "boolean"},
            "full": {"type": "boolean"},
            "entries_checked": _COUNT,
            "head_seq": _COUNT,
            "head_hash": {"type": "string"},
            "problem": {"type": ["object", "null"]},
        },
    },
}

_ERROR_RESPONSES: Final = {
    name: {"description": description, "content": _json(_ref("Error"))}
    for name, description in (
        ("BadRequest", "A parameter or the body is malformed (code invalid_request)."),
        ("Unauthorized", "No admin key, a wrong one, or a client API key (invalid_api_key)."),
        ("NotFound", "Unknown account, key or request, or the admin API is disabled."),
        ("Conflict", "An idempotency key reused for another grant, or a taken name."),
    )
}

_PATHS: Final[dict[str, Any]] = {
    "/admin/accounts": {
        "get": {
            "operationId": "listAccounts",
            "summary": "Every account with its balance.",
            "responses": _ok("The accounts.", _list_of("Account")),
        },
        "post": {
            "operationId": "createAccount",
            "summary": "Create a customer account.",
            "requestBody": {"required": True, "content": _json(_ref("NewAccount"))},
            "responses": {
                **_ok("The new account.", _ref("Account"), "201"),
                "409": {"$ref": "#/components/responses/Conflict"},
            },
        },
    },
    "/admin/accounts/{account}": {
        "get": {
            "operationId": "getAccount",
            "summary": "One account, its balance and its API keys.",
            "parameters": [_ACCOUNT_PARAM],
            "responses": _ok("The account.", _ref("Account")),
        }
    },
    "/admin/accounts/{account}/grants": {
        "post": {
            "operationId": "grantCredit",
            "summary": "Add prepaid credit; replaying the idempotency key changes nothing.",
            "parameters": [
                _ACCOUNT_PARAM,
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 128},
                },
            ],
            "requestBody": {"required": True, "content": _json(_ref("NewGrant"))},
            "responses": {
                **_ok("The grant.", _ref("Grant"), "201"),
                "409": {"$ref": "#/components/responses/Conflict"},
            },
        }
    },
    "/admin/keys": {
        "get": {
            "operationId": "listKeys",
            "summary": "API keys (never their secrets), by account or prefix.",
            "parameters": [_BY_ACCOUNT, _query("prefix", "Only keys whose prefix starts so.")],
            "responses": _ok("The keys.", _list_of("ApiKey")),
        },
        "post": {
            "operationId": "createKey",
            "summary": "Issue a key; its secret is in this response only.",
            "requestBody": {"required": True, "content": _json(_ref("NewApiKey"))},
            "responses": _ok("The key with its secret.", _ref("CreatedApiKey"), "201"),
        },
    },
    "/admin/keys/{key}/revoke": {
        "post": {
            "operationId": "revokeKey",
            "summary": "Revoke a key (by prefix or id); repeating it changes nothing.",
            "parameters": [_path("key", "Key prefix (ck-…) or id (key_…).")],
            "responses": _ok("The revoked key.", _ref("ApiKey")),
        }
    },
    "/admin/usage": {
        "get": {
            "operationId": "usageReport",
            "summary": "Totals grouped by any of account, key, model, provider, upstream, api, "
            "day, hour, status.",
            "parameters": [
                _query("group_by", "Comma-separated group names (default: model)."),
                _SINCE,
                _UNTIL,
                _BY_ACCOUNT,
            ],
            "responses": _ok("The report.", _list_of("ReportRow")),
        }
    },
    "/admin/requests": {
        "get": {
            "operationId": "recentRequests",
            "summary": "The newest metered requests, with their request (receipt) ids.",
            "parameters": [
                _BY_ACCOUNT,
                _query("limit", "How many (1 to 500).", type="integer", minimum=1, maximum=500),
            ],
            "responses": _ok("The requests, newest first.", _list_of("UsageEvent")),
        }
    },
    "/admin/requests/{request_id}/receipt": {
        "get": {
            "operationId": "getReceipt",
            "summary": "A request's receipt, verifiable offline.",
            "parameters": [_path("request_id", "The request id.")],
            "responses": _ok("The receipt.", {"type": "object"}),
        }
    },
    "/admin/prices": {
        "get": {
            "operationId": "listPrices",
            "summary": "The price in force for every model.",
            "responses": _ok("The catalog.", _list_of("Price")),
        }
    },
    "/admin/ledger/verify": {
        "get": {
            "operationId": "verifyLedger",
            "summary": "Check the hash chain from the newest checkpoint, or all of it.",
            "parameters": [_query("full", "true: walk the whole chain.", type="boolean")],
            "responses": _ok("The verification.", _ref("ChainVerification")),
        }
    },
}

OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Ciyuan admin API",
        "version": "1",
        "description": "Operator API of the Ciyuan gateway. Amounts are exact decimal strings "
        "in USD. Authenticate with Authorization: Bearer <admin key>.",
    },
    "servers": [{"url": "/"}],
    "security": [{"adminKey": []}],
    "paths": _PATHS,
    "components": {
        "securitySchemes": {"adminKey": {"type": "http", "scheme": "bearer"}},
        "schemas": _SCHEMAS,
        "responses": _ERROR_RESPONSES,
    },
}

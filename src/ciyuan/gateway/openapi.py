"""The OpenAPI 3.1 document of the client API under ``/v1``, served at
``/v1/ciyuan/openapi.json`` (public: it holds no secret, like the admin one).

It is deliberately compact: the request bodies list the fields the gateway itself reads and
checks (``model``, the output limit, ``n``, ``stream``, ``stream_options``, the message list),
and leave every other field to the provider, so ``additionalProperties`` stays open. Responses
describe what the gateway adds (its ``x-ciyuan-*`` headers) and its error bodies, in OpenAI's
shape on the OpenAI routes and Anthropic's on ``/v1/messages``. ``tests/fuzz`` validates it
with ``openapi-spec-validator``, checks that it covers every ``/v1`` route, and fuzzes the
running gateway from it.
"""

from __future__ import annotations

from typing import Any, Final

from ciyuan.gateway.apis import CHOICES_MAX

MODEL_CHARS_MAX: Final = 256
"""``request_parsing.required_model``'s bound."""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(schema: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    described = {
        "400": "Malformed body or parameter (invalid_request_error).",
        "401": "No API key, or an unknown, revoked or expired one.",
        "402": "The balance or a budget cannot cover the worst-case cost.",
        "403": "The key may not use this model or API.",
        "404": "Unknown model, or a receipt of no request of this account.",
        "409": "An idempotency key reused with another body.",
        "413": "The body exceeds the gateway's size limit.",
        "429": "A rate or concurrency limit; retry-after says when to retry.",
        "502": "The provider failed; nothing was charged.",
        "503": "The database is unreachable; nothing was charged.",
        "504": "The provider did not answer in time; nothing was charged.",
    }
    return {
        status: {"description": described[status], "content": _json(_ref(schema))}
        for status in statuses
    }


_CLIENT_ERRORS: Final = ("400", "401", "403", "404", "413", "429", "503")
_METERED_ERRORS: Final = (*_CLIENT_ERRORS, "402", "409", "502", "504")

_CHARGE_HEADERS: Final = {
    "x-ciyuan-request-id": {
        "description": "The request id, also the receipt id.",
        "schema": {"type": "string"},
    },
    "x-ciyuan-cost": {
        "description": "This call's charge in USD, an exact decimal (absent on a stream, whose "
        "final usage event carries it).",
        "schema": {"type": "string", "pattern": r"^-?\d+\.\d+$"},
    },
    "x-ciyuan-balance": {
        "description": "The available balance after this call, in USD.",
        "schema": {"type": "string", "pattern": r"^-?\d+\.\d+$"},
    },
}

_MODEL: Final = {
    "type": "string",
    "minLength": 1,
    "maxLength": MODEL_CHARS_MAX,
    "pattern": r"\S",
    "examples": ["gpt-4o-mini"],
}
_POSITIVE: Final = {"type": ["integer", "null"], "minimum": 1}
"""An output limit: null is the same as absent, as on the providers' own APIs."""
_STREAM: Final = {"type": ["boolean", "null"], "default": False}
_MESSAGES: Final = {
    "type": "array",
    "description": "At most the gateway's messages_max items (10 000 by default).",
    "items": {"type": "object"},
}


def _body(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["model", *required],
        "properties": {"model": _MODEL, **properties},
        "additionalProperties": True,
    }


_SCHEMAS: Final[dict[str, Any]] = {
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "AnthropicError": {
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "ChatRequest": _body(
        ["messages"],
        messages=_MESSAGES,
        max_tokens=_POSITIVE,
        max_completion_tokens=_POSITIVE,
        n={"type": ["integer", "null"], "minimum": 1, "maximum": CHOICES_MAX},
        stream=_STREAM,
        stream_options={"type": ["object", "null"]},
    ),
    "CompletionRequest": _body(
        ["prompt"],
        prompt={"type": ["string", "array"]},
        max_tokens=_POSITIVE,
        n={"type": ["integer", "null"], "minimum": 1, "maximum": CHOICES_MAX},
        stream=_STREAM,
        stream_options={"type": ["object", "null"]},
    ),
    "EmbeddingRequest": _body(
        ["input"],
        input={"type": ["string", "array"]},
        stream={"type": ["boolean", "null"], "enum": [False, None]},
    ),
    "ResponsesRequest": _body(
        ["input"],
        input={"type": ["string", "array"], "items": {"type": "object"}},
        max_output_tokens=_POSITIVE,
        stream=_STREAM,
    ),
    "MessagesRequest": _body(
        ["messages", "max_tokens"],
        messages=_MESSAGES,
        max_tokens=_POSITIVE,
        stream=_STREAM,
    ),
    "CountTokensRequest": _body(["messages"], messages=_MESSAGES),
    "ProviderResponse": {
        "type": "object",
        "description": "The provider's own response body, relayed unchanged.",
    },
    "Balance": {
        "type": "object",
        "required": ["object", "account", "currency", "available", "posted", "pending"],
        "properties": {
            "object": {"const": "ciyuan.balance"},
            "account": {"type": "string"},
            "currency": {"type": "string"},
            "available": {"type": "string"},
            "posted": {"type": "string"},
            "pending": {"type": "string"},
        },
    },
    "Usage": {
        "type": "object",
        "required": ["object", "group_by", "data"],
        "properties": {
            "object": {"const": "ciyuan.usage"},
            "group_by": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "object"}},
            "recent": {"type": "array", "items": {"type": "object"}},
        },
    },
}


def _metered(
    operation_id: str, summary: str, schema: str, *, anthropic: bool = False
) -> dict[str, Any]:
    error_schema = "AnthropicError" if anthropic else "OpenAIError"
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "requestBody": {"required": True, "content": _json(_ref(schema))},
            "responses": {
                "200": {
                    "description": "The provider's response (JSON), or with stream: true its "
                    "server-sent events.",
                    "headers": _CHARGE_HEADERS,
                    "content": {
                        **_json(_ref("ProviderResponse")),
                        "text/event-stream": {
                            # Each event's data is the provider's chunk (JSON) or [DONE].
                            "schema": {"description": "Server-sent events, as the provider's."}
                        },
                    },
                },
                **_errors(error_schema, _METERED_ERRORS),
            },
        }
    }


def _get(operation_id: str, summary: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            **extra,
            "responses": {
                "200": {"description": summary, "content": _json(schema)},
                **_errors("OpenAIError", _CLIENT_ERRORS),
            },
        }
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, **schema}


_PATHS: Final[dict[str, Any]] = {
    "/v1/chat/completions": _metered("createChatCompletion", "OpenAI chat.", "ChatRequest"),
    "/v1/completions": _metered(
        "createCompletion", "OpenAI legacy completions.", "CompletionRequest"
    ),
    "/v1/embeddings": _metered("createEmbedding", "OpenAI embeddings.", "EmbeddingRequest"),
    "/v1/responses": _metered("createResponse", "OpenAI Responses API.", "ResponsesRequest"),
    "/v1/messages": _metered(
        "createMessage", "Anthropic messages.", "MessagesRequest", anthropic=True
    ),
    "/v1/messages/count_tokens": {
        "post": {
            "operationId": "countMessageTokens",
            "summary": "Anthropic's token counter, answered locally; charges nothing.",
            "requestBody": {"required": True, "content": _json(_ref("CountTokensRequest"))},
            "responses": {
                "200": {
                    "description": "The prompt's input tokens.",
                    "content": _json(
                        {
                            "type": "object",
                            "required": ["input_tokens"],
                            "properties": {"input_tokens": {"type": "integer", "minimum": 0}},
                        }
                    ),
                },
                **_errors("AnthropicError", _CLIENT_ERRORS),
            },
        }
    },
    "/v1/models": _get(
        "listModels",
        "The models this key may use.",
        {
            "type": "object",
            "required": ["data"],
            "properties": {"data": {"type": "array", "items": {"type": "object"}}},
        },
    ),
    "/v1/ciyuan/balance": _get("getBalance", "The caller's own balance.", _ref("Balance")),
    "/v1/ciyuan/usage": _get(
        "getUsage",
        "The caller's own usage, grouped.",
        _ref("Usage"),
        parameters=[
            _query(
                "group_by",
                "Comma-separated: model, api, day, hour, status, key.",
                {"schema": {"type": "string"}},
            ),
            _query("since", "From this date or ISO 8601 time.", {"schema": {"type": "string"}}),
            _query("until", "Until this date or ISO 8601 time.", {"schema": {"type": "string"}}),
            _query(
                "recent",
                "Also the newest N requests (0 to 100).",
                {"schema": {"type": "integer", "minimum": 0, "maximum": 100}},
            ),
        ],
    ),
    "/v1/ciyuan/receipts/{request_id}": _get(
        "getReceipt",
        "The caller's own receipt, verifiable offline.",
        {"type": "object"},
        parameters=[
            {
                "name": "request_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 64},
            }
        ],
    ),
}

OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Ciyuan client API",
        "version": "1",
        "description": "The metered, wire-compatible OpenAI and Anthropic routes of a Ciyuan "
        "gateway, and a key holder's own balance, usage and receipts. Send the API key as "
        "Authorization: Bearer <key> or x-api-key: <key>. Only the fields the gateway reads "
        "are described; the rest go to the provider unchanged.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearerKey": []}, {"apiKeyHeader": []}],
    "paths": _PATHS,
    "components": {
        "securitySchemes": {
            "bearerKey": {"type": "http", "scheme": "bearer"},
            "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        },
        "schemas": _SCHEMAS,
    },
}

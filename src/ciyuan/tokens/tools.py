"""Tokens of tool (function) definitions and of the tool calls in a conversation.

Definitions follow the OpenAI cookbook's formula, which it checked against the API's
prompt_tokens (gpt-3.5-turbo and gpt-4: 105; gpt-4o and gpt-4o-mini: 101, for its weather
example): per function ``func_init`` + tokens of ``name:description`` (one final period
dropped); if it has properties, ``prop_init``, and per property ``prop_key`` + tokens of
``key:type:description`` (period dropped), and for an enum ``enum_init`` + per value
``enum_item`` + its tokens; finally ``func_end`` once for the whole list.

The formula knows flat properties only (a type, a description, an enum). A definition with
anything else (nested objects, arrays, defaults, formats) is still counted, with the JSON of
the extra schema added, and labelled an estimate. Tool calls in assistant messages are an
estimate too: name + arguments + 3 per call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ciyuan.errors import InvalidRequest
from ciyuan.tokens.registry import CL100K


@dataclass(frozen=True, slots=True)
class ToolConstants:
    func_init: int
    prop_init: int = 3
    prop_key: int = 3
    enum_init: int = -3
    enum_item: int = 3
    func_end: int = 12


O200K_TOOLS: Final = ToolConstants(func_init=7)
CL100K_TOOLS: Final = ToolConstants(func_init=10)
_FLAT_TYPES: Final = frozenset({"string", "number", "integer", "boolean"})
_FLAT_KEYS: Final = frozenset({"type", "description", "enum"})
_PARAMETER_KEYS: Final = frozenset({"type", "properties", "required", "additionalProperties"})
TOOL_CALL_OVERHEAD: Final = 3


@dataclass(frozen=True, slots=True)
class ToolsTally:
    tokens: int
    exact: bool


def _drop_period(text: str) -> str:
    return text[:-1] if text.endswith(".") else text


def json_text(value: Any) -> str:
    """Compact JSON of a structure the formulas do not know, counted as an estimate."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _function_of(tool: Any, param: str) -> Mapping[str, Any]:
    if not isinstance(tool, Mapping):
        raise InvalidRequest(f"{param} must be an object", param=param)
    function = tool.get("function", tool)  # legacy `functions` items are the function itself
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise InvalidRequest(f"{param}.function.name must be a string", param=f"{param}.function")
    return function


def definitions_tokens(
    tools: Any, count: Callable[[str], int], encoding: str, param: str = "tools"
) -> ToolsTally:
    """Tokens of a ``tools`` (or legacy ``functions``) list."""
    if not isinstance(tools, list):
        raise InvalidRequest(f"{param} must be an array", param=param)
    if not tools:
        return ToolsTally(0, True)
    constants = CL100K_TOOLS if encoding == CL100K else O200K_TOOLS
    total = 0
    exact = True
    for index, tool in enumerate(tools):
        item = f"{param}[{index}]"
        if isinstance(tool, Mapping) and tool.get("type", "function") != "function":
            total += count(json_text(tool))  # hosted tools (web search …): an estimate
            exact = False
            continue
        function = _function_of(tool, item)
        description = function.get("description", "")
        if not isinstance(description, str):
            raise InvalidRequest(f"{item}.function.description must be a string", param=item)
        total += constants.func_init + count(f"{function['name']}:{_drop_period(description)}")
        tally = _parameters_tokens(function.get("parameters"), count, constants)
        total += tally.tokens
        exact = exact and tally.exact and bool(description) and "strict" not in function
    return ToolsTally(total + constants.func_end, exact)


def _parameters_tokens(
    parameters: Any, count: Callable[[str], int], constants: ToolConstants
) -> ToolsTally:
    if parameters is None:
        return ToolsTally(0, True)
    if not isinstance(parameters, Mapping):
        return ToolsTally(count(json_text(parameters)), False)
    properties = parameters.get("properties") or {}
    exact = set(parameters) <= _PARAMETER_KEYS and isinstance(properties, Mapping)
    if not isinstance(properties, Mapping) or not properties:
        return ToolsTally(0, exact)
    total = constants.prop_init
    for key, schema in properties.items():
        total += constants.prop_key
        if not isinstance(schema, Mapping):
            total += count(f"{key}::")
            exact = False
            continue
        enum = schema.get("enum")
        if isinstance(enum, list):
            total += constants.enum_init
            for value in enum:
                total += constants.enum_item + count(
                    value if isinstance(value, str) else json_text(value)
                )
        kind, description = schema.get("type", ""), schema.get("description", "")
        total += count(f"{key}:{kind}:{_drop_period(str(description))}")
        extra = {k: v for k, v in schema.items() if k not in _FLAT_KEYS}
        if extra or kind not in _FLAT_TYPES:
            total += count(json_text(extra)) if extra else 0
            exact = False
    return ToolsTally(total, exact)


def calls_tokens(calls: Any, count: Callable[[str], int], param: str) -> int:
    """Tokens of an assistant message's ``tool_calls`` (or legacy ``function_call``)."""
    items: Sequence[Any] = calls if isinstance(calls, list) else [calls]
    total = 0
    for index, call in enumerate(items):
        item = f"{param}[{index}]" if isinstance(calls, list) else param
        if not isinstance(call, Mapping):
            raise InvalidRequest(f"{item} must be an object", param=item)
        function = call.get("function", call)
        if not isinstance(function, Mapping):
            raise InvalidRequest(f"{item}.function must be an object", param=f"{item}.function")
        name, arguments = function.get("name", ""), function.get("arguments", "")
        if not isinstance(name, str) or not isinstance(arguments, str):
            raise InvalidRequest(f"{item}.function name and arguments must be strings", param=item)
        total += TOOL_CALL_OVERHEAD + count(name) + count(arguments)
    return total

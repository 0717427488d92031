"""A deterministic mixed corpus and chat workload for the token benchmarks.

Text mixes English prose, Chinese, source code, numbers and emoji in proportions close to
real gateway traffic; chat requests have 1-12 messages of 10 characters to 6 KB, names on
some, tool definitions on a tenth. A fixed seed makes every run count the same input.
"""

from __future__ import annotations

import random
from typing import Any

_WORD_TEXT = (
    "the of and to in is that for it as with was on be by this are or at from have an "
    "token model billing gateway request latency account credit ledger usage price cost "
    "system user assistant function stream chunk encoder decoder attention context window "
    "optimisation throughput benchmark counting exact estimate provider upstream response"
)
_WORDS = tuple(_WORD_TEXT.split(" "))
_CHINESE = (
    "词元计费网关模型请求令牌用户系统助手函数流式上下文窗口吞吐基准精确估计提供商响应的是了在和有我"
)
_CODE = [
    "def handler(request: Request) -> Response:\n    body = await request.json()\n",
    "for (let i = 0; i < items.length; i++) { total += items[i].price * qty; }\n",
    "SELECT account_id, SUM(amount) FROM entries WHERE posted_at > $1 GROUP BY 1;\n",
    '    if err != nil {\n        return fmt.Errorf("settle: %w", err)\n    }\n',
    '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}\n',
]
_EMOJI = "😀👍🏽🎉🚀🔥✨🤖📈🧪💡"


def _paragraph(rng: random.Random, chars: int) -> str:
    pieces: list[str] = []
    size = 0
    while size < chars:
        kind = rng.random()
        if kind < 0.55:
            piece = (
                " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 25))).capitalize() + ". "
            )
        elif kind < 0.75:
            piece = "".join(rng.choice(_CHINESE) for _ in range(rng.randint(8, 40))) + "。"
        elif kind < 0.92:
            piece = rng.choice(_CODE)
        elif kind < 0.97:
            piece = f"{rng.randint(0, 10**9)} {rng.random():.6f} "
        else:
            piece = "".join(rng.choice(_EMOJI) for _ in range(rng.randint(1, 6))) + " "
        pieces.append(piece)
        size += len(piece)
        if rng.random() < 0.1:
            pieces.append("\n\n")
    return "".join(pieces)[:chars]


def documents(total_bytes: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    docs: list[str] = []
    size = 0
    while size < total_bytes:
        doc = _paragraph(rng, rng.randint(2_000, 40_000))
        docs.append(doc)
        size += len(doc.encode())
    return docs


_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}


def chat_requests(count: int, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    requests: list[dict[str, Any]] = []
    for _ in range(count):
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": _paragraph(rng, rng.randint(50, 1_500))}
        ]
        for turn in range(rng.randint(0, 11)):
            role = "user" if turn % 2 == 0 else "assistant"
            size = rng.choice((10, 40, 200, 800, 2_000, 6_000))
            message: dict[str, Any] = {
                "role": role,
                "content": _paragraph(rng, rng.randint(size // 2, size)),
            }
            if rng.random() < 0.1:
                message["name"] = f"user_{rng.randint(1, 99)}"
            messages.append(message)
        body: dict[str, Any] = {"model": "gpt-4o", "messages": messages}
        if rng.random() < 0.1:
            body["tools"] = [_TOOL]
        requests.append(body)
    return requests


def request_texts(body: dict[str, Any]) -> list[str]:
    """The strings of a request that any exact counter must encode: contents, names, and the
    lines the tool formula builds from each definition."""
    texts: list[str] = []
    for message in body["messages"]:
        texts.append(message["content"])
        if "name" in message:
            texts.append(message["name"])
    for tool in body.get("tools", ()):
        function = tool["function"]
        texts.append(f"{function['name']}:{function['description']}")
        for key, schema in function["parameters"]["properties"].items():
            texts.extend(schema.get("enum", ()))
            texts.append(f"{key}:{schema['type']}:{schema.get('description', '')}")
    return texts

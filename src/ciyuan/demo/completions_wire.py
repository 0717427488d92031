"""OpenAI's legacy ``/v1/completions``: text in, text out, ``max_tokens`` 16 unless given.

Choices are numbered prompt by prompt (``len(prompt) * n`` of them); the stream ends like chat's,
with a usage chunk only under ``stream_options.include_usage`` and then ``data: [DONE]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from . import replies, usage
from .exchange import (
    SYSTEM_FINGERPRINT,
    DemoRequest,
    Frame,
    JsonReply,
    StreamReply,
    data_frame,
    flag,
    include_usage,
    new_id,
    optional_int,
    require_model,
)
from .openai_wire import DONE, Choice, usage_block
from .wire_errors import invalid, missing

COMPLETIONS_MAX_TOKENS_DEFAULT: Final = 16


def _prompts(body: Mapping[str, Any]) -> list[str]:
    """Each prompt as text; token-id prompts are keyed by their ids, which is all a seed needs."""
    prompt = body.get("prompt")
    if prompt is None:
        raise missing("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, int) for p in prompt):
            return [str(prompt)]
        if all(isinstance(p, str | list) for p in prompt):
            return [p if isinstance(p, str) else str(p) for p in prompt]
    raise invalid(
        "prompt", "Invalid 'prompt': expected a string, an array of strings or of token arrays."
    )


def completions(req: DemoRequest) -> JsonReply | StreamReply:
    body = req.body
    model = require_model(body)
    prompts = _prompts(body)
    count = optional_int(body, "n") or 1
    limit = optional_int(body, "max_tokens")
    limit = COMPLETIONS_MAX_TOKENS_DEFAULT if "max_tokens" not in body or limit is None else limit
    top = optional_int(body, "logprobs", minimum=0)
    prompt = usage.prompt_tokens(model, body, "completions")
    choices = [
        Choice(usage.generate(model, seed, limit, req.directives), seed)
        for text in prompts
        for seed in (replies.seed_of(text, str(index)) for index in range(count))
    ]
    head = {
        "id": new_id("cmpl-"),
        "object": "text_completion",
        "created": req.created,
        "model": model,
    }
    if flag(body, "stream"):
        return StreamReply(_completion_frames(req, head, prompt, choices))
    reply: dict[str, Any] = {**head, "system_fingerprint": SYSTEM_FINGERPRINT, "choices": []}
    for index, choice in enumerate(choices):
        logprobs = _legacy_logprobs(choice, top) if top is not None else None
        reply["choices"].append(
            {
                "text": choice.output.text,
                "index": index,
                "logprobs": logprobs,
                "finish_reason": choice.finish_reason,
            }
        )
    if not req.directives.no_usage:
        reply["usage"] = usage_block(prompt, choices, req)
    return JsonReply(reply)


def _legacy_logprobs(choice: Choice, top: int) -> dict[str, Any]:
    pieces = choice.output.pieces
    offsets = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
    return {
        "tokens": pieces,
        "token_logprobs": [replies.logprob_of(p, choice.seed) for p in pieces],
        "top_logprobs": [
            {alt["token"]: alt["logprob"] for alt in replies.top_logprobs(p, choice.seed, top)}
            for p in pieces
        ]
        if top
        else None,
        "text_offset": offsets,
    }


def _completion_frames(
    req: DemoRequest, head: dict[str, Any], prompt: int, choices: list[Choice]
) -> Iterator[Frame]:
    base = {**head, "system_fingerprint": SYSTEM_FINGERPRINT}

    def chunk(index: int, text: str, finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    for index, choice in enumerate(choices):
        for piece in choice.output.pieces:
            yield data_frame(chunk(index, piece), content=True)
        yield data_frame(chunk(index, "", choice.finish_reason))
    if include_usage(req.body) and not req.directives.no_usage:
        yield data_frame({**base, "choices": [], "usage": usage_block(prompt, choices, req)})
    yield DONE

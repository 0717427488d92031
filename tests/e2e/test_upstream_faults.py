"""Upstream faults (issue 9) through a real gateway, each with what the client sees and the exact
charge: resets, truncated and garbled bodies, broken SSE, wrong and absurd usage, stalls and
huge replies. docs/faults.md is the table these tests hold the product to.

The rules under test: a failure before any output charges nothing; a stream broken after output
bills the prompt and the delivered text, counted locally; usage that is unreadable, beyond the
request's bound or below what was delivered is not believed: the local count is billed instead
and the rejection is recorded. Expected charges are priced here, independently of the gateway.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from ciyuan.gateway.upstream.client import RESPONSE_BYTES_MAX
from ciyuan.metering.ports import UsageEvent
from ciyuan.pricing.money import Amount
from ciyuan.pricing.usage import Usage
from ciyuan.tokens import count_text
from tests.e2e.conftest import Gateway, sqlite_gateway, tracked
from tests.e2e.test_faults import price, sdk, spent, wait_event

GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
SLOW = "gpt-4.1-nano"
"""Routed to an upstream whose read timeout is 1 s."""
PROMPT = [{"role": "user", "content": "tell me a story about faults"}]


@pytest.fixture(scope="module")
def gw(demo_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("upstream-faults")
    upstreams = [
        {"name": "demo", "kind": "demo", "base_url": demo_upstream},
        {"name": "slow", "kind": "demo", "base_url": demo_upstream, "timeout_s": 1},
    ]
    routes = [
        {"model": SLOW, "deployments": [{"upstream": "slow"}]},
        {"model": "*", "deployments": [{"upstream": "demo"}]},
    ]
    with sqlite_gateway(
        folder,
        demo_upstream,
        CIYUAN_UPSTREAMS=json.dumps(upstreams),
        CIYUAN_ROUTES=json.dumps(routes),
    ) as (gateway, _):
        yield gateway


def claude(gateway: Gateway, key: str) -> anthropic.Anthropic:
    return tracked(
        anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)
    )


def counted(event: UsageEvent, model: str, delivered: str) -> Amount:
    """The price of the local count: the prompt as counted, and the text the client received."""
    output = count_text(model, delivered).tokens if delivered else 0
    return price(model, Usage(input_tokens=event.prompt_tokens_local, output_tokens=output))


def openai_stream(
    gateway: Gateway, key: str, fault: str, *, model: str = GPT, include_usage: bool = True
) -> tuple[str, bytes, str]:
    """(request id, every byte the client received, the content text in it), over raw HTTP."""
    body = {
        "model": model,
        "messages": PROMPT,
        "max_tokens": 24,
        "stream": True,
        "stream_options": {"include_usage": include_usage},
    }
    headers = {"authorization": f"Bearer {key}", "x-demo-fault": fault}
    with httpx.stream(
        "POST", gateway.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200
        raw = b"".join(response.iter_raw())  # raises if the gateway did not end it cleanly
        request_id = response.headers["x-ciyuan-request-id"]
    text = ""
    for line in raw.split(b"\n"):
        try:
            chunk = json.loads(line.removeprefix(b"data: "))
        except ValueError:
            continue  # [DONE], event lines, and garbage a fault injected
        for choice in chunk.get("choices") or () if isinstance(chunk, dict) else ():
            text += choice["delta"].get("content") or ""
    return request_id, raw, text


def error_chunk(raw: bytes) -> dict[str, Any]:
    """The stream's last event, which must be OpenAI's error chunk (and the only one)."""
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert sum(b'"error":{' in e for e in events) == 1, raw[-400:]
    last = events[-1]
    assert last.startswith(b"data: {"), last
    chunk: dict[str, Any] = json.loads(last.removeprefix(b"data: "))
    return chunk


def anthropic_stream(
    gateway: Gateway, key: str, fault: str, *, broken: bool = False
) -> tuple[str, list[Any], str]:
    """(request id, the SDK's events, the text in them) of a streamed Anthropic message.
    ``broken``: the stream must end with Anthropic's ``error`` event, which the SDK raises."""
    raw = claude(gateway, key).messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=24,
        messages=PROMPT,  # type: ignore[arg-type]
        stream=True,
        extra_headers={"x-demo-fault": fault},
    )
    events: list[Any] = []
    if broken:
        with pytest.raises(anthropic.APIStatusError) as caught:
            events.extend(raw.parse())
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["error"]["type"] == "api_error"
    else:
        events.extend(raw.parse())
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    return raw.headers["x-ciyuan-request-id"], events, text


# ---- failures before any output: the provider's error format, nothing charged ---------------


@pytest.mark.parametrize("fault", ["reset", "reset:1", "truncate:40", "malformed", "cut:0"])
def test_openai_plain_reply_broken_is_502_and_free(gw: Gateway, fault: str) -> None:
    account, key = gw.customer("1")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gw, key).chat.completions.create(
            model=GPT, messages=PROMPT, max_tokens=24, extra_headers={"x-demo-fault": fault}
        )
    assert caught.value.status_code == 502
    error = caught.value.response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "upstream_error")
    assert spent(gw, account) == Amount.zero()


@pytest.mark.parametrize(("fault", "stream"), [("reset", True), ("truncate:25", False)])
def test_anthropic_reply_broken_before_output_is_502_and_free(
    gw: Gateway, fault: str, stream: bool
) -> None:
    account, key = gw.customer("1")
    with pytest.raises(anthropic.InternalServerError) as caught:
        claude(gw, key).messages.create(
            model=CLAUDE,
            max_tokens=24,
            messages=PROMPT,  # type: ignore[arg-type]
            stream=stream,
            extra_headers={"x-demo-fault": fault},
        )
    assert caught.value.status_code == 502
    body = caught.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert spent(gw, account) == Amount.zero()


def test_plain_reply_beyond_the_response_cap_is_502_and_free(gw: Gateway) -> None:
    account, key = gw.customer("1")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gw, key).chat.completions.create(
            model=GPT,
            messages=PROMPT,
            max_tokens=24,
            extra_headers={"x-demo-fault": f"huge:{RESPONSE_BYTES_MAX}"},
        )
    assert f"exceeds {RESPONSE_BYTES_MAX} bytes" in caught.value.response.json()["error"]["message"]
    assert spent(gw, account) == Amount.zero()


@pytest.mark.parametrize(
    ("fault", "model", "code"),
    [
        ("reset:0", GPT, "upstream_error"),
        ("truncate:0", GPT, "upstream_error"),
        # Each frame waits 1.5 s; the slow upstream's read timeout is 1 s.
        ("drip:1500", SLOW, "upstream_timeout"),
    ],
)
def test_stream_broken_before_any_output_ends_with_an_error_event_and_is_free(
    gw: Gateway, fault: str, model: str, code: str
) -> None:
    account, key = gw.customer("1")
    request_id, raw, text = openai_stream(gw, key, fault, model=model)
    assert text == "" and b"[DONE]" not in raw
    # OpenAI's error chunk, which its SDK raises as APIError; no charge figures: none was made.
    error = error_chunk(raw)
    assert (error["error"]["type"], error["error"]["code"]) == ("api_error", code)
    assert "ciyuan" not in error
    event = wait_event(gw, request_id)
    assert (event.status, event.error_code, event.cost) == ("error", code, Amount.zero())
    assert spent(gw, account) == Amount.zero()


# ---- streams broken after output: the prompt and the delivered text, counted ----------------


@pytest.mark.parametrize(
    ("fault", "model"),
    [
        ("reset:3", GPT),
        ("truncate:3", GPT),
        ("stall:3", SLOW),  # then silence: the 1 s read timeout ends it
        (f"huge:{RESPONSE_BYTES_MAX + 1024}", GPT),  # one event beyond the cap
    ],
)
def test_openai_stream_broken_after_output_bills_what_was_delivered(
    gw: Gateway, fault: str, model: str
) -> None:
    account, key = gw.customer("1")
    request_id, raw, text = openai_stream(gw, key, fault, model=model)
    assert text and b"[DONE]" not in raw and b"x_demo_padding" not in raw
    # The stream ends with OpenAI's error chunk, carrying what the delivered part was charged.
    error = error_chunk(raw)
    assert error["error"]["type"] == "api_error"
    assert error["error"]["code"] == (
        "upstream_timeout" if fault.startswith("stall") else "upstream_error"
    )
    event = wait_event(gw, request_id)
    assert (event.status, event.usage_source) == ("partial", "counted")
    assert event.output_tokens == count_text(model, text).tokens
    assert event.cost == counted(event, model, text) == spent(gw, account)
    assert Amount.parse(error["ciyuan"]["cost"]) == event.cost
    if fault.startswith("huge"):
        assert len(raw) < 64 * 1024  # the oversized event never reached the client


@pytest.mark.parametrize("fault", ["reset:2", "cut:2", "truncate:2"])
def test_anthropic_stream_broken_after_output_bills_what_was_delivered(
    gw: Gateway, fault: str
) -> None:
    account, key = gw.customer("1")
    request_id, events, text = anthropic_stream(gw, key, fault, broken=True)
    assert [e.type for e in events].count("content_block_delta") == 2
    assert "message_stop" not in [e.type for e in events]
    event = wait_event(gw, request_id)
    assert (event.status, event.usage_source) == ("partial", "counted")
    assert event.cost == counted(event, CLAUDE, text) == spent(gw, account)


# ---- wrong and absurd usage: not believed, the local count billed, the rejection recorded ----

REASONS = {
    "missing": "unreadable",
    "string": "unreadable",
    "negative": "unreadable",
    "int64": "unreadable",  # 2**63: beyond any plausible count (and PostgreSQL's BIGINT)
    "bignum": "unreadable",  # 10**30: parsed as a float, not a count
    "low": "below_delivered",
    "huge": "beyond_limit",  # 10**15: an integer, but far beyond max_tokens
}


@pytest.mark.parametrize("kind", list(REASONS))
@pytest.mark.parametrize("api", ["openai", "openai-stream", "anthropic-stream"])
def test_wrong_usage_bills_the_local_count(gw: Gateway, api: str, kind: str) -> None:
    account, key = gw.customer("1")
    fault = f"usage:{kind}"
    model, reason = (CLAUDE if api.startswith("anthropic") else GPT), REASONS[kind]
    if api == "openai":
        raw = sdk(gw, key).chat.completions.with_raw_response.create(
            model=GPT, messages=PROMPT, max_tokens=24, extra_headers={"x-demo-fault": fault}
        )
        request_id, text = (
            raw.headers["x-ciyuan-request-id"],
            raw.parse().choices[0].message.content,
        )
        assert raw.headers["x-ciyuan-usage-rejected"] == reason
        cost = Amount.parse(raw.headers["x-ciyuan-cost"])
    elif api == "openai-stream":
        # The client did not ask for usage: the garbled usage chunk must not reach it either.
        request_id, stream_bytes, text = openai_stream(gw, key, fault, include_usage=False)
        assert b'"usage":{' not in stream_bytes and b'"choices":[]' not in stream_bytes
        assert stream_bytes.endswith(b"data: [DONE]\n\n")
        cost = None
    else:
        if kind == "missing":
            # message_delta without counts keeps message_start's output_tokens of 1.
            reason = "below_delivered"
        request_id, events, text = anthropic_stream(gw, key, fault)
        ciyuan = next(e for e in events if e.type == "message_delta").model_extra["ciyuan"]
        assert (ciyuan["usage_source"], ciyuan["usage_rejected"]) == ("counted", reason)
        cost = Amount.parse(ciyuan["cost"])
    assert text
    event = wait_event(gw, request_id)
    assert (event.status, event.usage_source) == ("ok", "counted")
    assert event.detail["usage_rejected"]["reason"] == reason
    expected = counted(event, model, text or "")
    assert event.cost == expected == spent(gw, account)
    assert cost in (None, expected)


def test_usage_rejections_are_counted_in_metrics(gw: Gateway) -> None:
    _, key = gw.customer("1")
    sdk(gw, key).chat.completions.create(
        model=GPT, messages=PROMPT, max_tokens=24, extra_headers={"x-demo-fault": "usage:huge"}
    )
    metrics = httpx.get(gw.base_url + "/metrics", timeout=30).text
    line = 'ciyuan_upstream_errors_total{code="usage_beyond_limit",upstream="demo"}'
    assert any(row.startswith(line) and float(row.split()[-1]) >= 1 for row in metrics.splitlines())


# ---- garbage in a stream passes through; the metering still reads the usage ------------------


@pytest.mark.parametrize(
    ("fault", "injected"),
    [
        ("malformed:json", b'data: {"id": "broken\n\n'),
        ("malformed:no-data", b"event: message\n\n"),
        ("malformed:binary", b"data: \xff\xfe\x00 not utf-8 \xc3\x28\n\n"),
        # CRLF framing, with reads that end between CR and LF (drip spaces the writes out).
        ("crlf,drip:5", b""),
    ],
)
def test_broken_sse_passes_through_and_usage_is_still_reported(
    gw: Gateway, fault: str, injected: bytes
) -> None:
    account, key = gw.customer("1")
    request_id, raw, text = openai_stream(gw, key, fault)
    assert raw.count(injected) == (1 if injected else raw.count(b""))
    assert raw.endswith(b"data: [DONE]\n\n") and text
    usage_chunk = json.loads(raw.split(b"\n\n")[-3].removeprefix(b"data: "))
    assert usage_chunk["ciyuan"]["usage_source"] == "reported"
    event = wait_event(gw, request_id)
    assert (event.status, event.usage_source) == ("ok", "reported")
    reported = Usage.from_openai_chat(usage_chunk["usage"])
    assert reported.output_total == count_text(GPT, text).tokens
    assert event.cost == price(GPT, reported) == spent(gw, account)


def test_anthropic_stream_broken_before_any_output_raises_in_the_sdk_and_is_free(
    gw: Gateway,
) -> None:
    account, key = gw.customer("1")
    request_id, events, text = anthropic_stream(gw, key, "reset:0", broken=True)
    assert text == "" and "message_stop" not in [e.type for e in events]
    event = wait_event(gw, request_id)
    assert (event.status, event.error_code, event.cost) == (
        "error",
        "upstream_error",
        Amount.zero(),
    )
    assert spent(gw, account) == Amount.zero()


def test_responses_stream_broken_after_output_ends_with_its_error_event(gw: Gateway) -> None:
    account, key = gw.customer("1")
    raw = sdk(gw, key).responses.with_raw_response.create(
        model=GPT,
        input="Tell me a story",
        max_output_tokens=24,
        stream=True,
        extra_headers={"x-demo-fault": "cut:4"},
    )
    events = list(raw.parse())
    # The Responses API's own error event (the SDK yields it; it does not raise), last.
    assert events[-1].type == "error" and events[-1].code == "upstream_error"
    assert "response.completed" not in [e.type for e in events]
    event = wait_event(gw, raw.headers["x-ciyuan-request-id"])
    assert (event.status, event.usage_source) == ("partial", "counted")
    assert event.cost == spent(gw, account) > Amount.zero()

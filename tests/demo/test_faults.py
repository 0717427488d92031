"""Each ``x-demo-*`` fault does what it says, checked over raw HTTP (httpx) and through the SDKs."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

CHAT: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 10,
}
STREAM: dict[str, Any] = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
MESSAGES: dict[str, Any] = {
    "model": "claude-sonnet-5-5",
    "max_tokens": 10,
    "messages": CHAT["messages"],
}


def _post(url: str, body: Any, fault: str | None = None, **headers: str) -> httpx.Response:
    if fault is not None:
        headers["x-demo-fault"] = fault
    headers = {k.replace("_", "-"): v for k, v in headers.items()}
    return httpx.post(url, json=body, headers=headers, timeout=10)


def test_timeout_delays_the_reply(demo_url: str) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{demo_url}/v1/chat/completions",
            json=CHAT,
            headers={"x-demo-fault": "timeout", "x-demo-delay-ms": "2000"},
            timeout=0.2,
        )
    started = time.monotonic()
    reply = _post(f"{demo_url}/v1/chat/completions", CHAT, "timeout", x_demo_delay_ms="150")
    assert reply.status_code == 200
    assert time.monotonic() - started >= 0.15
    with (
        openai.OpenAI(base_url=f"{demo_url}/v1", api_key="x", max_retries=0, timeout=0.2) as client,
        pytest.raises(openai.APITimeoutError),
    ):
        client.chat.completions.create(**CHAT, extra_headers={"x-demo-fault": "timeout"})


@pytest.mark.parametrize("status", [500, 429, 503])
def test_status_faults_in_both_formats(demo_url: str, status: int) -> None:
    reply = _post(f"{demo_url}/v1/chat/completions", CHAT, f"status:{status}")
    assert reply.status_code == status
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (reply.headers.get("retry-after") is not None) == (status in (429, 503))
    reply = _post(f"{demo_url}/v1/messages", MESSAGES, f"status:{status}")
    assert reply.status_code == status
    body = reply.json()
    assert body["type"] == "error" and body["error"]["message"]
    expected = {500: "api_error", 429: "rate_limit_error", 503: "api_error"}[status]
    assert body["error"]["type"] == expected


def test_status_faults_map_to_sdk_exceptions(demo_url: str) -> None:
    with openai.OpenAI(base_url=f"{demo_url}/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(
                **CHAT, extra_headers={"x-demo-fault": "status:429", "x-demo-retry-after": "7"}
            )
        assert caught.value.response.headers["retry-after"] == "7"
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(**CHAT, extra_headers={"x-demo-fault": "status:500"})
    with anthropic.Anthropic(base_url=demo_url, api_key="x", max_retries=0) as claude:
        with pytest.raises(anthropic.RateLimitError):
            claude.messages.create(**MESSAGES, extra_headers={"x-demo-fault": "status:429"})
        with pytest.raises(anthropic.InternalServerError):
            claude.messages.create(**MESSAGES, extra_headers={"x-demo-fault": "status:529"})


def _read_until_broken(url: str, body: Any, fault: str) -> tuple[list[str], bool]:
    """The SSE data lines that arrived, and whether the connection broke mid-body."""
    received = b""
    with httpx.stream("POST", url, json=body, headers={"x-demo-fault": fault}, timeout=10) as reply:
        try:
            for chunk in reply.iter_raw():
                received += chunk
        except httpx.RemoteProtocolError:
            return [ln for ln in received.decode().splitlines() if ln.startswith("data: ")], True
    return [ln for ln in received.decode().splitlines() if ln.startswith("data: ")], False


@pytest.mark.parametrize("cut", [0, 1, 4])
def test_cut_closes_openai_stream_after_n_content_chunks(demo_url: str, cut: int) -> None:
    lines, broken = _read_until_broken(f"{demo_url}/v1/chat/completions", STREAM, f"cut:{cut}")
    assert broken
    assert "data: [DONE]" not in lines
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines]
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) == cut
    assert all(c["usage"] is None for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"


def test_cut_closes_anthropic_stream(demo_url: str) -> None:
    lines, broken = _read_until_broken(
        f"{demo_url}/v1/messages", {**MESSAGES, "stream": True}, "cut:2"
    )
    assert broken
    kinds = [json.loads(line.removeprefix("data: "))["type"] for line in lines]
    assert kinds.count("content_block_delta") == 2
    assert "message_delta" not in kinds and "message_stop" not in kinds


def test_cut_breaks_sdk_stream(demo_url: str) -> None:
    with openai.OpenAI(base_url=f"{demo_url}/v1", api_key="x", max_retries=0) as client:
        stream = client.chat.completions.create(**STREAM, extra_headers={"x-demo-fault": "cut:2"})
        received = 0
        with pytest.raises(openai.APIConnectionError):
            for chunk in stream:
                received += bool(chunk.choices and chunk.choices[0].delta.content)
        assert received == 2


def test_cut_on_non_stream_sends_half_a_body(demo_url: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        _post(f"{demo_url}/v1/chat/completions", CHAT, "cut:0")


def test_no_usage_everywhere(demo_url: str) -> None:
    assert "usage" not in _post(f"{demo_url}/v1/chat/completions", CHAT, "no-usage").json()
    lines, broken = _read_until_broken(f"{demo_url}/v1/chat/completions", STREAM, "no-usage")
    assert not broken and lines[-1] == "data: [DONE]"
    assert all(json.loads(line[6:])["usage"] is None for line in lines[:-1])
    assert "usage" not in _post(f"{demo_url}/v1/messages", MESSAGES, "no-usage").json()
    embeddings = {"model": "text-embedding-3-small", "input": "x"}
    assert "usage" not in _post(f"{demo_url}/v1/embeddings", embeddings, "no-usage").json()
    response = _post(
        f"{demo_url}/v1/responses", {"model": "gpt-4o", "input": "x"}, "no-usage"
    ).json()
    assert response["usage"] is None


def test_drip_spaces_out_chunks(demo_url: str) -> None:
    started = time.monotonic()
    lines, broken = _read_until_broken(
        f"{demo_url}/v1/chat/completions", {**STREAM, "max_tokens": 3}, "drip:40"
    )
    assert not broken and lines[-1] == "data: [DONE]"
    assert time.monotonic() - started >= 0.04 * len(lines)


def test_malformed_json_and_sse(demo_url: str) -> None:
    reply = _post(f"{demo_url}/v1/chat/completions", CHAT, "malformed")
    assert reply.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.text)
    lines, _ = _read_until_broken(f"{demo_url}/v1/chat/completions", STREAM, "malformed")
    bad = 0
    for line in lines:
        try:
            json.loads(line[6:])
        except json.JSONDecodeError:
            bad += line != "data: [DONE]"
    assert bad == 1


def test_expect_key(demo_url: str) -> None:
    with openai.OpenAI(base_url=f"{demo_url}/v1", api_key="sk-right", max_retries=0) as client:
        ok = client.chat.completions.create(**CHAT, extra_headers={"x-demo-expect-key": "sk-right"})
        assert ok.choices
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(**CHAT, extra_headers={"x-demo-expect-key": "sk-other"})
        assert "sk-right" not in caught.value.response.text
    with anthropic.Anthropic(base_url=demo_url, api_key="ant-right", max_retries=0) as claude:
        assert claude.messages.create(
            **MESSAGES, extra_headers={"x-demo-expect-key": "ant-right"}
        ).content
        with pytest.raises(anthropic.AuthenticationError):
            claude.messages.create(**MESSAGES, extra_headers={"x-demo-expect-key": "nope"})


def test_bad_input(demo_url: str) -> None:
    reply = httpx.post(f"{demo_url}/v1/chat/completions", content=b"{not json", timeout=10)
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    big = b'{"model": "gpt-4o", "messages": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    assert httpx.post(f"{demo_url}/v1/chat/completions", content=big, timeout=10).status_code == 413
    assert _post(f"{demo_url}/v1/chat/completions", CHAT, "explode").status_code == 400
    assert _post(f"{demo_url}/v1/nowhere", CHAT).status_code == 404
    assert httpx.get(f"{demo_url}/v1/chat/completions").status_code == 405
    assert (
        _post(f"{demo_url}/v1/chat/completions", {"messages": CHAT["messages"]}).status_code == 400
    )

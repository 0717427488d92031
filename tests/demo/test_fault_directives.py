"""The upstream-fault directives beyond the basic ones: resets, truncation, stalls, wrong usage,
broken SSE, CRLF framing and huge replies, each checked on the raw wire (httpx)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from ciyuan.demo import faults
from tests.demo.test_faults import CHAT, MESSAGES, STREAM


def _raw(url: str, body: Any, fault: str) -> tuple[bytes, Exception | None]:
    """Every byte of the body that arrived, and the error that ended it early, if any."""
    received = b""
    try:
        with httpx.stream(
            "POST", url, json=body, headers={"x-demo-fault": fault}, timeout=10
        ) as reply:
            for chunk in reply.iter_raw():
                received += chunk
    except (httpx.RemoteProtocolError, httpx.ReadError) as error:
        return received, error
    return received, None


def _events(raw: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:])
        for line in raw.decode().splitlines()
        if line.startswith("data: {") and line != "data: [DONE]"
    ]


def test_new_directives_parse_and_refuse_typos() -> None:
    parsed = faults.parse(
        {"x-demo-fault": "reset:2, truncate:40, stall:1, usage:huge, malformed:no-data, crlf"}
    )
    assert parsed == faults.Directives(
        reset_after_chunks=2,
        truncate_at=40,
        stall_after_chunks=1,
        usage_fault="huge",
        malformed=True,
        malformed_kind="no-data",
        crlf=True,
    )
    assert faults.parse({"x-demo-fault": "reset"}).reset_before
    assert faults.parse({"x-demo-fault": "huge:1024"}).huge_bytes == 1024
    for bad in ("usage:weird", "usage", "malformed:html", "truncate", "huge:-1", "stall:x"):
        with pytest.raises(faults.DirectiveError):
            faults.parse({"x-demo-fault": bad})


def test_bad_directive_is_a_400_naming_the_choices(demo_url: str) -> None:
    reply = httpx.post(
        f"{demo_url}/v1/chat/completions",
        json=CHAT,
        headers={"x-demo-fault": "usage:weird"},
        timeout=10,
    )
    assert reply.status_code == 400
    assert "bignum, huge, int64, low, missing, negative, string" in reply.json()["error"]["message"]


def test_reset_before_the_response_is_a_connection_error(demo_url: str) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.post(
            f"{demo_url}/v1/chat/completions",
            json=CHAT,
            headers={"x-demo-fault": "reset"},
            timeout=10,
        )


def test_reset_mid_stream_aborts_after_n_content_chunks(demo_url: str) -> None:
    raw, error = _raw(f"{demo_url}/v1/chat/completions", STREAM, "reset:2")
    # A RST surfaces as a read error (connection reset), not the clean EOF a cut gives.
    assert isinstance(error, httpx.ReadError)
    content = [c for c in _events(raw) if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) == 2


def test_truncate_ends_cleanly_but_early(demo_url: str) -> None:
    reply = httpx.post(
        f"{demo_url}/v1/chat/completions",
        json=CHAT,
        headers={"x-demo-fault": "truncate:30"},
        timeout=10,
    )
    assert reply.status_code == 200 and len(reply.content) == 30
    assert reply.content.startswith(b'{"id":"chatcmpl-')
    raw, error = _raw(f"{demo_url}/v1/messages", {**MESSAGES, "stream": True}, "truncate:1")
    assert error is None
    kinds = [event["type"] for event in _events(raw)]
    assert kinds.count("content_block_delta") == 1 and "message_stop" not in kinds


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("missing", None),
        ("string", "str"),
        ("negative", -5),
        ("low", 1),
        ("huge", 10**15),
        ("int64", 2**63),
        ("bignum", 10**30),
    ],
)
def test_wrong_usage_in_openai_plain_and_stream(demo_url: str, kind: str, expected: object) -> None:
    url = f"{demo_url}/v1/chat/completions"
    plain = httpx.post(url, json=CHAT, headers={"x-demo-fault": f"usage:{kind}"}, timeout=10)
    raw, error = _raw(url, STREAM, f"usage:{kind}")
    assert error is None
    # json, not orjson: only Python's own parser reads 10**30 back as an integer.
    for usage in (json.loads(plain.content)["usage"], _events(raw)[-1]["usage"]):
        completion = usage.get("completion_tokens")
        if expected is None:
            assert "completion_tokens" not in usage and "prompt_tokens" not in usage
        elif expected == "str":
            assert isinstance(completion, str) and int(completion) > 0
        else:
            assert completion == expected


def test_wrong_usage_in_anthropic_stream_is_on_message_delta_only(demo_url: str) -> None:
    raw, _ = _raw(f"{demo_url}/v1/messages", {**MESSAGES, "stream": True}, "usage:huge")
    events = {event["type"]: event for event in _events(raw)}
    assert events["message_start"]["message"]["usage"]["output_tokens"] == 1
    assert events["message_delta"]["usage"]["output_tokens"] == 10**15


@pytest.mark.parametrize(
    ("kind", "injected"),
    [
        ("no-data", b"event: content_block_delta\n\n"),
        ("binary", b"event: content_block_delta\ndata: \xff\xfe\x00 not utf-8 \xc3\x28\n\n"),
    ],
)
def test_malformed_sse_kinds(demo_url: str, kind: str, injected: bytes) -> None:
    raw, error = _raw(f"{demo_url}/v1/messages", {**MESSAGES, "stream": True}, f"malformed:{kind}")
    assert error is None and raw.count(injected) == 1
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_crlf_holds_each_final_lf_back(demo_url: str) -> None:
    raw, error = _raw(f"{demo_url}/v1/chat/completions", STREAM, "crlf")
    assert error is None
    assert raw.endswith(b"data: [DONE]\r\n\r\n") and b"\n\n" not in raw.replace(b"\r\n", b"")
    assert len(_events(raw.replace(b"\r\n", b"\n"))) > 3


def test_huge_pads_plain_bodies_and_streams(demo_url: str) -> None:
    size = 3 * 1024 * 1024 + 5
    plain = httpx.post(
        f"{demo_url}/v1/chat/completions",
        json=CHAT,
        headers={"x-demo-fault": f"huge:{size}"},
        timeout=10,
    )
    assert len(plain.json()["x_demo_padding"]) == size and plain.json()["usage"]
    raw, error = _raw(f"{demo_url}/v1/chat/completions", STREAM, f"huge:{size}")
    assert error is None
    padding = [event for event in raw.split(b"\n\n") if b"x_demo_padding" in event]
    assert len(padding) == 1 and len(padding[0]) + 2 == size
    assert raw.endswith(b"data: [DONE]\n\n")

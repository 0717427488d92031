"""Invariant 7 over real traffic: no key (client, admin, provider), prompt or completion in any
log line, and the provider key nowhere a client or an operator can read it.

One gateway (module scope) serves real SDK calls, plain and streaming, OpenAI and Anthropic,
failures of every kind (bad key, bad body, upstream 401 and 500), the admin API and dashboard
logins right and wrong; then its whole log, every admin GET route from its live OpenAPI
document, every client route, ``/metrics`` and every dashboard page are searched for the
secrets. A second gateway with ``CIYUAN_LOG_PROMPTS=true`` must put the prompt and completion
on the request line, and still no key.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from ciyuan.logs import CONTENT_CHARS_MAX, prompt_text
from ciyuan.pricing.money import Amount
from tests.admin.conftest import ADMIN_KEY
from tests.e2e.conftest import tracked
from tests.security.conftest import (
    PROVIDER_KEY,
    HardenedGateway,
    csrf_of,
    dashboard_login,
    hardened_gateway,
)

CHAT_MODEL = "gpt-4o-mini"
CLAUDE_MODEL = "claude-haiku-4-5"


def marker(label: str) -> str:
    """A prompt text that cannot appear in a log by chance."""
    return f"prompt-{label}-{secrets.token_hex(8)}"


@dataclass
class Traffic:
    """What a run of calls left behind: the secrets and texts to look for, the ids to find."""

    client_key: str
    prompts: list[str] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    responses: list[httpx.Response] = field(default_factory=list)


def sdk_calls(gateway: HardenedGateway, key: str, traffic: Traffic) -> None:
    """Chat and Messages, plain and streaming, through the official SDKs."""
    oai = tracked(openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0))
    ant = tracked(anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0))

    prompt = marker("chat")
    raw = oai.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}]
    )
    traffic.prompts.append(prompt)
    traffic.completions.append(raw.parse().choices[0].message.content or "")
    traffic.request_ids.append(raw.headers["x-ciyuan-request-id"])

    prompt = marker("chat-stream")
    stream = oai.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": prompt}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    traffic.prompts.append(prompt)
    traffic.completions.append(text)
    traffic.request_ids.append(stream.headers["x-ciyuan-request-id"])

    prompt, system = marker("messages"), marker("system")
    message = ant.messages.with_raw_response.create(
        model=CLAUDE_MODEL,
        system=system,
        max_tokens=200,
        messages=[{"role": "user", "content": [{"type": "text", "text": prompt}]}],
    )
    parsed = message.parse()
    traffic.prompts += [prompt, system]
    traffic.completions.append("".join(b.text for b in parsed.content if b.type == "text"))
    traffic.request_ids.append(message.headers["x-ciyuan-request-id"])

    prompt = marker("messages-stream")
    with ant.messages.stream(
        model=CLAUDE_MODEL, max_tokens=200, messages=[{"role": "user", "content": prompt}]
    ) as events:
        text = "".join(events.text_stream)
        request_id = events.response.headers["x-ciyuan-request-id"]
    traffic.prompts.append(prompt)
    traffic.completions.append(text)
    traffic.request_ids.append(request_id)
    assert all(len(c) >= 20 for c in traffic.completions), traffic.completions


def failing_calls(gateway: HardenedGateway, key: str, traffic: Traffic) -> None:
    """Failures that carry a prompt and a key: each must be refused, and logged without them."""
    url = gateway.base_url
    near_miss = key[:-1] + ("A" if key[-1] != "A" else "B")
    wrong_secret = key.split("_", 1)[0] + "_" + secrets.token_urlsafe(32)
    traffic.secrets += [near_miss, wrong_secret]

    def post(path: str, body: object, token: str, **headers: str) -> httpx.Response:
        bearer = {"authorization": f"Bearer {token}"}
        auth = {"x-api-key": token} if path == "/v1/messages" else bearer
        response = httpx.post(url + path, json=body, headers={**auth, **headers}, timeout=60)
        traffic.responses.append(response)
        return response

    for path, model in (("/v1/chat/completions", CHAT_MODEL), ("/v1/messages", CLAUDE_MODEL)):
        prompt = marker("refused")
        traffic.prompts.append(prompt)
        body = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": prompt}]}
        for wrong in (near_miss, wrong_secret):
            assert post(path, body, wrong).status_code == 401
        # The demo answers 401 to a provider key it does not expect: the operator's problem.
        upstream_401 = post(path, body, key, **{"x-demo-expect-key": "something-else"})
        assert upstream_401.status_code == 502, upstream_401.text
        upstream_500 = post(path, body, key, **{"x-demo-fault": "status:500"})
        assert upstream_500.status_code >= 500, upstream_500.text
        too_many = {**body, "max_tokens": 10**9}
        assert post(path, too_many, key).status_code == 400
    # A body that is not JSON, quoting the prompt and the key in the parser's way.
    broken = httpx.post(
        url + "/v1/chat/completions",
        content=f'{{"model": "{CHAT_MODEL}", "messages": "{traffic.prompts[-1]}" {key}'.encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert broken.status_code == 400
    traffic.responses.append(broken)


def admin_calls(gateway: HardenedGateway, traffic: Traffic) -> None:
    """The admin API and the dashboard login, with the right and with near-miss keys."""
    wrong_admin = ADMIN_KEY[:-1] + ("x" if ADMIN_KEY[-1] != "x" else "y")
    traffic.secrets += [ADMIN_KEY, wrong_admin]
    with gateway.admin() as admin:
        account = admin.post("/admin/accounts", json={"name": f"sec-{secrets.token_hex(4)}"})
        created = admin.post("/admin/keys", json={"account": account.json()["id"]})
        assert created.status_code in (200, 201), created.text
        traffic.secrets.append(created.json()["key"])
        refused = httpx.get(
            gateway.base_url + "/admin/accounts",
            headers={"authorization": f"Bearer {wrong_admin}"},
        )
        assert refused.status_code == 401
    for attempt in (wrong_admin, PROVIDER_KEY, traffic.client_key):
        with httpx.Client(base_url=gateway.base_url) as browser:
            form = browser.get("/dashboard/login")
            done = browser.post(
                "/dashboard/login", data={"admin_key": attempt, "csrf": csrf_of(form.text)}
            )
            assert done.status_code == 401
    dashboard_login(gateway).close()


@pytest.fixture(scope="module")
def traffic(hardened: HardenedGateway) -> Traffic:
    _, key = hardened.customer("5.00")
    done = Traffic(client_key=key, secrets=[key, key.split("_", 1)[1], PROVIDER_KEY])
    sdk_calls(hardened, key, done)
    failing_calls(hardened, key, done)
    admin_calls(hardened, done)
    hardened.wait_logged(*done.request_ids)
    return done


def test_no_key_prompt_or_completion_in_any_log_line(
    hardened: HardenedGateway, traffic: Traffic
) -> None:
    text = hardened.log_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    # Not vacuous: every call has its line, naming the key by its public prefix only.
    settled = {line["request_id"]: line for line in lines if line.get("request_id")}
    prefix = traffic.client_key.split("_")[0]
    for request_id in traffic.request_ids:
        assert settled[request_id]["status"] == "ok"
        assert settled[request_id]["api_key"] == prefix
        assert "prompt" not in settled[request_id] and "completion" not in settled[request_id]
    failed = [line for line in lines if line.get("status") == "error"]
    assert len(failed) >= 4, "the upstream failures are logged too"
    assert any("dashboard login refused" in line["message"] for line in lines)
    for secret in traffic.secrets:
        assert secret not in text, "a key is in the log"
    for prompt in traffic.prompts:
        assert prompt not in text, "a prompt is in the log"
    for completion in traffic.completions:
        assert completion not in text, "a completion is in the log"


def _concrete(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def everything_readable(gateway: HardenedGateway, traffic: Traffic) -> Iterator[httpx.Response]:
    """Every GET an operator or a client can make, with real ids filled in."""
    key = traffic.client_key
    request_id = traffic.request_ids[0]
    account = gateway.store.find_api_key(key.split("_")[0])
    assert account is not None
    values = {"account": account.account_id, "key": account.prefix, "request_id": request_id}
    with gateway.admin() as admin:
        document = admin.get("/admin/openapi.json")
        yield document
        paths = document.json()["paths"]
        gets = [path for path, item in paths.items() if "get" in item]
        assert "/admin/requests/{request_id}/receipt" in gets
        for path in gets:
            response = admin.get(_concrete(path, values))
            assert response.status_code == 200, (path, response.text)
            yield response
    client = {"authorization": f"Bearer {key}"}
    for path in (
        "/v1/models",
        "/v1/ciyuan/balance",
        "/v1/ciyuan/usage?recent=100&group_by=model,api,key,status",
        f"/v1/ciyuan/receipts/{request_id}",
        "/v1/ciyuan/receipts/req_unknown",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        yield httpx.get(gateway.base_url + path, headers=client)
    yield httpx.get(
        gateway.base_url + "/v1/models", headers={"x-api-key": key, "anthropic-version": "1"}
    )
    browser = dashboard_login(gateway)
    try:
        for path in (
            "/dashboard/",
            "/dashboard/?range=30d",
            "/dashboard/accounts",
            "/dashboard/keys",
            "/dashboard/requests",
            f"/dashboard/requests/{request_id}",
            "/dashboard/prices",
            "/dashboard/nowhere",
        ):
            yield browser.get(path)
    finally:
        browser.close()


def test_the_provider_key_is_never_returned_or_logged(
    hardened: HardenedGateway, traffic: Traffic
) -> None:
    # The calls were answered, so the demo upstream did receive the provider key.
    assert traffic.completions
    seen = 0
    for response in [*traffic.responses, *everything_readable(hardened, traffic)]:
        seen += 1
        assert PROVIDER_KEY not in response.text, response.url
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        assert PROVIDER_KEY not in headers, response.url
    assert seen > 30
    upstream_refusal = next(r for r in traffic.responses if r.status_code == 502)
    assert "credentials" in upstream_refusal.text
    assert PROVIDER_KEY not in hardened.log_text()


# ---- prompt logging on ------------------------------------------------------------------------


def test_prompt_logging_puts_the_text_on_the_request_line_and_still_no_key(
    demo_upstream: str, tmp_path: Path
) -> None:
    gateway, process = hardened_gateway(demo_upstream, tmp_path, CIYUAN_LOG_PROMPTS="true")
    try:
        _, key = gateway.customer("5.00")
        done = Traffic(client_key=key)
        sdk_calls(gateway, key, done)
        failed_prompt = marker("failed")
        refused = httpx.post(
            gateway.base_url + "/v1/chat/completions",
            json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": failed_prompt}]},
            headers={"authorization": f"Bearer {key}", "x-demo-fault": "status:500"},
            timeout=60,
        )
        assert refused.status_code >= 500
        text = gateway.wait_logged(*done.request_ids, failed_prompt)
    finally:
        process.stop()
        gateway.store.close()
    lines: dict[str, dict[str, Any]] = {}
    for raw in text.splitlines():
        if raw.startswith("{"):
            line = json.loads(raw)
            lines.setdefault(line.get("request_id", ""), line)
    chat, chat_stream, messages, messages_stream = (lines[r] for r in done.request_ids)
    assert chat["prompt"] == done.prompts[0] and chat["completion"] == done.completions[0]
    assert chat_stream["prompt"] == done.prompts[1]
    assert chat_stream["completion"] == done.completions[1]
    # Anthropic's system prompt is on the line too, before the messages.
    assert messages["prompt"] == f"{done.prompts[3]}\n{done.prompts[2]}"
    assert messages["completion"] == done.completions[2]
    assert messages_stream["prompt"] == done.prompts[4]
    assert messages_stream["completion"] == done.completions[3]
    for line in (chat, messages_stream):
        assert Amount.parse(line["cost"]) > Amount.zero()
    assert any(
        line.get("prompt") == failed_prompt and line["status"] == "error"
        for line in (json.loads(r) for r in text.splitlines() if r.startswith("{"))
    )
    assert key not in text and key.split("_", 1)[1] not in text
    assert PROVIDER_KEY not in text and ADMIN_KEY not in text


def test_prompt_text_of_every_api_body() -> None:
    """The text ``log_prompts`` logs, from each API's body shape; media and ids stay out."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    chat = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}]}
    assert prompt_text(chat) == "hi"
    assert prompt_text({"prompt": ["one", "two"]}) == "one\ntwo"
    assert prompt_text({"input": [[1, 2, 3], "embed me"]}) == "embed me"
    responses = {"instructions": "be brief", "input": [{"role": "user", "content": "q"}]}
    assert prompt_text(responses) == "be brief\nq"
    huge = prompt_text({"prompt": "x" * (CONTENT_CHARS_MAX + 10)})
    assert huge.startswith("x" * CONTENT_CHARS_MAX) and huge.endswith("[10 more characters]")

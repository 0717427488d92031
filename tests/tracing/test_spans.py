"""OpenTelemetry spans of the metered pipeline, recorded by the SDK's in-memory exporter.

The gateway uses the OpenTelemetry API only; here the test process sets up an SDK tracer
provider, as an operator would, and a non-streaming chat request runs through the real app
(in process, over httpx's ASGI transport) against the demo upstream served in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette

from ciyuan import apikeys
from ciyuan.bootstrap import build_app
from ciyuan.pricing.money import Amount
from ciyuan.settings import Settings
from ciyuan.store import open_store

PROMPT = "Tell me about the secret lighthouse of Zanzibar-7731."
STAGES = ("ciyuan.authenticate", "ciyuan.count", "ciyuan.reserve", "ciyuan.upstream",
          "ciyuan.settle")  # fmt: skip
EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    # The global provider can be set once per process: these tests set it, nothing unsets it.
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(tracer_provider)
    assert trace.get_tracer_provider() is tracer_provider, "another provider was set first"


@pytest.fixture
def gateway(sqlite_url: str, demo_url: str) -> Iterator[tuple[Starlette, str]]:
    store = open_store(sqlite_url)
    account = store.create_account("traced")
    store.grant(account.id, Amount(10**10))
    key = apikeys.generate()
    store.create_api_key(account.id, key.prefix, key.hash_hex, None)
    store.close()
    app = build_app(Settings(db=sqlite_url), demo_url=f"{demo_url}/v1")
    EXPORTER.clear()
    yield app, key.secret.reveal()
    app.state.runtime.store_executor.shutdown()


def chat(app: Starlette, secret: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        # The ASGI transport sends no lifespan events: run the app's start-up and shut-down.
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://gw") as client,
        ):
            return await client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}]},
                headers={"authorization": f"Bearer {secret}"},
            )

    return anyio.run(call)


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {s.name: s for s in spans}
    assert len(named) == len(spans), [s.name for s in spans]
    return named


def test_request_span_with_a_child_per_stage(gateway: tuple[Starlette, str]) -> None:
    app, secret = gateway
    response = chat(app, secret)
    assert response.status_code == 200, response.text
    spans = by_name(EXPORTER.get_finished_spans())
    assert set(spans) == {"ciyuan.request", *STAGES}
    root = spans["ciyuan.request"]
    assert root.parent is None
    assert root.context is not None
    for stage in STAGES:
        child = spans[stage]
        assert child.parent is not None and child.parent.span_id == root.context.span_id, stage
        assert child.context is not None and child.context.trace_id == root.context.trace_id
        assert root.start_time is not None and child.start_time is not None
        assert child.start_time >= root.start_time
    order = sorted(STAGES, key=lambda s: spans[s].start_time or 0)
    assert order == list(STAGES)
    cost = Amount.parse(response.headers["x-ciyuan-cost"])
    assert dict(root.attributes or {}) == {
        "ciyuan.api": "chat",
        "gen_ai.request.model": "gpt-4o",
        "ciyuan.request_id": response.headers["x-ciyuan-request-id"],
        "ciyuan.cost_nanos": cost.nanos,
        "ciyuan.status": "ok",
    }
    assert cost.nanos > 0
    for span in spans.values():
        assert span.status.status_code != trace.StatusCode.ERROR
        for value in (span.attributes or {}).values():
            text = str(value)
            assert "Zanzibar" not in text and PROMPT not in text
            assert secret not in text and secret[:12] not in text
        assert not span.events  # no exception or log events that could carry content


def test_failed_request_span_says_error_without_the_message(
    gateway: tuple[Starlette, str],
) -> None:
    app, secret = gateway
    response = chat(app, secret + "x")
    assert response.status_code == 401
    spans = by_name(EXPORTER.get_finished_spans())
    assert set(spans) == {"ciyuan.request", "ciyuan.authenticate"}
    root = spans["ciyuan.request"]
    assert root.status.status_code == trace.StatusCode.ERROR
    assert (root.attributes or {})["ciyuan.status"] == "error"
    assert spans["ciyuan.authenticate"].status.status_code == trace.StatusCode.ERROR
    for span in spans.values():
        assert secret not in str(span.status.description) and not span.events


def test_no_spans_when_tracing_is_off(gateway: tuple[Starlette, str]) -> None:
    app, secret = gateway
    app.state.runtime.tracing = False
    assert chat(app, secret).status_code == 200
    assert EXPORTER.get_finished_spans() == ()

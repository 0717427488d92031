"""``/metrics`` scraped and parsed with the Prometheus client's own parser after real traffic;
``/healthz`` and ``/readyz`` answer."""

from __future__ import annotations

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from ciyuan.pricing.money import Amount
from tests.e2e.conftest import Gateway, tracked


def scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(gateway.base_url + "/metrics", timeout=10)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_requests_tokens_and_cost(gateway: Gateway) -> None:
    _, key = gateway.customer("1")
    before = scrape(gateway)
    client = tracked(openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "count me"}], max_tokens=12
    )
    usage = raw.parse().usage
    assert usage is not None
    after = scrape(gateway)

    def delta(name: str, **labels: str) -> float:
        key_ = (name, tuple(sorted(labels.items())))
        return after.get(key_, 0.0) - before.get(key_, 0.0)

    labels = {"api": "chat", "model": "gpt-4o-mini"}
    assert delta("ciyuan_requests_total", status="ok", **labels) == 1
    assert delta("ciyuan_model_tokens_total", kind="input", **labels) == usage.prompt_tokens
    assert delta("ciyuan_model_tokens_total", kind="output", **labels) == usage.completion_tokens
    cost_nanos = Amount.parse(raw.headers["x-ciyuan-cost"]).nanos
    assert cost_nanos > 0
    assert delta("ciyuan_cost_nanos_total", model="gpt-4o-mini") == cost_nanos
    assert delta("ciyuan_request_duration_seconds_count", api="chat") == 1
    # The demo counts prompts with the same tokenizer, so the difference lands in the 0 bucket.
    assert (
        delta("ciyuan_prompt_tokens_reported_minus_counted_bucket", model="gpt-4o-mini", le="0.0")
        == 1
    )


def test_refusals_are_counted(gateway: Gateway) -> None:
    before = scrape(gateway)
    httpx.post(
        gateway.base_url + "/v1/chat/completions", json={}, headers={"authorization": "Bearer nope"}
    )
    after = scrape(gateway)
    key = ("ciyuan_refused_requests_total", (("code", "invalid_api_key"),))
    assert after.get(key, 0) - before.get(key, 0) == 1


def test_health_and_readiness(gateway: Gateway) -> None:
    assert httpx.get(gateway.base_url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(gateway.base_url + "/readyz").json() == {"status": "ready"}

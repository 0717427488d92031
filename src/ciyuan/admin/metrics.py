"""Prometheus metrics: what operators plug into the monitoring they already run.

One registry per gateway (not the library's global one), so tests and several apps in one
process never share counters. Labels are bounded sets (api, model, upstream, status): never an
account, a key or a request id, which would grow without limit and leak who uses what.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from ciyuan.pricing.usage import Usage

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
_LATENCY_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS_S: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)
_CHILDREN_CACHED_MAX: Final = 10_000
_DIFFERENCE_BUCKETS: Final = (-1000, -100, -10, -1, 0, 1, 10, 100, 1000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ciyuan_requests",
            "Metered requests by outcome.",
            ["api", "model", "status"],
            registry=r,
        )
        self.model_tokens = Counter(
            "ciyuan_model_tokens",
            "Model tokens billed, by kind.",
            ["api", "model", "kind"],
            registry=r,
        )
        self.cost_nanos = Counter(
            "ciyuan_cost_nanos", "Charged amount in nanos (1e-9 USD).", ["model"], registry=r
        )
        self.unbilled_nanos = Counter(
            "ciyuan_unbilled_nanos", "Cost the balance could not cover.", ["model"], registry=r
        )
        self.latency = Histogram(
            "ciyuan_request_duration_seconds",
            "Whole request time.",
            ["api"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.ttft = Histogram(
            "ciyuan_time_to_first_token_seconds",
            "Time to the first output byte.",
            ["api"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.overhead = Histogram(
            "ciyuan_gateway_overhead_seconds",
            "Time spent in the gateway itself, metering included.",
            ["api"],
            buckets=_OVERHEAD_BUCKETS_S,
            registry=r,
        )
        self.ledger_write = Histogram(
            "ciyuan_ledger_write_seconds",
            "Time of one ledger transaction (reserve or settle).",
            ["operation"],
            buckets=_OVERHEAD_BUCKETS_S,
            registry=r,
        )
        self.upstream_errors = Counter(
            "ciyuan_upstream_errors",
            "Upstream failures by error code.",
            ["upstream", "code"],
            registry=r,
        )
        self.refused = Counter(
            "ciyuan_refused_requests",
            "Requests refused before forwarding, by error code.",
            ["code"],
            registry=r,
        )
        self.prompt_difference = Histogram(
            "ciyuan_prompt_tokens_reported_minus_counted",
            "Provider-reported prompt tokens minus the local count (0 when the counter is exact).",
            ["model"],
            buckets=_DIFFERENCE_BUCKETS,
            registry=r,
        )
        self._children: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        self._labelled: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}
        self.reservations_pending = Gauge(
            "ciyuan_reservations_in_flight",
            "Requests holding a reservation in this process.",
            registry=r,
        )

    def labelled(self, metric: MetricWrapperBase, *values: str) -> Any:
        """``metric.labels(*values)``, remembered: ``labels()`` validates and locks on every
        call, a few µs a request on the hot path. Bounded like :meth:`_resolve`."""
        key = (metric, values)
        child = self._labelled.get(key)
        if child is None:
            child = metric.labels(*values)
            if len(self._labelled) < _CHILDREN_CACHED_MAX:
                self._labelled[key] = child
        return child

    def watch_commits(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Export the store's (commits, writes committed): group commit's writes per commit."""
        self.registry.register(_CommitCollector(counts))

    def settled(
        self,
        api: str,
        model: str,
        status: str,
        usage: Usage,
        source: str,
        prompt_local: int,
        cost_nanos: int,
        unbilled_nanos: int,
    ) -> None:
        children = self._children.get((api, model, status))
        if children is None:
            children = self._resolve(api, model, status)
        requests, input_, cached, output, reasoning, cost, unbilled, difference = children
        requests.inc()
        for counter, tokens in (
            (input_, usage.input_total - usage.cache_read_tokens),
            (cached, usage.cache_read_tokens),
            (output, usage.output_total - usage.reasoning_tokens),
            (reasoning, usage.reasoning_tokens),
        ):
            if tokens:
                counter.inc(tokens)
        if cost_nanos:
            cost.inc(cost_nanos)
        if unbilled_nanos:
            unbilled.inc(unbilled_nanos)
        if source == "reported":
            difference.observe(usage.input_total - prompt_local)

    def _resolve(self, api: str, model: str, status: str) -> tuple[Any, ...]:
        """The labelled children for one (api, model, status), looked up once: ``labels()`` on
        every request was a measurable share of the gateway's CPU. Bounded: models are routed
        names, and past the cap children are simply not cached."""
        children = (
            self.requests.labels(api, model, status),
            self.model_tokens.labels(api, model, "input"),
            self.model_tokens.labels(api, model, "cached"),
            self.model_tokens.labels(api, model, "output"),
            self.model_tokens.labels(api, model, "reasoning"),
            self.cost_nanos.labels(model),
            self.unbilled_nanos.labels(model),
            self.prompt_difference.labels(model),
        )
        if len(self._children) < _CHILDREN_CACHED_MAX:
            self._children[(api, model, status)] = children
        return children

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CommitCollector(Collector):
    def __init__(self, counts: Callable[[], tuple[int, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        commits, writes = self._counts()
        yield CounterMetricFamily(
            "ciyuan_ledger_commits", "Ledger COMMITs (each one fsync at durability=power).", commits
        )
        yield CounterMetricFamily(
            "ciyuan_ledger_writes_committed",
            "Ledger write transactions made durable; divided by commits, the group-commit batch.",
            writes,
        )

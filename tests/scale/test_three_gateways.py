"""Three gateway processes on one PostgreSQL and one Redis, as a load balancer would see them.

Gateways A and B are single processes; C is ``serve --workers 2`` (two processes on one port),
so four processes serve in all. Every gateway trusts a key lookup for 60 s, so a revocation
that lands sooner than that came over Redis pub/sub. Checked:

- a storm of concurrent streaming and non-streaming OpenAI SDK clients, spread over all three,
  spending one small balance: nothing is overdrawn, and every 2xx is charged — the sum of the
  charges the clients saw (x-ciyuan-cost, or the stream's usage chunk) equals the balance
  change and the usage events, to the nanosecond;
- a per-key limit of 30 requests per minute holds across all of them: the admitted count is
  exactly GCRA's bound (30 plus what refills while the test runs) plus any check that degraded
  (fail open, counted in /metrics; none expected with a healthy Redis);
- a revoked key is refused by every gateway within a second (pub/sub), not after the TTL.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from ciyuan.keycache import publish_revocation
from ciyuan.metering.ports import KeyOptions, Store
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from tests.conftest import Process
from tests.limits_e2e.harness import (
    chat,
    customer,
    gateway,
    pg_schema,
    shared_redis_url,
    spent,
    usage_totals,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
AUTH_TTL_S = 60
REVOCATION_BOUND_S = 1.0


@dataclass
class Cluster:
    bases: list[str]
    db_url: str
    redis_url: str
    store: Store


@pytest.fixture(scope="module")
def cluster(demo_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis_url = shared_redis_url()
    folder = tmp_path_factory.mktemp("scale")
    processes: list[Process] = []
    with pg_schema() as db_url, closing(open_store(db_url)) as store:
        try:
            bases = []
            for name, workers in (("a", 1), ("b", 1), ("c", 2)):
                process, base = gateway(
                    db_url,
                    demo_upstream,
                    folder / f"gateway-{name}.log",
                    CIYUAN_REDIS=redis_url,
                    CIYUAN_WORKERS=str(workers),
                    CIYUAN_AUTH_CACHE_TTL_S=str(AUTH_TTL_S),
                    # A loaded 2-core test box can take longer than the 50 ms default for a
                    # Redis round trip; fail-open would then (correctly) over-admit.
                    CIYUAN_RATE_LIMIT_TIMEOUT_S="1",
                )
                processes.append(process)
                bases.append(base)
            yield Cluster(bases, db_url, redis_url, store)
        finally:
            for process in processes:
                process.stop()


def _sdk(base: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)


def _one_call(base: str, key: str, stream: bool) -> tuple[int, int]:
    """(HTTP status, nanos charged as the client saw it) for one SDK call."""
    with _sdk(base, key) as sdk:
        messages: list[Any] = [{"role": "user", "content": "tell me about ledgers"}]
        try:
            if stream:
                chunks = list(
                    sdk.chat.completions.create(
                        model="gpt-4o-mini",
                        max_tokens=16,
                        messages=messages,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                )
                figures = (chunks[-1].model_extra or {})["ciyuan"]
                return 200, Amount.parse(figures["cost"]).nanos
            raw = sdk.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", max_tokens=16, messages=messages
            )
            raw.parse()
            return raw.status_code, Amount.parse(raw.headers["x-ciyuan-cost"]).nanos
        except openai.APIStatusError as error:
            return error.status_code, 0


def test_storm_never_overdraws_and_charges_every_2xx(cluster: Cluster) -> None:
    credit = Amount.parse("0.0004")
    who = customer(cluster.store, "0.0004")
    jobs = [(cluster.bases[i % 3], i % 2 == 0) for i in range(120)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda job: _one_call(job[0], who.key, job[1]), jobs))
    statuses = {status for status, _ in results}
    assert statuses <= {200, 402}, statuses
    served = [cost for status, cost in results if status == 200]
    assert 402 in statuses, "the balance should have run out during the storm"
    assert len(served) >= 10
    charged = spent(cluster.store, who.account_id)
    assert charged <= credit.nanos
    assert sum(served) == charged
    assert usage_totals(cluster.db_url, who.account_id) == (charged, len(served))
    balance = cluster.store.balance(who.account_id)
    assert balance.debits_pending == 0
    assert balance.credits_posted - balance.debits_posted >= 0


def _degraded_total(bases: list[str]) -> float:
    total = 0.0
    with httpx.Client(timeout=10) as client:
        for base in bases:
            text = client.get(f"{base}/metrics").text
            pattern = r"^ciyuan_rate_limiter_degraded_total\{[^}]*\} (\S+)$"
            total += sum(float(v) for v in re.findall(pattern, text, re.M))
    return total


def test_a_key_limit_holds_across_all_gateways(cluster: Cluster) -> None:
    rpm = 30
    who = customer(cluster.store, "5", KeyOptions(rpm=rpm))
    degraded_before = _degraded_total(cluster.bases)
    codes: list[int] = []
    lock = threading.Lock()

    def burst(index: int) -> None:
        with httpx.Client(timeout=30) as client:
            for step in range(10):
                code = chat(client, cluster.bases[(index + step) % 3], who.key).status_code
                with lock:
                    codes.append(code)

    started = time.monotonic()
    threads = [threading.Thread(target=burst, args=(i,)) for i in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    elapsed_s = time.monotonic() - started
    degraded = _degraded_total(cluster.bases) - degraded_before
    admitted = codes.count(200)
    assert set(codes) <= {200, 429}
    # GCRA: a full bucket of `rpm`, plus one request per 60/rpm seconds that pass.
    bound = rpm + math.ceil(elapsed_s * rpm / 60) + int(degraded)
    assert rpm <= admitted <= bound, (admitted, bound, elapsed_s, degraded)


def test_revocation_reaches_every_gateway_within_the_bound(cluster: Cluster) -> None:
    who = customer(cluster.store, "1")
    with httpx.Client(timeout=30) as client:
        for _ in range(2):  # warm every gateway's cache (and both workers of C, most likely)
            for base in cluster.bases:
                assert chat(client, base, who.key).status_code == 200
        cluster.store.revoke_api_key(who.prefix)
        revoked_at = time.monotonic()
        heard = publish_revocation(cluster.redis_url, who.prefix)
        assert heard is not None and heard >= 4  # A, B and both workers of C
        pending = set(cluster.bases)
        while pending and time.monotonic() - revoked_at < AUTH_TTL_S:
            for base in list(pending):
                # Twice on each, so both workers behind C's one port are likely asked.
                if all(chat(client, base, who.key).status_code == 401 for _ in range(2)):
                    pending.discard(base)
        took_s = time.monotonic() - revoked_at
    assert not pending
    assert took_s < REVOCATION_BOUND_S, f"revocation took {took_s:.2f} s"

"""The load generator: one closed-loop cell, run in its own process so it never shares an
event loop (or a GIL) with what it measures.

    python -m bench.gateway.loadgen '<CellSpec as JSON>'

prints one JSON object: the raw samples of the measured phase (latency, time to first byte of
a stream, the gateway's own ``x-ciyuan-overhead-ms``) and the phase's wall time.

``concurrency`` workers each send a request, wait for the whole answer, and send the next, so
the load follows the server's pace (closed loop). A warm-up phase at the same concurrency opens
every connection first and is not recorded. Every loop is bounded: by the phase's deadline, by
``requests_max``, and each request by ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, Final, TypeVar

import aiohttp

T = TypeVar("T")

MODEL: Final = "gpt-4o-mini"
PROMPT: Final = "Say hello to the benchmark in a few words."
OUTPUT_TOKENS_MAX: Final = 16
ERROR_EXAMPLES_MAX: Final = 5
TAIL_BYTES: Final = 64


@dataclass(frozen=True, slots=True)
class CellSpec:
    url: str
    api_key: str
    concurrency: int
    duration_s: float
    warmup_s: float
    stream: bool
    requests_max: int
    timeout_s: float


@dataclass(slots=True)
class Samples:
    latency_s: list[float] = field(default_factory=list)
    ttfb_s: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    warmup_requests: int = 0

    def fail(self, reason: str) -> None:
        self.errors += 1
        if len(self.error_examples) < ERROR_EXAMPLES_MAX:
            self.error_examples.append(reason)


def request_body(stream: bool) -> bytes:
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": OUTPUT_TOKENS_MAX,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


async def _read_stream(response: aiohttp.ClientResponse, started: float) -> tuple[float, bool]:
    """Time to the first body bytes, and whether the stream ended with ``[DONE]``."""
    first = 0.0
    tail = b""
    async for chunk in response.content.iter_any():
        if not first:
            first = time.perf_counter() - started
        tail = (tail + chunk)[-TAIL_BYTES:]
    return first, b"[DONE]" in tail


async def _one(
    session: aiohttp.ClientSession, spec: CellSpec, body: bytes, samples: Samples | None
) -> None:
    """Send one request and, when ``samples`` is given, record it there."""
    started = time.perf_counter()
    try:
        async with session.post(spec.url, data=body) as response:
            if spec.stream:
                ttfb, complete = await _read_stream(response, started)
            else:
                payload = await response.read()
                ttfb, complete = 0.0, b'"choices"' in payload
            latency = time.perf_counter() - started
            status = response.status
            overhead = response.headers.get("x-ciyuan-overhead-ms")
    except (aiohttp.ClientError, TimeoutError) as error:
        if samples is not None:
            samples.fail(f"{type(error).__name__}: {error}")
        return
    if samples is None:
        return
    if status != 200 or not complete:
        samples.fail(f"HTTP {status}, complete={complete}")
        return
    samples.latency_s.append(latency)
    if spec.stream:
        samples.ttfb_s.append(ttfb)
    if overhead is not None:
        samples.overhead_ms.append(float(overhead))


async def _phase(
    session: aiohttp.ClientSession, spec: CellSpec, duration_s: float, samples: Samples | None
) -> tuple[float, int]:
    """Run ``concurrency`` closed loops until the deadline: (wall time, requests sent)."""
    body = request_body(spec.stream)
    started = time.perf_counter()
    deadline = started + duration_s
    budget = [spec.requests_max]

    async def loop() -> None:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            await _one(session, spec, body, samples)

    await asyncio.gather(*(loop() for _ in range(spec.concurrency)))
    return time.perf_counter() - started, spec.requests_max - budget[0]


async def run_cell(spec: CellSpec) -> Samples:
    assert spec.concurrency >= 1 and spec.duration_s > 0 and spec.requests_max > 0
    connector = aiohttp.TCPConnector(limit=spec.concurrency)
    headers = {"authorization": f"Bearer {spec.api_key}", "content-type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    samples = Samples()
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout, auto_decompress=False
    ) as session:
        _, samples.warmup_requests = await _phase(session, spec, spec.warmup_s, None)
        samples.elapsed_s, _ = await _phase(session, spec, spec.duration_s, samples)
    return samples


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """Run a load generator's coroutine on uvloop when it is installed (a lighter client)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main() -> None:
    spec = CellSpec(**json.loads(sys.argv[1]))
    json.dump(asdict(run_fast(run_cell(spec))), sys.stdout)


if __name__ == "__main__":
    main()

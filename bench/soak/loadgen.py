"""The soak's load generator: a fixed number of closed loops sending a weighted mix of requests,
in its own process so it never shares an event loop (or a GIL) with the gateway it measures.

    python -m bench.soak.loadgen <file holding the LoadSpec as JSON>

The spec comes in a file, not on the command line, so the API keys and the admin key it holds
do not show in ``ps`` to everyone else on the machine.

Every finished request appends one line to ``spec.records_path``:
``<monotonic end time> <kind> <status> <latency ms> <outcome>``. ``time.monotonic`` is
CLOCK_MONOTONIC, shared by every process on the machine, so the orchestrator can bin these lines
into the same intervals as its /proc samples. ``status`` is 0 when no HTTP status arrived (a
transport error, or a hang-up we caused on purpose). At the end one JSON object goes to stdout:
counts, grants made, and the first few surprises.

Each request is bounded by ``timeout_s``, the run by ``duration_s``; a grant loop tops every
account up at a fixed pace so balances never run dry, and replays each grant with the same
idempotency key to check that the replay changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import IO, Final

import aiohttp

from bench.gateway.loadgen import run_fast

OPENAI_MODEL: Final = "gpt-4o-mini"
ANTHROPIC_MODEL: Final = "claude-haiku-4-5"
EMBEDDING_MODEL: Final = "text-embedding-3-small"
OUTPUT_TOKENS_MAX: Final = 24
DISCONNECT_AFTER_CHUNKS: Final = 3
CUT_AFTER_CHUNKS: Final = 4
EXAMPLES_MAX: Final = 8
FLUSH_EVERY_RECORDS: Final = 200


@dataclass(frozen=True, slots=True)
class LoadSpec:
    base_url: str
    api_keys: list[str]
    accounts: list[str]
    admin_key: str
    concurrency: int
    duration_s: float
    timeout_s: float
    grant_every_s: float
    grant_amount: str
    records_path: str
    seed: int


@dataclass(slots=True)
class Summary:
    requests: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    grants: int = 0
    grant_failures: int = 0
    examples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def note(self, text: str) -> None:
        if len(self.examples) < EXAMPLES_MAX:
            self.examples.append(text)


# What one request did, as the orchestrator judges it:
#   ok            a complete answer (or a stream that ended properly)
#   injected      the injected upstream 500, answered by the gateway's 502
#   cut           a stream the upstream cut on purpose (status 200, ends early)
#   disconnected  we hung up mid-stream on purpose
#   incomplete    status 200 but the body did not end as the protocol says it must
#   error         any other status, or a transport error we did not cause
Outcome = str


@dataclass(frozen=True, slots=True)
class Result:
    status: int
    outcome: Outcome
    detail: str = ""


def _chat_body(stream: bool, content: str) -> dict[str, object]:
    body: dict[str, object] = {
        "model": OPENAI_MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": OUTPUT_TOKENS_MAX,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _messages_body(content: str) -> dict[str, object]:
    return {
        "model": ANTHROPIC_MODEL,
        "max_tokens": OUTPUT_TOKENS_MAX,
        "stream": True,
        "messages": [{"role": "user", "content": content}],
    }


class Mix:
    """The request kinds, each a coroutine that sends one request and judges its answer."""

    def __init__(self, session: aiohttp.ClientSession, spec: LoadSpec, rng: random.Random):
        self.session = session
        self.spec = spec
        self.rng = rng
        self.weights: dict[str, tuple[int, Callable[[str], Awaitable[Result]]]] = {
            "chat": (30, self.chat),
            "chat_stream": (20, self.chat_stream),
            "messages_stream": (18, self.messages_stream),
            "embeddings": (12, self.embeddings),
            "fault_500": (5, self.fault_500),
            "cut_stream": (8, self.cut_stream),
            "disconnect": (7, self.disconnect),
        }
        self.kinds = list(self.weights)
        self.kind_weights = [weight for weight, _ in self.weights.values()]

    def pick(self) -> str:
        return self.rng.choices(self.kinds, weights=self.kind_weights)[0]

    def _prompt(self) -> str:
        return f"Soak request {self.rng.randrange(1_000_000)}: say something short."

    def _openai_headers(self, key: str, fault: str | None = None) -> dict[str, str]:
        headers = {"authorization": f"Bearer {key}"}
        if fault:
            headers["x-demo-fault"] = fault
        return headers

    async def chat(self, key: str) -> Result:
        url = self.spec.base_url + "/v1/chat/completions"
        body = _chat_body(False, self._prompt())
        async with self.session.post(url, json=body, headers=self._openai_headers(key)) as r:
            payload = await r.read()
            if r.status != 200:
                return Result(r.status, "error", payload[:200].decode(errors="replace"))
            ok = b'"choices"' in payload and "x-ciyuan-cost" in r.headers
            return Result(r.status, "ok" if ok else "incomplete")

    async def _stream(
        self, url: str, body: dict[str, object], headers: dict[str, str], end: bytes
    ) -> tuple[int, bool, bytes]:
        """(status, whether the stream ended with ``end``, the first bytes of an error)."""
        async with self.session.post(url, json=body, headers=headers) as r:
            tail = b""
            async for chunk in r.content.iter_any():
                tail = (tail + chunk)[-256:]
            return r.status, end in tail, tail[:200]

    async def chat_stream(self, key: str) -> Result:
        url = self.spec.base_url + "/v1/chat/completions"
        status, complete, tail = await self._stream(
            url, _chat_body(True, self._prompt()), self._openai_headers(key), b"[DONE]"
        )
        if status != 200:
            return Result(status, "error", tail.decode(errors="replace"))
        return Result(status, "ok" if complete else "incomplete")

    async def messages_stream(self, key: str) -> Result:
        url = self.spec.base_url + "/v1/messages"
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        status, complete, tail = await self._stream(
            url, _messages_body(self._prompt()), headers, b"message_stop"
        )
        if status != 200:
            return Result(status, "error", tail.decode(errors="replace"))
        return Result(status, "ok" if complete else "incomplete")

    async def embeddings(self, key: str) -> Result:
        url = self.spec.base_url + "/v1/embeddings"
        body = {"model": EMBEDDING_MODEL, "input": [self._prompt(), "a second input"]}
        async with self.session.post(url, json=body, headers=self._openai_headers(key)) as r:
            payload = await r.read()
            if r.status != 200:
                return Result(r.status, "error", payload[:200].decode(errors="replace"))
            return Result(r.status, "ok" if b'"embedding"' in payload else "incomplete")

    async def fault_500(self, key: str) -> Result:
        url = self.spec.base_url + "/v1/chat/completions"
        headers = self._openai_headers(key, "status:500")
        async with self.session.post(url, json=_chat_body(False, "fail"), headers=headers) as r:
            payload = await r.read()
            # The gateway answers an upstream 5xx with 502 and charges nothing.
            if r.status == 502:
                return Result(r.status, "injected")
            return Result(r.status, "error", payload[:200].decode(errors="replace"))

    async def cut_stream(self, key: str) -> Result:
        url = self.spec.base_url + "/v1/chat/completions"
        headers = self._openai_headers(key, f"cut:{CUT_AFTER_CHUNKS}")
        status, _, tail = await self._stream(
            url, _chat_body(True, self._prompt()), headers, b"[DONE]"
        )
        if status != 200:
            return Result(status, "error", tail.decode(errors="replace"))
        return Result(status, "cut")

    async def disconnect(self, key: str) -> Result:
        """Hang up after a few content chunks, while the upstream is still dripping more."""
        url = self.spec.base_url + "/v1/chat/completions"
        headers = self._openai_headers(key, "drip:20")
        body = _chat_body(True, self._prompt())
        body["max_tokens"] = 60
        async with self.session.post(url, json=body, headers=headers) as r:
            if r.status != 200:
                payload = await r.read()
                return Result(r.status, "error", payload[:200].decode(errors="replace"))
            seen = 0
            async for line in r.content:
                if line.startswith(b"data: ") and b'"content"' in line:
                    seen += 1
                    if seen >= DISCONNECT_AFTER_CHUNKS:
                        # Closing the response drops the connection instead of returning it
                        # to the pool, which is what a client that goes away does.
                        r.close()
                        return Result(r.status, "disconnected")
            return Result(r.status, "incomplete", "the stream ended before we hung up")


class Recorder:
    """Appends one line per request; flushed in batches so the file costs little."""

    def __init__(self, out: IO[str], summary: Summary):
        self.out = out
        self.summary = summary
        self.pending = 0

    def record(self, kind: str, result: Result, latency_s: float) -> None:
        self.out.write(
            f"{time.monotonic():.4f} {kind} {result.status} {latency_s * 1000:.3f} "
            f"{result.outcome}\n"
        )
        s = self.summary
        s.requests += 1
        s.by_kind[kind] = s.by_kind.get(kind, 0) + 1
        s.by_status[str(result.status)] = s.by_status.get(str(result.status), 0) + 1
        s.outcomes[result.outcome] = s.outcomes.get(result.outcome, 0) + 1
        if result.outcome in ("error", "incomplete"):
            s.note(f"{kind}: HTTP {result.status} {result.outcome} {result.detail}".strip())
        self.pending += 1
        if self.pending >= FLUSH_EVERY_RECORDS:
            self.out.flush()
            self.pending = 0


async def _worker(
    mix: Mix, spec: LoadSpec, recorder: Recorder, deadline: float, rng: random.Random
) -> None:
    while time.monotonic() < deadline:
        kind = mix.pick()
        key = rng.choice(spec.api_keys)
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(mix.weights[kind][1](key), spec.timeout_s)
        except (aiohttp.ClientError, TimeoutError) as error:
            result = Result(0, "error", f"{type(error).__name__}: {error}")
        recorder.record(kind, result, time.monotonic() - started)


async def _grant_once(
    session: aiohttp.ClientSession, spec: LoadSpec, account: str, key: str, summary: Summary
) -> None:
    """Grant, then replay the same grant: the replay must name the same transfer."""
    url = f"{spec.base_url}/admin/accounts/{account}/grants"
    headers = {"authorization": f"Bearer {spec.admin_key}", "idempotency-key": key}
    transfer_ids = []
    for _ in range(2):
        async with session.post(url, json={"amount": spec.grant_amount}, headers=headers) as r:
            payload = await r.read()
            if r.status not in (200, 201):
                summary.grant_failures += 1
                summary.note(f"grant {account}: HTTP {r.status} {payload[:200]!r}")
                return
            transfer_ids.append(json.loads(payload)["transfer_id"])
    if transfer_ids[0] != transfer_ids[1]:
        summary.grant_failures += 1
        summary.note(f"grant {account}: the replay made a second transfer {transfer_ids}")
        return
    summary.grants += 1


async def _granter(
    session: aiohttp.ClientSession, spec: LoadSpec, summary: Summary, deadline: float
) -> None:
    round_index = 0
    while True:
        await asyncio.sleep(min(spec.grant_every_s, max(0.0, deadline - time.monotonic())))
        if time.monotonic() >= deadline:
            return
        round_index += 1
        for account in spec.accounts:
            try:
                await asyncio.wait_for(
                    _grant_once(session, spec, account, f"soak-{round_index}-{account}", summary),
                    spec.timeout_s,
                )
            except (aiohttp.ClientError, TimeoutError) as error:
                summary.grant_failures += 1
                summary.note(f"grant {account}: {type(error).__name__}: {error}")


async def run(spec: LoadSpec) -> Summary:
    assert spec.concurrency >= 1 and spec.duration_s > 0 and spec.api_keys
    summary = Summary()
    rng = random.Random(spec.seed)
    # One connection per loop plus one for the granter: the pool never queues a request.
    connector = aiohttp.TCPConnector(limit=spec.concurrency + 1)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    started = time.monotonic()
    deadline = started + spec.duration_s
    with open(spec.records_path, "w", encoding="ascii") as out:
        recorder = Recorder(out, summary)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            mix = Mix(session, spec, rng)
            loops = [
                _worker(mix, spec, recorder, deadline, random.Random(rng.random()))
                for _ in range(spec.concurrency)
            ]
            await asyncio.gather(_granter(session, spec, summary, deadline), *loops)
        out.flush()
    summary.elapsed_s = time.monotonic() - started
    summary.by_kind = dict(Counter(summary.by_kind).most_common())
    return summary


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as spec_file:
        spec = LoadSpec(**json.load(spec_file))
    json.dump(asdict(run_fast(run(spec))), sys.stdout)


if __name__ == "__main__":
    main()

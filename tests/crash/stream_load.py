"""Concurrent client load on a gateway, through the official ``openai`` and ``anthropic`` SDKs.

Each worker thread loops over a random mix of streaming and plain chat completions and Anthropic
messages until told to stop (or until the gateway dies under it), and records what it was shown:
the request id, the charge the gateway reported, and whether the whole response arrived. The crash
test compares these records with the database after SIGKILLing the gateway.

Whether an OpenAI stream *ended* properly is read from the bytes on the wire, not from the SDK:
the ``openai`` SDK swallows ``[DONE]`` and would end its iteration the same way on a clean close
without it, so a transport wrapper keeps each response's last bytes. Anthropic's end of stream,
``message_stop``, is an event the SDK hands over.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import anthropic
import httpx2
import openai
from anthropic.types import RawContentBlockDeltaEvent, RawMessageDeltaEvent, RawMessageStopEvent

from ciyuan.pricing.money import Amount

CHAT_MODEL: Final = "gpt-4o-mini"
CLAUDE_MODEL: Final = "claude-haiku-4-5"
KINDS: Final = ("chat-stream", "chat-stream-bare", "messages-stream", "chat", "messages")
"""``chat-stream-bare`` asks for no usage: the gateway meters it all the same, but its client is
shown no figures. Streams are the likelier: they are where a kill lands mid-response."""
WEIGHTS: Final = (2, 1, 3, 1, 1)
TAIL_BYTES: Final = 64
WIRE_ERRORS: Final = (openai.APIError, anthropic.APIError, httpx2.HTTPError)
"""A connection refused, reset or cut mid-body: what a killed gateway does to its clients
(both SDKs run on ``httpx2``, and a raw read error can escape a stream's iterator)."""
WORDS: Final = ("ledger", "token", "stream", "crash", "meter", "credit", "hold", "settle")


@dataclass
class Result:
    """What one call showed its client."""

    kind: str
    request_id: str | None = None
    """From ``x-ciyuan-request-id``: known as soon as the response headers arrived."""
    cost: Amount | None = None
    """The charge the client was shown (header, or the stream's ``ciyuan`` figures)."""
    complete: bool = False
    """The whole response arrived: a 200 body, or a stream through ``[DONE]``/``message_stop``
    with the settled figures before it (when the client asked for usage)."""
    output_seen: bool = False
    """Some generated text reached the client."""
    error: str | None = None
    """How the call failed on the wire (the gateway died under it), if it did."""
    unexpected: str | None = None
    """Any other failure: a wrong figure, a malformed event; the test allows none."""


class _TailStream(httpx2.SyncByteStream):
    """Passes a response body through, keeping its last bytes in ``tail``."""

    def __init__(self, inner: httpx2.SyncByteStream) -> None:
        self._inner = inner
        self.tail = b""

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self.tail = (self.tail + chunk)[-TAIL_BYTES:]
            yield chunk

    def close(self) -> None:
        self._inner.close()


class TailTransport(httpx2.BaseTransport):
    """An HTTP transport that remembers the end of the last response body it carried.

    One per worker thread, which makes one call at a time, so ``last`` is that call's body.
    """

    def __init__(self) -> None:
        self._inner = httpx2.HTTPTransport()
        self.last: _TailStream | None = None

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        assert isinstance(response.stream, httpx2.SyncByteStream)
        self.last = _TailStream(response.stream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=self.last,
            extensions=response.extensions,
            request=request,
        )

    def ended_with(self, marker: bytes) -> bool:
        return self.last is not None and self.last.tail.rstrip().endswith(marker)

    def close(self) -> None:
        self._inner.close()


class _Worker:
    def __init__(self, base_url: str, key: str, seed: int, stop: threading.Event) -> None:
        self.rng = random.Random(seed)
        self.stop = stop
        self.transport = TailTransport()
        # No retries: a retried call would be a second request, and the record is of the first.
        self.openai = openai.OpenAI(
            base_url=base_url + "/v1",
            api_key=key,
            max_retries=0,
            timeout=30,
            http_client=httpx2.Client(transport=self.transport),
        )
        self.anthropic = anthropic.Anthropic(
            base_url=base_url, api_key=key, max_retries=0, timeout=30
        )
        self.results: list[Result] = []
        self.streaming = False
        """True while this worker holds a stream that has delivered output and not ended."""

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                kind = self.rng.choices(KINDS, WEIGHTS)[0]
                result = Result(kind)
                self.results.append(result)
                try:
                    self._call(result)
                except WIRE_ERRORS as error:
                    result.error = f"{type(error).__name__}: {error}"
                except Exception as error:  # reported by the test, not lost with the thread
                    result.unexpected = f"{type(error).__name__}: {error}"
                finally:
                    self.streaming = False
        finally:
            self.openai.close()
            self.anthropic.close()

    def _prompt(self) -> Any:
        """One user message (typed ``Any``: each SDK has its own TypedDict for the same shape)."""
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(3, 30)))
        return [{"role": "user", "content": words}]

    def _faults(self, stream: bool) -> dict[str, str]:
        # A stream drips its chunks so that a kill lands inside it; a plain call waits before its
        # first byte so that a kill lands between the hold and the settle.
        if stream:
            return {"x-demo-fault": f"drip:{self.rng.randint(5, 30)}"}
        return {"x-demo-delay-ms": str(self.rng.randint(20, 300))}

    def _call(self, result: Result) -> None:
        max_tokens = self.rng.randint(8, 48)
        if result.kind == "chat":
            raw = self.openai.chat.completions.with_raw_response.create(
                model=CHAT_MODEL, messages=self._prompt(), max_tokens=max_tokens,
                extra_headers=self._faults(stream=False),
            )  # fmt: skip
            result.request_id = raw.headers.get("x-ciyuan-request-id")
            completion = raw.parse()
            result.output_seen = bool(completion.choices[0].message.content)
            result.cost = Amount.parse(raw.headers["x-ciyuan-cost"])
            result.complete = True
        elif result.kind == "messages":
            raw_message = self.anthropic.messages.with_raw_response.create(
                model=CLAUDE_MODEL, messages=self._prompt(), max_tokens=max_tokens,
                extra_headers=self._faults(stream=False),
            )  # fmt: skip
            result.request_id = raw_message.headers.get("x-ciyuan-request-id")
            message = raw_message.parse()
            result.output_seen = bool(message.content)
            result.cost = Amount.parse(raw_message.headers["x-ciyuan-cost"])
            result.complete = True
        elif result.kind.startswith("chat-stream"):
            self._chat_stream(result, max_tokens, usage=result.kind == "chat-stream")
        else:
            self._messages_stream(result, max_tokens)

    def _chat_stream(self, result: Result, max_tokens: int, *, usage: bool) -> None:
        raw = self.openai.chat.completions.with_raw_response.create(
            model=CHAT_MODEL, messages=self._prompt(), max_tokens=max_tokens, stream=True,
            stream_options={"include_usage": usage}, extra_headers=self._faults(stream=True),
        )  # fmt: skip
        result.request_id = raw.headers.get("x-ciyuan-request-id")
        figures: dict[str, Any] | None = None
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                result.output_seen = self.streaming = True
            extra = chunk.model_extra or {}
            if "ciyuan" in extra:
                figures = extra["ciyuan"]
                self._shown(result, figures)
        shown = figures is not None or not usage
        result.complete = shown and self.transport.ended_with(b"data: [DONE]")

    def _messages_stream(self, result: Result, max_tokens: int) -> None:
        raw = self.anthropic.messages.with_raw_response.create(
            model=CLAUDE_MODEL, messages=self._prompt(), max_tokens=max_tokens, stream=True,
            extra_headers=self._faults(stream=True),
        )  # fmt: skip
        result.request_id = raw.headers.get("x-ciyuan-request-id")
        figures: dict[str, Any] | None = None
        stopped = False
        for event in raw.parse():
            if isinstance(event, RawContentBlockDeltaEvent):
                result.output_seen = self.streaming = True
            elif isinstance(event, RawMessageDeltaEvent):
                extra = event.model_extra or {}
                if "ciyuan" in extra:
                    figures = extra["ciyuan"]
                    self._shown(result, figures)
            elif isinstance(event, RawMessageStopEvent):
                stopped = True
        result.complete = figures is not None and stopped

    @staticmethod
    def _shown(result: Result, figures: dict[str, Any]) -> None:
        assert figures["request_id"] == result.request_id, (figures, result)
        result.cost = Amount.parse(figures["cost"])


class Load:
    """``clients`` worker threads calling one gateway until :meth:`stop`; worker ``i`` uses
    ``keys[i % len(keys)]``."""

    def __init__(self, base_url: str, keys: list[str], *, clients: int, seed: int) -> None:
        self._stop = threading.Event()
        self._workers = [
            _Worker(base_url, keys[i % len(keys)], seed * 1000 + i, self._stop)
            for i in range(clients)
        ]
        self._threads = [
            threading.Thread(target=worker.run, name=f"load-{i}", daemon=True)
            for i, worker in enumerate(self._workers)
        ]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stream_in_flight(self) -> bool:
        """Some worker is in the middle of a stream that has delivered output."""
        return any(worker.streaming for worker in self._workers)

    def results(self) -> list[Result]:
        return [result for worker in self._workers for result in list(worker.results)]

    def stop_starting(self) -> None:
        """Start no new call; the ones in flight go on."""
        self._stop.set()

    def stop(self, timeout_s: float = 60) -> list[Result]:
        """Stop after the calls in flight end (a killed gateway ends them at once)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
            assert not thread.is_alive(), f"{thread.name} is stuck in a call"
        return self.results()

"""Token counting throughput: Ciyuan's counters next to raw tiktoken in the same run.

    .venv/bin/python -m bench.tokens [--mb 10] [--requests 3000] [--repeat 5]

Prints, for ~10 MB of mixed text and a few thousand chat requests, the time of raw
``encode_ordinary`` on the same strings and of ``count_text`` / ``count_request``, and the
ratio ours / raw (target: chat <= 1.10). Each figure is the best of ``--repeat`` runs, with
ours and raw interleaved, so a noisy shared machine hurts both alike. Batch counting
(``count_texts``) uses every core, next to tiktoken's own threaded batch encode.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from bench.tokens.corpus import chat_requests, documents, request_texts
from ciyuan.tokens import count_request, count_text, count_texts
from ciyuan.tokens.encodings import get_encoding

MODEL = "gpt-4o"
T = TypeVar("T")


def _best(repeat: int, *runs: Callable[[], object]) -> list[float]:
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for index, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


def _sliced(repeat: int, items: Sequence[T], *work: Callable[[Sequence[T]], object]) -> list[float]:
    """Sum over slices of ~50 items of each variant's best time on that slice.

    On a shared machine another process can steal a core for a few milliseconds; taking the
    minimum per short slice, with the variants interleaved, keeps such bursts out of every
    variant alike instead of letting one unlucky whole run decide a ratio.
    """
    totals = [0.0] * len(work)
    for start in range(0, len(items), 50):
        chunk = items[start : start + 50]
        for index, seconds in enumerate(_best(repeat, *(partial(run, chunk) for run in work))):
            totals[index] += seconds
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tokens")
    parser.add_argument("--mb", type=float, default=10.0, help="mixed text to count, in MB")
    parser.add_argument("--requests", type=int, default=3000, help="chat requests to count")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (best is kept)")
    args = parser.parse_args()
    encoding = get_encoding("o200k_base")
    encode = encoding.encode_ordinary
    cores = os.cpu_count() or 1

    docs = documents(int(args.mb * 1_000_000))
    mb = sum(len(d.encode()) for d in docs) / 1e6
    count_text(MODEL, "warm up")
    raw_text, our_text = _sliced(
        args.repeat,
        docs,
        lambda chunk: [len(encode(d)) for d in chunk],
        lambda chunk: [count_text(MODEL, d) for d in chunk],
    )
    raw_batch, our_batch = _best(
        args.repeat,
        lambda: [len(t) for t in encoding.encode_ordinary_batch(docs, num_threads=cores)],
        lambda: count_texts(MODEL, docs),
    )
    assert sum(c.tokens for c in count_texts(MODEL, docs)) == sum(len(encode(d)) for d in docs)

    requests = chat_requests(args.requests)
    work = [(body, request_texts(body), "".join(request_texts(body))) for body in requests]
    chat_mb = sum(len(item[2].encode()) for item in work) / 1e6

    def raw_pieces(chunk: Sequence[tuple[Any, list[str], str]]) -> object:
        return [sum(len(encode(t)) for t in item[1]) for item in chunk]

    def raw_joined(chunk: Sequence[tuple[Any, list[str], str]]) -> object:
        return [len(encode(item[2])) for item in chunk]

    def ours(chunk: Sequence[tuple[Any, list[str], str]]) -> object:
        return [count_request(MODEL, item[0]) for item in chunk]

    raw_p, raw_j, our_c = _sliced(args.repeat, work, raw_pieces, raw_joined, ours)
    small = [item for item in work if len(item[0]["messages"]) <= 3 and len(item[2]) < 2000]
    raw_s, our_s = _sliced(args.repeat * 4, small, raw_pieces, ours)

    print(f"text: {len(docs)} documents, {mb:.1f} MB, {MODEL}, best of {args.repeat}")
    print(f"  raw encode_ordinary      {mb / raw_text:7.2f} MB/s")
    print(f"  count_text               {mb / our_text:7.2f} MB/s   ratio {our_text / raw_text:.3f}")
    print(f"  raw encode_ordinary_batch {mb / raw_batch:6.2f} MB/s   ({cores} threads)")
    print(
        f"  count_texts (all cores)  {mb / our_batch:7.2f} MB/s   ratio {our_batch / raw_batch:.3f}"
        f"   speed-up vs one core {raw_text / our_batch:.2f}x"
    )
    print(f"chat: {len(requests)} requests, {chat_mb:.1f} MB of message text")
    print(f"  raw encode, per string   {len(requests) / raw_p:9.0f} req/s")
    print(f"  raw encode, joined text  {len(requests) / raw_j:9.0f} req/s")
    print(
        f"  count_request            {len(requests) / our_c:9.0f} req/s"
        f"   ratio {our_c / raw_p:.3f} (vs per string)  {our_c / raw_j:.3f} (vs joined)"
    )
    print(
        f"  small requests ({len(small)}, <2 KB): ratio {our_s / raw_s:.3f}"
        f"   ({1e6 * our_s / max(len(small), 1):.1f} us/request,"
        f" {1e6 * (our_s - raw_s) / max(len(small), 1):.1f} us above raw)"
    )


if __name__ == "__main__":
    main()

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
from collections.abc import Callable

from bench.tokens.corpus import chat_requests, documents, request_texts

from ciyuan.tokens import count_request, count_text, count_texts
from ciyuan.tokens.encodings import get_encoding

MODEL = "gpt-4o"


def _best(repeat: int, *runs: Callable[[], object]) -> list[float]:
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for index, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


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
    raw_text, our_text = _best(
        args.repeat,
        lambda: [len(encode(d)) for d in docs],
        lambda: [count_text(MODEL, d) for d in docs],
    )
    raw_batch, our_batch = _best(
        args.repeat,
        lambda: [len(t) for t in encoding.encode_ordinary_batch(docs, num_threads=cores)],
        lambda: count_texts(MODEL, docs),
    )
    assert sum(c.tokens for c in count_texts(MODEL, docs)) == sum(len(encode(d)) for d in docs)

    requests = chat_requests(args.requests)
    texts = [request_texts(body) for body in requests]
    joined = ["".join(t) for t in texts]
    chat_mb = sum(len(j.encode()) for j in joined) / 1e6
    raw_pieces, raw_joined, ours = _best(
        args.repeat,
        lambda: [sum(len(encode(t)) for t in pieces) for pieces in texts],
        lambda: [len(encode(j)) for j in joined],
        lambda: [count_request(MODEL, body) for body in requests],
    )
    small = [
        b for b in requests if len(b["messages"]) <= 3 and len("".join(request_texts(b))) < 2000
    ]
    small_texts = [request_texts(b) for b in small]
    raw_small, ours_small = _best(
        args.repeat * 4,
        lambda: [sum(len(encode(t)) for t in pieces) for pieces in small_texts],
        lambda: [count_request(MODEL, body) for body in small],
    )

    print(f"text: {len(docs)} documents, {mb:.1f} MB, {MODEL}, best of {args.repeat}")
    print(f"  raw encode_ordinary      {mb / raw_text:7.2f} MB/s")
    print(f"  count_text               {mb / our_text:7.2f} MB/s   ratio {our_text / raw_text:.3f}")
    print(f"  raw encode_ordinary_batch {mb / raw_batch:6.2f} MB/s   ({cores} threads)")
    print(
        f"  count_texts (all cores)  {mb / our_batch:7.2f} MB/s   ratio {our_batch / raw_batch:.3f}"
        f"   speed-up vs one core {raw_text / our_batch:.2f}x"
    )
    print(f"chat: {len(requests)} requests, {chat_mb:.1f} MB of message text")
    print(f"  raw encode, per string   {len(requests) / raw_pieces:9.0f} req/s")
    print(f"  raw encode, joined text  {len(requests) / raw_joined:9.0f} req/s")
    print(
        f"  count_request            {len(requests) / ours:9.0f} req/s"
        f"   ratio {ours / raw_pieces:.3f} (vs per string)  {ours / raw_joined:.3f} (vs joined)"
    )
    print(
        f"  small requests ({len(small)}): ratio {ours_small / raw_small:.3f}"
        f"   ({1e6 * ours_small / max(len(small), 1):.1f} us/request)"
    )


if __name__ == "__main__":
    main()

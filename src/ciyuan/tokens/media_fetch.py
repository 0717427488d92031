"""Pixel sizes of remote images, fetched with a byte cap and a timeout (opt-in).

The counters never touch the network; a caller that wants exact counts for http(s) image
URLs fetches their first bytes here (or with its own async client) and passes the sizes to
``count_request(..., image_sizes=...)``. Each fetch asks for a byte range, reads at most
``bytes_max`` and gives up after ``timeout_s``; any failure leaves that URL unsized, so its
count stays the labelled worst case.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable
from typing import Final

from ciyuan.tokens.media_headers import image_size_of

IMAGE_HEAD_BYTES_MAX: Final = 64 * 1024
FETCH_TIMEOUT_S: Final = 5.0
URLS_MAX: Final = 64


def fetch_image_sizes(
    urls: Iterable[str],
    *,
    timeout_s: float = FETCH_TIMEOUT_S,
    bytes_max: int = IMAGE_HEAD_BYTES_MAX,
) -> dict[str, tuple[int, int]]:
    """Sizes of up to ``URLS_MAX`` http(s) images, by URL; unreadable ones are left out."""
    sizes: dict[str, tuple[int, int]] = {}
    for url in list(dict.fromkeys(urls))[:URLS_MAX]:
        if not url.startswith(("http://", "https://")):
            continue
        # S310: the scheme was checked above, so no file:// or custom opener is reachable.
        headers = {"Range": f"bytes=0-{bytes_max - 1}"}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
                head = response.read(bytes_max)
        except (OSError, ValueError):
            continue
        size = image_size_of(head)
        if size is not None:
            sizes[url] = size
    return sizes


def remote_image_urls(body: object) -> list[str]:
    """The http(s) image URLs of a chat, responses or Anthropic request body."""
    found: list[str] = []
    stack: list[object] = [body]
    for _ in range(100_000):  # a bound on the walk, whatever the body
        if not stack:
            break
        node = stack.pop()
        if isinstance(node, dict):
            for key in ("image_url", "source"):
                value = node.get(key)
                url = value.get("url") if isinstance(value, dict) else value
                if isinstance(url, str) and url.startswith(("http://", "https://")):
                    found.append(url)
            stack.extend(reversed(list(node.values())))  # reversed: pop in document order
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return list(dict.fromkeys(found))

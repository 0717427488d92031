"""Remote images sized from fetched headers (a real HTTP server on loopback), and bounded,
clear behaviour on absurd input: huge, deep or wrongly typed bodies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from ciyuan.errors import InvalidRequest
from ciyuan.tokens import count_request, image_size_of
from ciyuan.tokens.media_fetch import fetch_image_sizes, remote_image_urls
from conftest import png


class _Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = png(2048, 4096) + b"\0" * 200_000 if self.path == "/big.png" else b"not an image"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = HTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetched_sizes_make_remote_images_exact(server: str) -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": f"{server}/big.png", "detail": "high"},
                    },
                    {"type": "image_url", "image_url": {"url": f"{server}/junk.png"}},
                ],
            }
        ]
    }
    urls = remote_image_urls(body)
    assert urls == [f"{server}/big.png", f"{server}/junk.png"]
    sizes = fetch_image_sizes([*urls, "file:///etc/passwd"], timeout_s=2)
    assert sizes == {f"{server}/big.png": (2048, 4096)}
    result = count_request("gpt-4o", body, image_sizes=sizes)
    assert result.images == 1105 + (85 + 8 * 170)  # the junk one stays the labelled worst case
    assert not result.exact
    assert image_size_of(png(3, 4)) == (3, 4)


def test_unreachable_server_leaves_urls_unsized() -> None:
    assert fetch_image_sizes(["http://127.0.0.1:9/x.png"], timeout_s=0.5) == {}


def test_many_messages_and_huge_text() -> None:
    messages = [{"role": "user", "content": "hi"}] * 50_000
    result = count_request("gpt-4o", {"messages": messages})
    assert result.total == 3 + 50_000 * (3 + 1 + 1)
    big = count_request("gpt-4o", {"messages": [{"role": "user", "content": "a b\n" * 500_000}]})
    assert big.exact and big.text > 0


def test_deeply_nested_tool_schema_is_an_invalid_request_or_estimate() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(100_000):
        schema = {"type": "object", "properties": {"x": schema}}
    tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": schema}}
    try:
        result = count_request("gpt-4o", {"messages": [], "tools": [tool]})
    except InvalidRequest as error:
        assert error.param == "body"
    else:
        assert not result.exact


@pytest.mark.parametrize(
    "content",
    [10**100, 1.5, True, {"text": "x"}, [{"type": "image_url", "image_url": 5}]],
)
def test_wrong_types_are_invalid_requests(content: object) -> None:
    with pytest.raises(InvalidRequest):
        count_request("gpt-4o", {"messages": [{"role": "user", "content": content}]})


def test_gpt_oss_is_labelled_harmony() -> None:
    result = count_request("gpt-oss-120b", {"messages": [{"role": "user", "content": "hi"}]})
    assert result.encoding == "o200k_base"
    assert not result.exact and "harmony" in result.notes[0]

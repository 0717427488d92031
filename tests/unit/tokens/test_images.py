"""Image tokens: OpenAI's published tile and patch formulas at their edges, Anthropic's and
Gemini's rules, header-only size reading, and chat requests that carry images.

Published references: OpenAI's vision guide (1024x1024 high = 765, 2048x4096 high = 1105,
low = 85; patch example 1800x2400 = 1452 patches); Anthropic's vision guide (200x200 ~ 54,
1092x1092 ~ 1590); a community measurement of gpt-4o (128x64 image plus the five-word text
below: 97 prompt tokens at low detail, 267 at high).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ciyuan.errors import InvalidRequest
from ciyuan.tokens import count_request
from ciyuan.tokens.images import anthropic_tokens, image_tokens, patches, tiles_high
from ciyuan.tokens.media_headers import Base64Source, BytesSource, image_size
from conftest import data_url, gif, jpeg, png, webp_vp8, webp_vp8l, webp_vp8x


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [
        (1024, 1024, 765),
        (2048, 4096, 1105),
        (512, 512, 255),
        (513, 512, 425),
        (1, 1, 255),
        (128, 64, 255),
        (768, 768, 765),
        (769, 769, 765),
        (100_000, 100_000, 765),
        (10_000, 100, 765),  # panoramic: 2048x20 after the fit, 4 tiles wide
        (1, 2**31, 765),  # absurd: sides clamp to one pixel
        (4096, 8192, 1105),
    ],
)
def test_gpt4o_high_detail_edges(width: int, height: int, tokens: int) -> None:
    tally = image_tokens("gpt-4o", width, height, "high")
    assert tally.tokens == tokens
    assert tally.exact


def test_low_detail_is_the_base_whatever_the_size() -> None:
    assert image_tokens("gpt-4o", 4096, 8192, "low").tokens == 85
    assert image_tokens("gpt-4o", None, None, "low").exact
    assert image_tokens("gpt-4o-mini", 4096, 8192, "low").tokens == 2833
    assert image_tokens("o1", 10, 10, "low").tokens == 75


@pytest.mark.parametrize(
    ("model", "tokens"),
    [
        ("gpt-4o-mini-2024-07-18", 2833 + 4 * 5667),
        ("gpt-4.1", 765),
        ("gpt-4.5-preview", 765),
        ("o1", 75 + 4 * 150),
        ("o3", 75 + 4 * 150),
        ("gpt-5", 70 + 4 * 140),
        ("gpt-5-chat-latest", 70 + 4 * 140),
        ("computer-use-preview", 65 + 4 * 129),
    ],
)
def test_tile_rules_by_family(model: str, tokens: int) -> None:
    assert image_tokens(model, 1024, 1024, "high").tokens == tokens


def test_patch_formula() -> None:
    assert patches(1024, 1024) == 1024
    assert patches(1800, 2400) == 1452
    assert patches(128, 64) == 8
    assert patches(33, 33) == 4
    assert patches(100_000, 100_000) <= 1536
    assert 1 <= patches(1, 10**9) <= 1536
    mini = image_tokens("gpt-4.1-mini", 1800, 2400, "low")
    assert mini.tokens == 2353  # 1452 x 1.62 rounded up; detail does not apply
    assert not mini.exact and mini.note
    assert image_tokens("gpt-4.1-nano", 1024, 1024, "high").tokens == 2520
    assert image_tokens("o4-mini", 1024, 1024, "high").tokens == 1762
    assert image_tokens("gpt-5-mini", 1024, 1024, "auto").tokens == 1659


def test_tiles_never_exceed_the_resize_bound() -> None:
    for width in (1, 511, 512, 513, 767, 768, 769, 2047, 2048, 2049, 9999):
        for height in (1, 512, 768, 2048, 99_999):
            assert 1 <= tiles_high(width, height) <= 8


def test_anthropic_rule() -> None:
    assert anthropic_tokens(200, 200) == 54
    assert anthropic_tokens(1092, 1092) == 1590
    assert anthropic_tokens(1000, 1000) == 1334
    assert anthropic_tokens(8000, 8000) <= 1600
    assert anthropic_tokens(1, 10**9) >= 1
    claude = image_tokens("claude-sonnet-4-5", 1000, 1000, "auto")
    assert claude.tokens == 1334 and not claude.exact


def test_unknown_size_gives_the_largest_count_labelled() -> None:
    tally = image_tokens("gpt-4o", None, None, "high")
    assert tally.tokens == 85 + 8 * 170
    assert not tally.exact


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (png(1234, 567), "png"),
        (gif(320, 200), "gif"),
        (jpeg(4032, 3024), "jpeg"),
        (jpeg(640, 480, exif_bytes=65_000), "jpeg"),
        (webp_vp8x(3000, 2000), "webp"),
        (webp_vp8l(1000, 16000), "webp"),
        (webp_vp8(800, 600), "webp"),
    ],
)
def test_header_sizes(data: bytes, kind: str) -> None:
    size = image_size(BytesSource(data))
    assert size is not None and size.format == kind
    again = image_size(Base64Source(base64.b64encode(data).decode()))
    assert again == size


def test_headers_of_garbage_are_none() -> None:
    for data in (b"", b"\x89PNG", b"\xff\xd8\xff", b"GIF89a", b"RIFF\0\0\0\0WEBPVP8 ", b"\0" * 64):
        assert image_size(BytesSource(data)) is None
    assert image_size(Base64Source("!!!not base64!!!")) is None
    assert image_size(BytesSource(png(0, 10))) is None


def _image_message(url: str, detail: str | None = None) -> dict[str, Any]:
    image: dict[str, Any] = {"url": url}
    if detail:
        image["detail"] = detail
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": "repeat word from attached image"},
            {"type": "image_url", "image_url": image},
        ],
    }


@pytest.mark.parametrize(("detail", "total"), [("low", 97), ("high", 267)])
def test_chat_with_an_image_matches_the_measured_totals(detail: str, total: int) -> None:
    body = {"messages": [_image_message(data_url("image/png", png(128, 64)), detail)]}
    result = count_request("gpt-4o", body)
    assert result.total == total
    assert result.images == total - 12
    assert result.exact


def test_chat_image_by_http_url_is_a_labelled_estimate() -> None:
    result = count_request("gpt-4o", {"messages": [_image_message("https://x.test/a.png")]})
    assert not result.exact
    assert result.images == 85 + 8 * 170


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "messages[0].content[1].image_url.url"),
        ("not a url", "messages[0].content[1].image_url.url"),
    ],
)
def test_undecodable_images_are_invalid_requests(url: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        count_request("gpt-4o", {"messages": [_image_message(url)]})
    assert caught.value.param == param


def test_bad_detail_is_an_invalid_request() -> None:
    message = _image_message(data_url("image/png", png(10, 10)), "ultra")
    with pytest.raises(InvalidRequest) as caught:
        count_request("gpt-4o", {"messages": [message]})
    assert caught.value.param == "messages[0].content[1].image_url.detail"


def test_huge_data_url_reads_only_the_header() -> None:
    big = png(5000, 5000) + b"\0" * 20_000_000
    result = count_request("gpt-4o", {"messages": [_image_message(data_url("image/png", big))]})
    assert result.images == 765


def test_auto_detail_counts_as_high_labelled() -> None:
    auto = image_tokens("gpt-4o", 1024, 1024, "auto")
    assert auto.tokens == 765 and not auto.exact and auto.note

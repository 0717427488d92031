"""Audio and video tokens from header-read durations, and robustness on hostile bytes.

Rules under test (see audio.py and video.py): OpenAI input audio 1 token per 100 ms,
Gemini 32 per second; video = frames at 1/s x the image cost of a frame at low detail
(Gemini 258 per frame) + its audio track. Arbitrary bytes must never raise from a header
reader: they give None, and the request counter turns that into InvalidRequest.
"""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciyuan.errors import InvalidRequest
from ciyuan.tokens import count_request
from ciyuan.tokens.audio import audio_tokens
from ciyuan.tokens.media_headers import Base64Source, BytesSource, audio_info, image_size
from ciyuan.tokens.video import mp4_info
from conftest import data_url, mp3_cbr, mp3_xing, mp4, png, wav


def test_wav_duration_and_tokens() -> None:
    info = audio_info(BytesSource(wav(2500)))
    assert info is not None and info.duration_ms == 2500 and info.exact
    assert audio_tokens("gpt-4o-audio-preview", 2500).tokens == 25
    assert audio_tokens("gpt-4o-audio-preview", 2501).tokens == 26
    assert audio_tokens("gpt-4o-audio-preview", 2500, output=True).tokens == 50
    assert audio_tokens("gemini-2.5-flash", 2500).tokens == 80


def test_streamed_wav_with_unknown_length_uses_the_bytes_present() -> None:
    data = bytearray(wav(1000))
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)  # the data chunk's size, as a stream writes it
    info = audio_info(BytesSource(bytes(data)))
    assert info is not None and info.duration_ms == 1000 and not info.exact


def test_mp3_xing_frame_count() -> None:
    info = audio_info(BytesSource(mp3_xing(1000)))
    assert info is not None and info.exact
    assert info.duration_ms == 1000 * 1152 * 1000 // 44100


def test_mp3_constant_bitrate_is_inexact() -> None:
    info = audio_info(BytesSource(mp3_cbr(10)))
    assert info is not None and not info.exact
    assert 9_900 <= info.duration_ms <= 10_100


def test_chat_with_input_audio() -> None:
    audio = base64.b64encode(wav(3000)).decode()
    part = {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}
    body = {"messages": [{"role": "user", "content": [part]}]}
    result = count_request("gpt-4o-audio-preview", body)
    assert result.audio == 30
    assert not result.exact and result.notes


def test_undecodable_audio_is_an_invalid_request() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(InvalidRequest) as caught:
        count_request("gpt-4o-audio-preview", {"messages": [{"role": "user", "content": [part]}]})
    assert caught.value.param == "messages[0].content[0].input_audio.data"


def test_mp4_header_and_video_tokens() -> None:
    info = mp4_info(BytesSource(mp4(5000, 640, 360, mdat_bytes=100_000)))
    assert info is not None
    assert (info.duration_ms, info.width, info.height) == (5000, 640, 360)
    url = data_url("video/mp4", mp4(5000, 640, 360))
    part = {"type": "video_url", "video_url": {"url": url}}
    result = count_request("gpt-4o", {"messages": [{"role": "user", "content": [part]}]})
    assert result.images == 5 * 85 and result.audio == 50
    gemini = count_request("gemini-2.5-pro", {"messages": [{"role": "user", "content": [part]}]})
    assert gemini.images == 5 * 258 and gemini.audio == 160
    assert not result.exact


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_header_readers_never_raise(data: bytes) -> None:
    for prefix in (
        b"",
        b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR",
        b"RIFF\0\0\0\0WEBP",
        b"RIFF\0\0\0\0WAVE",
    ):
        source = BytesSource(prefix + data)
        image_size(source)
        audio_info(source)
        mp4_info(source)
    for prefix in (b"\xff\xd8", b"ID3\x04\0\0\0\0\0\x0a", b"\xff\xfb"):
        audio_info(BytesSource(prefix + data))
        image_size(BytesSource(prefix + data))
    text = base64.b64encode(data).decode()
    image_size(Base64Source(text[: len(text) // 2]))


def test_base64_source_random_access() -> None:
    data = bytes(range(256)) * 10
    source = Base64Source(base64.b64encode(data).decode())
    assert source.size == len(data)
    for offset in (0, 1, 2, 3, 100, 2555, 2559):
        for length in (1, 2, 3, 7, 100):
            assert source.read(offset, length) == data[offset : offset + length]


def test_png_claiming_four_billion_pixels_costs_nothing_extra() -> None:
    url = data_url("image/png", png(2**32 - 1, 2**32 - 1))
    part = {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
    result = count_request("gpt-4o", {"messages": [{"role": "user", "content": [part]}]})
    assert result.images == 765


def test_base64_wrapped_at_76_columns_reads_the_same() -> None:
    data = png(640, 480) + bytes(range(256)) * 4
    wrapped = base64.encodebytes(data).decode()  # MIME style: a newline every 76 characters
    assert "\n" in wrapped
    assert image_size(Base64Source(wrapped)) == image_size(BytesSource(data))
    assert Base64Source(wrapped).read(100, 50) == data[100:150]

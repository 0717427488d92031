"""Tokens of the media parts of a request: an image URL, input audio, a video URL.

Each function validates the part's shape (a wrong type is ``InvalidRequest`` naming the
parameter), reads only the media header through a ``ByteSource``, and returns the tokens with
a note when they are an estimate. A data URL whose bytes are not a PNG, JPEG, GIF or WebP
image (or WAV/MP3 audio) is rejected, as the providers reject it; an http(s) URL is not
fetched here, so its size is unknown and the count is the family's largest, labelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ciyuan.errors import InvalidRequest
from ciyuan.tokens.audio import audio_tokens
from ciyuan.tokens.images import DETAILS, image_tokens
from ciyuan.tokens.media_headers import Base64Source, audio_info, image_size, parse_data_url
from ciyuan.tokens.video import VideoInfo, mp4_info, video_tokens


@dataclass(frozen=True, slots=True)
class MediaTally:
    images: int = 0
    audio: int = 0
    note: str | None = None
    """None when exact."""


def _url_of(value: Any, param: str, key: str) -> tuple[str, str]:
    """The URL and detail of ``{"url": ..., "detail": ...}`` (or a bare URL string)."""
    if isinstance(value, str):
        return value, "auto"
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{param}.{key} must be an object", param=f"{param}.{key}")
    url = value.get("url")
    if not isinstance(url, str):
        raise InvalidRequest(f"{param}.{key}.url must be a string", param=f"{param}.{key}.url")
    detail = value.get("detail") or "auto"
    if detail not in DETAILS:
        raise InvalidRequest(
            f"{param}.{key}.detail must be one of low, high, auto", param=f"{param}.{key}.detail"
        )
    return url, str(detail)


ImageSizes = Mapping[str, tuple[int, int]]
"""Pixel sizes of remote images the caller already knows (fetched by the gateway), by URL."""


def image_url_tokens(
    model: str, value: Any, param: str, key: str = "image_url", sizes: ImageSizes | None = None
) -> MediaTally:
    url, detail = _url_of(value, param, key)
    data = parse_data_url(url)
    if data is None:
        if not url.startswith(("http://", "https://", "file-", "file:")):
            raise InvalidRequest(f"{param}.{key}.url is not a URL", param=f"{param}.{key}.url")
        known = sizes.get(url) if sizes else None
        if known is not None:
            tally = image_tokens(model, known[0], known[1], detail)
        else:
            tally = image_tokens(model, None, None, detail)
    else:
        size = image_size(data.source)
        if size is None:
            raise InvalidRequest(
                f"{param}.{key}.url is not a PNG, JPEG, GIF or WebP image",
                param=f"{param}.{key}.url",
            )
        tally = image_tokens(model, size.width, size.height, detail)
    return MediaTally(images=tally.tokens, note=tally.note)


def image_base64_tokens(model: str, data: str, param: str) -> MediaTally:
    """An image given as bare base64 (Anthropic's ``source.data``)."""
    size = image_size(Base64Source(data))
    if size is None:
        raise InvalidRequest(f"{param} is not a PNG, JPEG, GIF or WebP image", param=param)
    tally = image_tokens(model, size.width, size.height, "high")
    return MediaTally(images=tally.tokens, note=tally.note)


def input_audio_tokens(model: str, value: Any, param: str) -> MediaTally:
    if not isinstance(value, Mapping) or not isinstance(value.get("data"), str):
        raise InvalidRequest(
            f"{param}.input_audio.data must be a string", param=f"{param}.input_audio"
        )
    info = audio_info(Base64Source(value["data"]))
    if info is None:
        raise InvalidRequest(
            f"{param}.input_audio.data is not WAV or MP3 audio", param=f"{param}.input_audio.data"
        )
    tally = audio_tokens(model, info.duration_ms)
    return MediaTally(audio=tally.tokens, note=f"{tally.note} (estimate)")


def video_url_tokens(model: str, value: Any, param: str) -> MediaTally:
    url, _detail = _url_of(value, param, "video_url")
    data = parse_data_url(url)
    info = mp4_info(data.source) if data is not None else None
    if info is None:
        # A video we cannot read: one minute at the sampling rate, labelled.
        info = VideoInfo(60_000, None, None)
        tally = video_tokens(model, info)
        return MediaTally(tally.images, tally.audio, f"{tally.note}; length unknown, 60 s assumed")
    tally = video_tokens(model, info)
    return MediaTally(tally.images, tally.audio, tally.note)

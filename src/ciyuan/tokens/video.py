"""Video input tokens: sampled frames x image tokens, plus the audio track (an estimate).

No OpenAI chat model takes video directly; OpenAI-compatible servers (vLLM with Qwen-VL) and
Gemini do. The documented rule: frames are sampled at ``FRAMES_PER_S`` (Gemini's default)
and at most ``FRAMES_MAX``; each frame costs what an image of the video's frame size costs
the model at ``detail: low`` (Gemini: 258 per frame); the audio track costs what audio of
the same duration costs. Duration and frame size come from the MP4/MOV ``moov`` box, read
through a ``ByteSource`` that skips the media data without decoding it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ciyuan.tokens.audio import audio_tokens
from ciyuan.tokens.images import image_tokens
from ciyuan.tokens.media_headers import STEPS_MAX, ByteSource
from ciyuan.tokens.registry import normalize_model

FRAMES_PER_S: Final = 1
FRAMES_MAX: Final = 3600
_CONTAINERS: Final = frozenset({b"moov", b"trak", b"mdia"})


@dataclass(frozen=True, slots=True)
class VideoInfo:
    duration_ms: int
    width: int | None
    height: int | None


def mp4_info(source: ByteSource) -> VideoInfo | None:
    """Duration (``mvhd``) and the first visual track's size (``tkhd``) of an MP4/MOV."""
    duration_ms: int | None = None
    width = height = None
    offset, end = 0, source.size
    stack: list[int] = []
    for _ in range(STEPS_MAX):
        if offset + 8 > end:
            if not stack:
                break
            offset, end = end, stack.pop()
            continue
        header = source.read(offset, 16)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header[:8])
        body = 8
        if size == 1 and len(header) >= 16:
            (size,) = struct.unpack(">Q", header[8:16])
            body = 16
        elif size == 0:
            size = end - offset
        if size < body:
            break
        if kind in _CONTAINERS:
            stack.append(end)
            offset, end = offset + body, min(offset + size, end)
            continue
        if kind == b"mvhd":
            duration_ms = _mvhd_duration_ms(source.read(offset + body, 32))
        elif kind == b"tkhd" and width is None:
            box = source.read(offset + body, min(size - body, 104))
            if len(box) >= 8:
                w, h = struct.unpack(">II", box[-8:])
                if w >> 16 and h >> 16:
                    width, height = w >> 16, h >> 16
        offset += size
    if duration_ms is None:
        return None
    return VideoInfo(duration_ms, width, height)


def _mvhd_duration_ms(box: bytes) -> int | None:
    if len(box) < 20:
        return None
    if box[0] == 1 and len(box) >= 32:
        timescale, duration = struct.unpack(">IQ", box[20:32])
    else:
        timescale, duration = struct.unpack(">II", box[12:20])
    return duration * 1000 // timescale if timescale else None


@dataclass(frozen=True, slots=True)
class VideoTally:
    images: int
    audio: int
    note: str


def video_tokens(model: str, info: VideoInfo, *, with_audio: bool = True) -> VideoTally:
    frames = min(FRAMES_MAX, max(1, -(-info.duration_ms * FRAMES_PER_S // 1000)))
    if "gemini" in normalize_model(model):
        per_frame = 258
    else:
        per_frame = image_tokens(model, info.width, info.height, "low").tokens
    audio = audio_tokens(model, info.duration_ms).tokens if with_audio else 0
    note = f"video: {frames} frames at {FRAMES_PER_S}/s x {per_frame} + audio track (estimate)"
    return VideoTally(frames * per_frame, audio, note)

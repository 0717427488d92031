"""Sizes and durations read from media headers only: never a full decode, bounded work.

A ``ByteSource`` gives random access to the bytes of a file, a ``bytes`` object or a base64
payload (a data URL) without decoding all of it: base64 maps every 3 bytes to 4 characters,
so the bytes at any offset decode from a small window of the text. Parsers read at most
``READ_BYTES_MAX`` bytes in total and walk at most ``STEPS_MAX`` boxes or markers, so a
hostile file costs microseconds whatever it claims. Anything unrecognised returns None and
the caller falls back to a labelled estimate.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Final, Protocol

READ_BYTES_MAX: Final = 1 << 20
STEPS_MAX: Final = 4096


class ByteSource(Protocol):
    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class BytesSource:
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


class Base64Source:
    """Random access into base64 text; malformed text reads as empty bytes."""

    def __init__(self, text: str) -> None:
        # MIME-wrapped base64 (a newline every 76 characters) would shift every offset;
        # these scans are C-speed and the copy happens only for such payloads.
        if "\n" in text or "\r" in text or " " in text:
            text = "".join(text.split())
        self._text = text.rstrip("=")
        whole, rest = divmod(len(self._text), 4)
        self._size = whole * 3 + {0: 0, 1: 0, 2: 1, 3: 2}[rest]

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self._size or length <= 0:
            return b""
        first = offset // 3
        last = -(-min(offset + length, self._size) // 3)
        chunk = self._text[first * 4 : last * 4]
        chunk += "=" * (-len(chunk) % 4)
        try:
            decoded = base64.b64decode(chunk, validate=False)
        except (binascii.Error, ValueError):
            return b""
        skip = offset - first * 3
        return decoded[skip : skip + length]


@dataclass(frozen=True, slots=True)
class DataUrl:
    mime: str
    source: ByteSource


def parse_data_url(url: str) -> DataUrl | None:
    """``data:<mime>;base64,<payload>`` -> its mime type and a lazy view of its bytes."""
    if not url.startswith("data:"):
        return None
    comma = url.find(",", 5, 5 + 256)
    if comma < 0:
        return None
    meta = url[5:comma].split(";")
    if "base64" not in meta[1:]:
        return None
    return DataUrl(meta[0].strip().lower(), Base64Source(url[comma + 1 :]))


@dataclass(frozen=True, slots=True)
class ImageSize:
    width: int
    height: int
    format: str


def image_size(source: ByteSource) -> ImageSize | None:
    """The pixel size of a PNG, GIF, WebP or JPEG image from its header."""
    # Padding a truncated header with zeros makes every size read below zero, which is None.
    head = source.read(0, 32).ljust(32, b"\0")
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return _sized(width, height, "png")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", head[6:10])
        return _sized(width, height, "gif")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(source)
    return None


def _sized(width: int, height: int, kind: str) -> ImageSize | None:
    return ImageSize(width, height, kind) if width > 0 and height > 0 else None


def _webp_size(head: bytes) -> ImageSize | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return _sized(width & 0x3FFF, height & 0x3FFF, "webp")
    if chunk == b"VP8L" and head[20] == 0x2F:
        b0, b1, b2, b3 = head[21:25]
        width = 1 + (b0 | (b1 & 0x3F) << 8)
        height = 1 + (b1 >> 6 | b2 << 2 | (b3 & 0x0F) << 10)
        return _sized(width, height, "webp")
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(head[24:27], "little")
        height = 1 + int.from_bytes(head[27:30], "little")
        return _sized(width, height, "webp")
    return None


_JPEG_SOF: Final = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)


def _jpeg_size(source: ByteSource) -> ImageSize | None:
    offset = 2
    for _ in range(STEPS_MAX):
        if offset > READ_BYTES_MAX * 16:
            return None
        marker = source.read(offset, 4)
        if len(marker) < 4 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if kind == 0x01 or 0xD0 <= kind <= 0xD8:  # markers without a length
            offset += 2
            continue
        (length,) = struct.unpack(">H", marker[2:4])
        if kind in _JPEG_SOF:
            frame = source.read(offset + 5, 4)
            if len(frame) < 4:
                return None
            height, width = struct.unpack(">HH", frame)
            return _sized(width, height, "jpeg")
        if kind in (0xD9, 0xDA) or length < 2:  # end of image or start of scan: no SOF
            return None
        offset += 2 + length
    return None


@dataclass(frozen=True, slots=True)
class AudioInfo:
    duration_ms: int
    format: str
    exact: bool
    """False when the duration came from a size/bitrate guess rather than the header."""


def audio_info(source: ByteSource) -> AudioInfo | None:
    """The duration of a WAV or MP3 recording from its headers."""
    head = source.read(0, 12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _wav_info(source)
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        from ciyuan.tokens.mp3_header import mp3_info  # lazy: a rare path

        return mp3_info(source)
    return None


def _wav_info(source: ByteSource) -> AudioInfo | None:
    offset = 12
    byte_rate = 0
    for _ in range(64):
        header = source.read(offset, 8)
        if len(header) < 8:
            return None
        kind, length = header[:4], struct.unpack("<I", header[4:8])[0]
        if kind == b"fmt ":
            fmt = source.read(offset + 8, 16)
            if len(fmt) < 16:
                return None
            byte_rate = struct.unpack("<I", fmt[8:12])[0]
        elif kind == b"data":
            if byte_rate == 0:
                return None
            available = source.size - offset - 8
            # Streamed WAVs write 0 or 0xFFFFFFFF as the data size: use what is there.
            exact = 0 < length <= available
            data_bytes = length if exact else available
            return AudioInfo(data_bytes * 1000 // byte_rate, "wav", exact)
        offset += 8 + length + (length & 1)
    return None


def image_size_of(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of an image file (64 KiB covers nearly all
    JPEGs), for callers that fetch remote images; None when not a PNG, GIF, WebP or JPEG."""
    size = image_size(BytesSource(head))
    return None if size is None else (size.width, size.height)

"""Builders of real media headers (PNG, GIF, WebP, JPEG, WAV, MP3, MP4) for the token tests.

Each builder writes the bytes a real encoder would put at the start of the file, which is all
the counters read; pixel data is left out (the counters never decode it).
"""

from __future__ import annotations

import base64
import io
import struct
import wave


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\xf7\0\0" + b"\0" * 16


def webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0"
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | (height - 1) << 14
    body = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", bits)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webp_vp8(width: int, height: int) -> bytes:
    frame = b"\0\0\0" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    body = b"VP8 " + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def jpeg(width: int, height: int, *, exif_bytes: int = 0) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    app1 = (
        b"\xff\xe1" + struct.pack(">H", exif_bytes + 2) + b"\0" * exif_bytes if exif_bytes else b""
    )
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\0" * 9
    return b"\xff\xd8" + app0 + app1 + sof + b"\xff\xda\0\x02" + b"\0" * 32 + b"\xff\xd9"


def wav(duration_ms: int, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(b"\0\0" * (rate * duration_ms // 1000))
    return out.getvalue()


def mp3_xing(frames: int) -> bytes:
    """An MPEG-1 Layer III, 44.1 kHz stereo first frame carrying a Xing frame count."""
    header = b"\xff\xfb\x90\x64"  # 128 kbps, 44100 Hz, joint stereo
    side_info = b"\0" * 32
    xing = b"Xing" + struct.pack(">II", 1, frames)
    return b"ID3\x04\0\0\0\0\0\x0a" + b"\0" * 10 + header + side_info + xing + b"\0" * 400


def mp3_cbr(seconds: int) -> bytes:
    """Constant 128 kbps frames with no Xing header: duration from size and bitrate."""
    frame = b"\xff\xfb\x90\x64" + b"\0" * 413  # 417-byte frames at 128 kbps / 44.1 kHz
    return frame * (seconds * 128_000 // 8 // 417)


def mp4(duration_ms: int, width: int, height: int, *, mdat_bytes: int = 1000) -> bytes:
    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    mvhd = b"\0\0\0\0" + struct.pack(">IIII", 0, 0, 1000, duration_ms) + b"\0" * 80
    tkhd = b"\0\0\0\x07" + b"\0" * 72 + struct.pack(">II", width << 16, height << 16)
    moov = box(b"moov", box(b"mvhd", mvhd) + box(b"trak", box(b"tkhd", tkhd)))
    return box(b"ftyp", b"isom\0\0\0\0") + box(b"mdat", b"\0" * mdat_bytes) + moov


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"

"""MP3 duration from the first frame header: Xing/Info or VBRI frame counts, else bitrate.

With a Xing/Info or VBRI header the duration is exact (frames x samples per frame); a file
without one is taken as constant-bitrate and its duration as bytes x 8 / bitrate, which is
labelled inexact.
"""

from __future__ import annotations

import struct
from typing import Final

from ciyuan.tokens.media_headers import AudioInfo, ByteSource

_BITRATES_KBPS: Final[dict[tuple[int, int], tuple[int, ...]]] = {
    # (MPEG-1?, layer) -> bitrate by index; MPEG-2 and 2.5 share the second set.
    (1, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (0, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (0, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (0, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES: Final = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_SYNC_SCAN_BYTES: Final = 4096


def _audio_start(source: ByteSource) -> int:
    head = source.read(0, 10)
    if head[:3] != b"ID3" or len(head) < 10:
        return 0
    size = 0
    for byte in head[6:10]:
        size = size << 7 | (byte & 0x7F)
    footer = 10 if head[5] & 0x10 else 0
    return 10 + size + footer


def mp3_info(source: ByteSource) -> AudioInfo | None:
    start = _audio_start(source)
    window = source.read(start, _SYNC_SCAN_BYTES)
    for index in range(len(window) - 3):
        if window[index] == 0xFF and window[index + 1] & 0xE0 == 0xE0:
            info = _frame_info(source, start + index, window[index : index + 4])
            if info is not None:
                return info
    return None


def _frame_info(source: ByteSource, frame: int, header: bytes) -> AudioInfo | None:
    version = header[1] >> 3 & 3
    layer = 4 - (header[1] >> 1 & 3)
    bitrate_index = header[2] >> 4
    rate_index = header[2] >> 2 & 3
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = 1 if version == 3 else 0
    bitrate_kbps = _BITRATES_KBPS[(mpeg1, layer)][bitrate_index]
    sample_rate = _SAMPLE_RATES[version][rate_index]
    samples = 384 if layer == 1 else 1152 if layer == 2 or mpeg1 else 576
    mono = header[3] >> 6 == 3
    side_info = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    frames = _xing_frames(source.read(frame + 4 + side_info, 16))
    if frames is None:
        frames = _vbri_frames(source.read(frame + 36, 18))
    if frames is not None:
        return AudioInfo(frames * samples * 1000 // sample_rate, "mp3", True)
    audio_bytes = source.size - frame
    return AudioInfo(audio_bytes * 8 // bitrate_kbps, "mp3", False)


def _xing_frames(block: bytes) -> int | None:
    if len(block) < 12 or block[:4] not in (b"Xing", b"Info"):
        return None
    (flags,) = struct.unpack(">I", block[4:8])
    if not flags & 1:
        return None
    (frames,) = struct.unpack(">I", block[8:12])
    return int(frames)


def _vbri_frames(block: bytes) -> int | None:
    if len(block) < 18 or block[:4] != b"VBRI":
        return None
    (frames,) = struct.unpack(">I", block[14:18])
    return int(frames)

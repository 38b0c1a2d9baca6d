"""Damaged copies of persisted files, as a crash, a full disk or a failing medium leaves them (tests)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

PROBED_BYTES = 16  # bits flipped at the start of each entry's deflate stream, where its block headers are


def truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def flipped_so_that_zlib_fails(good: bytes) -> bytes:
    """`good` (an .npz) with one bit flipped at the start of an entry's compressed data, so that inflating
    it raises zlib.error (the damage that once escaped the keyframe loader; a flip elsewhere is mostly caught
    by the zip CRC as BadZipFile)."""
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        entries = [(info.header_offset, info.filename) for info in archive.infolist() if info.compress_type == zipfile.ZIP_DEFLATED]
    for offset, name in entries:
        # local header: 30 bytes, then the name and the extra field, whose lengths sit at bytes 26 and 28
        name_len, extra_len = struct.unpack_from("<HH", good, offset + 26)
        start = offset + 30 + name_len + extra_len
        for i in range(start, min(start + PROBED_BYTES, len(good))):
            for bit in range(8):
                data = bytearray(good)
                data[i] ^= 1 << bit
                try:
                    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
                        archive.read(name)
                except zlib.error:
                    return bytes(data)
                except Exception:  # another kind of damage: try the next bit
                    continue
    raise ValueError("no single-bit flip makes zlib fail on this file")


def damage_keyframe_files(directory: Path, good: bytes, first_index: int) -> list[Path]:
    """Beside the files in `directory`: a truncated, an empty and a bit-flipped keyframe file and a leftover
    temporary, numbered from `first_index`; the paths written."""
    names = [f"keyframe_{first_index + i:06d}.npz" for i in range(3)] + [f"keyframe_{first_index + 3:06d}.tmp.npz"]
    contents = [truncated(good), b"", flipped_so_that_zlib_fails(good), good]
    paths = [directory / name for name in names]
    for path, data in zip(paths, contents):
        path.write_bytes(data)
    return paths

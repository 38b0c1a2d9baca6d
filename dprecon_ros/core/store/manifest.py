"""The versioned on-disk format of a saved map: a manifest naming the format, its version and a checksum
of every file, so a foreign, newer or damaged map is refused with a clear message instead of half-loaded."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

FORMAT = "dprecon_ros.map"
VERSION = 2  # 2: SDF fields are pyramids of levels
MANIFEST = "map.json"


class MapFormatError(ValueError):
    """A saved map cannot be read: not ours, written by a newer version, or damaged."""


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_manifest(directory: Path, files: list[str], extra: dict | None = None) -> None:
    """Written last: a map without a manifest (a save cut short) is not taken for a complete one."""
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": time.time(),
        "files": {name: file_digest(directory / name) for name in files},
        **(extra or {}),
    }
    atomic_write_bytes(directory / MANIFEST, json.dumps(manifest, indent=1).encode())


def read_manifest(directory: Path) -> dict:
    """The manifest after checking format, version and every file's checksum; MapFormatError otherwise."""
    path = directory / MANIFEST
    if not path.is_file():
        raise MapFormatError(f"{directory}: no {MANIFEST}; not a saved dprecon_ros map (or its save did not finish)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MapFormatError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise MapFormatError(f"{path}: format {found!r} is not {FORMAT!r}")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise MapFormatError(f"{path}: format version {version!r} is newer than this dprecon_ros reads ({VERSION}); upgrade to load it")
    for name, digest in manifest.get("files", {}).items():
        file = directory / name
        if not file.is_file():
            raise MapFormatError(f"{directory}: {name} is missing")
        if file_digest(file) != digest:
            raise MapFormatError(f"{file}: checksum mismatch; the file is damaged")
    return manifest

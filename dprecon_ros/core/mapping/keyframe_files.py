"""One keyframe per `.npz` file, and reading a directory of them that may hold damaged ones.

Files on disk outlive the process that wrote them: a crash leaves a temporary behind, a full disk a
truncated file, a failing medium a flipped bit. Any such damage surfaces as one `KeyframeFileError`, and
`scan_directory` skips (and optionally moves aside) what it cannot read, so one bad file never costs the
rest of the map or stops a node from starting.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.types import CameraIntrinsics, Frame, Keyframe

log = logging.getLogger("dprecon_ros")

FILE_PREFIX = "keyframe_"
FILE_SUFFIX = ".npz"
TMP_SUFFIX = ".tmp.npz"  # written first, renamed when complete: one left over is a write cut short
DAMAGED_DIR = "damaged"  # where unreadable files are moved, beside the files they were found among
ARRAY_NAMES = {"rgb", "instance", "T_world_camera", "meta", "depth_m"}  # what save_keyframe writes
LOGGED_REASONS = 5  # a scan's warning names this many damaged files, then says how many more


class KeyframeFileError(ValueError):
    """A keyframe file cannot be read: truncated, empty, corrupted, not ours, or internally inconsistent."""


def keyframe_file_name(index: int) -> str:
    return f"{FILE_PREFIX}{index:06d}{FILE_SUFFIX}"


def save_keyframe(path: Path, kf: Keyframe) -> None:
    """Write atomically: a temporary first, renamed over `path` once complete."""
    f = kf.frame
    K = f.intrinsics
    meta = {
        "index": kf.index,
        "stamp": f.stamp,
        "labels": {str(k): v for k, v in f.labels.items()},
        "instance_to_object": {str(k): v for k, v in kf.instance_to_object.items()},
        "intrinsics": [K.fx, K.fy, K.cx, K.cy, K.width, K.height],
    }
    tmp = path.with_suffix(TMP_SUFFIX)
    arrays = {"rgb": f.rgb, "instance": f.instance, "T_world_camera": f.T_world_camera, "meta": np.array(json.dumps(meta))}
    if f.depth_m is not None:
        arrays["depth_m"] = f.depth_m
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_keyframe(path: Path) -> Keyframe:
    """The keyframe in `path`; KeyframeFileError for any damage (zip, zlib, npy header, JSON, shapes)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            unknown = set(data.files) - ARRAY_NAMES
            if unknown:  # a flipped bit in the zip directory renames an entry: depth would silently go missing
                raise KeyError(f"unknown entries {sorted(unknown)}")
            meta = json.loads(str(data["meta"]))
            fx, fy, cx, cy, w, h = meta["intrinsics"]
            frame = Frame(
                stamp=float(meta["stamp"]),
                rgb=data["rgb"],
                depth_m=data["depth_m"] if "depth_m" in data else None,
                instance=data["instance"],
                labels={int(k): str(v) for k, v in meta["labels"].items()},
                intrinsics=CameraIntrinsics(float(fx), float(fy), float(cx), float(cy), int(w), int(h)),
                T_world_camera=data["T_world_camera"],
            )
            kf = Keyframe(int(meta["index"]), frame, {int(k): int(v) for k, v in meta["instance_to_object"].items()})
    except Exception as exc:  # zipfile, zlib, numpy's header parser, JSON: each fails its own way on damage
        raise KeyframeFileError(f"{path.name}: unreadable ({type(exc).__name__}: {exc})") from None
    problem = _inconsistency(kf.frame)
    if problem:
        raise KeyframeFileError(f"{path.name}: {problem}")
    return kf


def _inconsistency(f: Frame) -> str:
    """Why the arrays of a loaded frame cannot belong together ('' if they can): later stages index them
    together and would fail far from the file that caused it."""
    if f.instance.ndim != 2 or f.instance.dtype.kind not in "iu":
        return f"instance mask has shape {f.instance.shape} and dtype {f.instance.dtype}"
    h, w = f.instance.shape
    if f.rgb.shape != (h, w, 3) or f.rgb.dtype != np.uint8:
        return f"rgb has shape {f.rgb.shape} and dtype {f.rgb.dtype}, not ({h}, {w}, 3) uint8"
    if f.depth_m is not None and (f.depth_m.shape != (h, w) or f.depth_m.dtype.kind != "f"):
        return f"depth_m has shape {f.depth_m.shape}, not ({h}, {w})"
    if f.T_world_camera.shape != (4, 4) or not np.all(np.isfinite(f.T_world_camera)):
        return "T_world_camera is not a finite 4x4 matrix"
    if (f.intrinsics.width, f.intrinsics.height) != (w, h):
        return f"intrinsics are for {f.intrinsics.width}x{f.intrinsics.height}, the images are {w}x{h}"
    return ""


@dataclass
class KeyframeScan:
    """What a directory held: the readable keyframes (oldest first) and one line per file skipped."""

    keyframes: list[Keyframe] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def scan_directory(directory: Path, counters: EventCounters | None = None, move_aside: bool = False) -> KeyframeScan:
    """Read every keyframe file in `directory`. Unreadable files and leftover temporaries are skipped and
    counted (`keyframe_file_damaged`); with `move_aside` they go into `DAMAGED_DIR`, so the next start does
    not trip over them again and nothing is deleted. Only the owner of the directory (a node resuming its
    persist directory) should move files: a load from elsewhere leaves the user's files where they are."""
    counters = counters or EventCounters()
    scan = KeyframeScan()
    for path in sorted(Path(directory).glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")):
        try:
            if path.name.endswith(TMP_SUFFIX):
                raise KeyframeFileError(f"{path.name}: left over from a write that did not finish")
            scan.keyframes.append(load_keyframe(path))
            continue
        except KeyframeFileError as exc:
            reason = str(exc)
        except OSError as exc:  # unreadable as a file (permissions, I/O error)
            reason = f"{path.name}: {exc}"
        if move_aside:
            reason += _move_aside(path)
        scan.damaged.append(reason)
        counters.count("keyframe_file_damaged")
    if scan.damaged:
        more = len(scan.damaged) - LOGGED_REASONS
        log.warning(
            "skipped %d damaged keyframe files in %s [keyframe_file_damaged]: %s%s",
            len(scan.damaged),
            directory,
            "; ".join(scan.damaged[:LOGGED_REASONS]),
            f"; and {more} more" if more > 0 else "",
        )
    scan.keyframes.sort(key=lambda k: k.index)
    return scan


def _move_aside(path: Path) -> str:
    """Move `path` into DAMAGED_DIR beside it, never over an earlier file; what happened, for the log."""
    target_dir = path.parent / DAMAGED_DIR
    try:
        target_dir.mkdir(exist_ok=True)
        target = target_dir / path.name
        n = 1
        while target.exists():
            target = target_dir / f"{path.stem}.{n}{path.suffix}"
            n += 1
        path.replace(target)
    except OSError as exc:
        return f"; could not move it aside ({exc})"
    return f"; moved to {target}"

"""Keyframe selection, bounded storage and persistence.

A frame is admitted when it is sharp and its pose is far enough (translation or rotation) from every
keyframe already held. When the count or memory bound is exceeded, the most redundant keyframe (the one
closest to its nearest neighbour in pose) is evicted. With a persist directory, every admitted keyframe is
written to disk at once and evicted ones are deleted, so a restarted node resumes with the same buffer.
"""

from __future__ import annotations

import json
import logging
import threading
import zipfile
from pathlib import Path

import numpy as np

from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.geometry import pose_distance
from dprecon_ros.core.mapping.config import KeyframeConfig
from dprecon_ros.core.types import CameraIntrinsics, Frame, Keyframe

log = logging.getLogger("dprecon_ros")
FILE_PREFIX = "keyframe_"


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image (0-255); low means blurred."""
    grey = rgb.astype(np.float32).mean(axis=2)
    lap = -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    return float(lap.var())


def save_keyframe(path: Path, kf: Keyframe) -> None:
    f = kf.frame
    K = f.intrinsics
    meta = {
        "index": kf.index,
        "stamp": f.stamp,
        "labels": {str(k): v for k, v in f.labels.items()},
        "instance_to_object": {str(k): v for k, v in kf.instance_to_object.items()},
        "intrinsics": [K.fx, K.fy, K.cx, K.cy, K.width, K.height],
    }
    tmp = path.with_suffix(".tmp.npz")
    arrays = {"rgb": f.rgb, "instance": f.instance, "T_world_camera": f.T_world_camera, "meta": np.array(json.dumps(meta))}
    if f.depth_m is not None:
        arrays["depth_m"] = f.depth_m
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_keyframe(path: Path) -> Keyframe:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        fx, fy, cx, cy, w, h = meta["intrinsics"]
        frame = Frame(
            stamp=float(meta["stamp"]),
            rgb=data["rgb"],
            depth_m=data["depth_m"] if "depth_m" in data else None,
            instance=data["instance"],
            labels={int(k): v for k, v in meta["labels"].items()},
            intrinsics=CameraIntrinsics(fx, fy, cx, cy, int(w), int(h)),
            T_world_camera=data["T_world_camera"],
        )
    return Keyframe(int(meta["index"]), frame, {int(k): int(v) for k, v in meta["instance_to_object"].items()})


class KeyframeBuffer:
    def __init__(self, config: KeyframeConfig, counters: EventCounters | None = None) -> None:
        self.config = config
        self.counters = counters or EventCounters()
        self._keyframes: list[Keyframe] = []
        self._next_index = 0
        self._lock = threading.Lock()
        self.persist_dir = Path(config.persist_dir) if config.persist_dir else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._keyframes)

    def snapshot(self) -> list[Keyframe]:
        with self._lock:
            return list(self._keyframes)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(k.frame.nbytes for k in self._keyframes)

    def is_novel(self, frame: Frame) -> bool:
        """True if the frame's pose is far enough from every keyframe held."""
        with self._lock:
            for kf in self._keyframes:
                d_m, d_rad = pose_distance(kf.frame.T_world_camera, frame.T_world_camera)
                if d_m < self.config.min_translation_m and np.degrees(d_rad) < self.config.min_rotation_deg:
                    return False
        return True

    def consider(self, frame: Frame) -> bool:
        """Cheap checks first (pose novelty, blur); True if the frame should become a keyframe."""
        if not self.is_novel(frame):
            self.counters.count("redundant_frame", "", logging.DEBUG)
            return False
        s = sharpness(frame.rgb)
        if s < self.config.blur_threshold:
            self.counters.count("blurred_frame", f"frame at {frame.stamp:.3f} is blurred (sharpness {s:.1f}); rejected")
            return False
        return True

    def add(self, frame: Frame, instance_to_object: dict[int, int]) -> Keyframe:
        with self._lock:
            kf = Keyframe(self._next_index, frame, dict(instance_to_object))
            self._next_index += 1
            self._keyframes.append(kf)
            evicted = self._evict_locked()
        if self.persist_dir is not None:
            self._persist(kf, evicted)
        return kf

    def _redundancy(self, i: int) -> float:
        """Pose distance from keyframe i to its nearest other keyframe (smaller = more redundant)."""
        w = self.config.rotation_weight_m_per_rad
        Ti = self._keyframes[i].frame.T_world_camera
        best = np.inf
        for j, other in enumerate(self._keyframes):
            if j != i:
                d_m, d_rad = pose_distance(Ti, other.frame.T_world_camera)
                best = min(best, d_m + w * d_rad)
        return best

    def _evict_locked(self) -> list[Keyframe]:
        evicted = []
        limit_bytes = self.config.max_memory_mb * 2**20
        while len(self._keyframes) > 1 and (
            len(self._keyframes) > self.config.max_keyframes or sum(k.frame.nbytes for k in self._keyframes) > limit_bytes
        ):
            i = int(np.argmin([self._redundancy(i) for i in range(len(self._keyframes))]))
            evicted.append(self._keyframes.pop(i))
            self.counters.count("evicted_keyframe", "", logging.DEBUG)
        return evicted

    def _persist(self, kf: Keyframe, evicted: list[Keyframe]) -> None:
        try:
            self.persist_dir.mkdir(parents=True, exist_ok=True)
            save_keyframe(self.persist_dir / f"{FILE_PREFIX}{kf.index:06d}.npz", kf)
            for old in evicted:
                (self.persist_dir / f"{FILE_PREFIX}{old.index:06d}.npz").unlink(missing_ok=True)
        except OSError as exc:
            self.counters.count("persist_error", f"cannot persist keyframe {kf.index} to {self.persist_dir}: {exc}")

    def save(self, directory: Path) -> int:
        directory.mkdir(parents=True, exist_ok=True)
        keyframes = self.snapshot()
        for kf in keyframes:
            save_keyframe(directory / f"{FILE_PREFIX}{kf.index:06d}.npz", kf)
        return len(keyframes)

    @staticmethod
    def read_directory(directory: Path) -> list[Keyframe]:
        """Keyframes stored in a directory, oldest first; unreadable files are skipped with a warning."""
        keyframes = []
        for path in sorted(Path(directory).glob(f"{FILE_PREFIX}*.npz")):
            if path.name.endswith(".tmp.npz"):  # a write cut short
                continue
            try:
                keyframes.append(load_keyframe(path))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                log.warning("skipping unreadable keyframe file %s: %s", path, exc)
        return keyframes

    def replace(self, keyframes: list[Keyframe]) -> None:
        """Replace the buffer's content (used by load and reset)."""
        with self._lock:
            self._keyframes = sorted(keyframes, key=lambda k: k.index)
            self._next_index = max((k.index for k in keyframes), default=-1) + 1

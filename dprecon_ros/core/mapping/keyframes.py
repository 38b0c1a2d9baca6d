"""Keyframe selection, bounded storage and persistence.

A frame is admitted when it is sharp and its pose is far enough (translation or rotation) from every
keyframe already held. When the count or memory bound is exceeded, the most redundant keyframe (the one
closest to its nearest neighbour in pose) is evicted. With a persist directory, every admitted keyframe is
written to disk at once and evicted ones are deleted, so a restarted node resumes with the same buffer.
Keyframes read back from disk (a restart, a load) obey the same bounds by the same rule: a restart with a
smaller `max_keyframes` keeps the least redundant keyframes, not the newest, and their files are deleted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.geometry import pose_distance
from dprecon_ros.core.mapping.config import KeyframeConfig
from dprecon_ros.core.mapping.keyframe_files import keyframe_file_name, load_keyframe, save_keyframe  # noqa: F401 (re-exported)
from dprecon_ros.core.types import Frame, Keyframe

log = logging.getLogger("dprecon_ros")


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image (0-255); low means blurred."""
    grey = rgb.astype(np.float32).mean(axis=2)
    lap = -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    return float(lap.var())


class KeyframeBuffer:
    def __init__(self, config: KeyframeConfig, counters: EventCounters | None = None) -> None:
        self.config = config
        self.counters = counters or EventCounters()
        self._keyframes: list[Keyframe] = []
        self._next_index = 0
        self._lock = threading.Lock()
        self.persist_dir = Path(config.persist_dir) if config.persist_dir else None
        # bytes of frames held on their way to the buffer (decoded, waiting for a match or for selection): they
        # count against the same memory bound, so the keyframe-related memory stays within it as a whole
        self.waiting_bytes: Callable[[], int] = lambda: 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._keyframes)

    def snapshot(self) -> list[Keyframe]:
        with self._lock:
            return list(self._keyframes)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(k.nbytes for k in self._keyframes)

    def is_novel(self, frame: Frame) -> bool:
        """True if the frame's pose is far enough from every keyframe held."""
        return self.is_novel_pose(frame.T_world_camera)

    def is_novel_pose(self, T_world_camera: np.ndarray) -> bool:
        """The same test on a pose alone: ingestion asks it before decoding a frame's images."""
        with self._lock:
            for kf in self._keyframes:
                d_m, d_rad = pose_distance(kf.frame.T_world_camera, T_world_camera)
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

    def add(
        self, frame: Frame, instance_to_object: dict[int, int], instance_keys: dict[int, np.ndarray] | None = None
    ) -> tuple[Keyframe, list[Keyframe]]:
        """(the new keyframe, the keyframes evicted to make room for it). The association's voxel keys come
        with the frame so that the memory bound counts them from the start."""
        with self._lock:
            kf = Keyframe(self._next_index, frame, dict(instance_to_object), instance_keys)
            self._next_index += 1
            self._keyframes.append(kf)
            evicted = self._evict_locked()
        if self.persist_dir is not None:
            self._persist(kf, evicted)
        return kf, evicted

    def _pose_gaps(self) -> np.ndarray:
        """(n, n) pose distances between held keyframes, metres + weighted radians; inf on the diagonal.
        One matrix for all evictions: a buffer read back from disk may hold many more than the bound."""
        T = np.stack([k.frame.T_world_camera for k in self._keyframes])
        t, R = T[:, :3, 3], T[:, :3, :3]
        d_m = np.linalg.norm(t[:, None] - t[None], axis=-1)
        cos = (np.einsum("aji,bji->ab", R, R) - 1.0) / 2.0  # trace(R_a^T R_b), as rotation_angle takes it
        gaps = d_m + self.config.rotation_weight_m_per_rad * np.arccos(np.clip(cos, -1.0, 1.0))
        np.fill_diagonal(gaps, np.inf)
        return gaps

    def _evict_locked(self) -> list[Keyframe]:
        """Evict the most redundant keyframe (closest to its nearest neighbour) until within both bounds."""
        evicted: list[Keyframe] = []
        budget = self.config.max_memory_mb * 2**20
        # waiting frames take at most their share: a backlog must never evict the map itself
        limit_bytes = budget - min(self.waiting_bytes(), self.config.waiting_share * budget)
        nbytes = sum(k.nbytes for k in self._keyframes)
        gaps = None
        while len(self._keyframes) > 1 and (len(self._keyframes) > self.config.max_keyframes or nbytes > limit_bytes):
            gaps = self._pose_gaps() if gaps is None else gaps
            i = int(np.argmin(gaps.min(axis=1)))
            gaps = np.delete(np.delete(gaps, i, axis=0), i, axis=1)
            evicted.append(self._keyframes.pop(i))
            nbytes -= evicted[-1].nbytes
            self.counters.count("evicted_keyframe", "", logging.DEBUG)
        return evicted

    def _persist(self, kf: Keyframe, evicted: list[Keyframe]) -> None:
        try:
            self.persist_dir.mkdir(parents=True, exist_ok=True)
            save_keyframe(self.persist_dir / keyframe_file_name(kf.index), kf)
        except OSError as exc:
            self.counters.count("persist_error", f"cannot persist keyframe {kf.index} to {self.persist_dir}: {exc}")
        self._forget_files(evicted)

    def _forget_files(self, evicted: list[Keyframe]) -> None:
        """The persist directory mirrors the buffer: an evicted keyframe's file goes with it."""
        if self.persist_dir is None:
            return
        for old in evicted:
            try:
                (self.persist_dir / keyframe_file_name(old.index)).unlink(missing_ok=True)
            except OSError as exc:
                self.counters.count("persist_error", f"cannot remove evicted keyframe {old.index} from {self.persist_dir}: {exc}")

    def replace(self, keyframes: list[Keyframe]) -> list[Keyframe]:
        """Replace the buffer's content (load, resume, reset), within the bounds: the keyframes evicted to
        keep them, by the same rule as `add` (their files in the persist directory are deleted)."""
        with self._lock:
            self._keyframes = sorted(keyframes, key=lambda k: k.index)
            self._next_index = max((k.index for k in keyframes), default=-1) + 1
            evicted = self._evict_locked()
        self._forget_files(evicted)
        return evicted

"""A small time-indexed pose buffer with interpolation (tf2_ros is not installable from PyPI).

It stores transforms parent -> child with stamps, chains them to answer map -> frame at a time, and
interpolates between neighbouring stamps; a lookup outside the stored span by more than the tolerance fails.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

import numpy as np

from dprecon_ros.core.geometry import interpolate_pose, invert


class TransformLookupError(LookupError):
    """No transform is known for the requested frames and time."""


class TransformBuffer:
    def __init__(self, history_s: float = 30.0, tolerance_s: float = 0.03, max_gap_s: float = 0.25) -> None:
        self.history_s = history_s
        self.tolerance_s = tolerance_s
        self.max_gap_s = max_gap_s
        self._stamps: dict[tuple[str, str], list[float]] = defaultdict(list)
        self._poses: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
        self._static: dict[tuple[str, str], np.ndarray] = {}
        self._parent: dict[str, str] = {}

    def add(self, parent: str, child: str, stamp: float, T_parent_child: np.ndarray, static: bool = False) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")
        self._parent[child] = parent
        key = (parent, child)
        if static:
            self._static[key] = T_parent_child
            return
        stamps, poses = self._stamps[key], self._poses[key]
        i = bisect.bisect_left(stamps, stamp)
        if i < len(stamps) and stamps[i] == stamp:
            poses[i] = T_parent_child
        else:
            stamps.insert(i, stamp)
            poses.insert(i, T_parent_child)
        horizon = stamps[-1] - self.history_s
        drop = bisect.bisect_left(stamps, horizon)
        if drop:
            del stamps[:drop], poses[:drop]

    def latest_stamp(self) -> float | None:
        latest = [s[-1] for s in self._stamps.values() if s]
        return max(latest) if latest else None

    def _edge(self, parent: str, child: str, stamp: float) -> np.ndarray:
        key = (parent, child)
        if key in self._static:
            return self._static[key]
        stamps, poses = self._stamps.get(key, []), self._poses.get(key, [])
        if not stamps:
            raise TransformLookupError(f"no transform {parent} -> {child}")
        i = bisect.bisect_left(stamps, stamp)
        if i < len(stamps) and stamps[i] == stamp:
            return poses[i]
        if i == 0 or i == len(stamps):
            j = 0 if i == 0 else len(stamps) - 1
            if abs(stamps[j] - stamp) <= self.tolerance_s:
                return poses[j]
            raise TransformLookupError(f"{parent} -> {child} not known at t={stamp:.3f} (have {stamps[0]:.3f}..{stamps[-1]:.3f})")
        for j in (i - 1, i):
            if abs(stamps[j] - stamp) <= self.tolerance_s:
                return poses[j]
        if stamps[i] - stamps[i - 1] > self.max_gap_s:
            # Too far apart to interpolate (a missing message, or a slow pose source): wait or give up.
            raise TransformLookupError(f"{parent} -> {child}: no pose within {self.max_gap_s} s around t={stamp:.3f}")
        s = (stamp - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        return interpolate_pose(poses[i - 1], poses[i], s)

    def lookup(self, target: str, source: str, stamp: float) -> np.ndarray:
        """T_target_source at `stamp`, chaining through known parents."""
        target, source = target.lstrip("/"), source.lstrip("/")

        def chain_to_root(frame: str) -> list[str]:
            path = [frame]
            while path[-1] in self._parent and len(path) < 64:
                path.append(self._parent[path[-1]])
            return path

        up_source, up_target = chain_to_root(source), chain_to_root(target)
        common = next((f for f in up_source if f in up_target), None)
        if common is None:
            raise TransformLookupError(f"no chain between {target} and {source}")
        T_common_source = np.eye(4)
        for child in up_source[: up_source.index(common)]:
            T_common_source = self._edge(self._parent[child], child, stamp) @ T_common_source
        T_common_target = np.eye(4)
        for child in up_target[: up_target.index(common)]:
            T_common_target = self._edge(self._parent[child], child, stamp) @ T_common_target
        return invert(T_common_target) @ T_common_source

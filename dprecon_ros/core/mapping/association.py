"""Associate per-frame instance masks to stable 3D objects.

Each instance is back-projected with depth into a voxel set in the map frame and matched to the existing
object whose (one-voxel dilated) set it overlaps most, optionally only among objects with the same label.
This works whether a simulator keeps ids constant or a 2D detector renumbers every frame, because ids are
never trusted across frames; only geometry and labels are.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from dprecon_ros.core.geometry import transform_points
from dprecon_ros.core.mapping.config import AssociationConfig
from dprecon_ros.core.types import Frame

log = logging.getLogger("dprecon_ros")
_OFFSET = 1 << 20
_NEIGHBOURS = np.array([[x, y, z] for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)], dtype=np.int64)


def voxel_keys(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Unique int64 keys of the voxels containing `points` (N, 3)."""
    return _pack(np.floor(points / voxel_size).astype(np.int64))


def _pack(ijk: np.ndarray) -> np.ndarray:
    ijk = ijk + _OFFSET
    return np.unique((ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2])


def unpack_keys(keys: np.ndarray) -> np.ndarray:
    mask = (1 << 21) - 1
    return np.stack([(keys >> 42) & mask, (keys >> 21) & mask, keys & mask], axis=1) - _OFFSET


def dilate_keys(keys: np.ndarray) -> np.ndarray:
    ijk = unpack_keys(keys)
    return _pack((ijk[:, None, :] + _NEIGHBOURS[None]).reshape(-1, 3))


def erode(mask: np.ndarray, pixels: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(pixels):
        inner = out.copy()
        inner[1:, :] &= out[:-1, :]
        inner[:-1, :] &= out[1:, :]
        inner[:, 1:] &= out[:, :-1]
        inner[:, :-1] &= out[:, 1:]
        out = inner
    return out


def instance_points(frame: Frame, instance_id: int, config: AssociationConfig, rng: np.random.Generator) -> np.ndarray:
    """World points (N, 3) of one instance, edge-eroded, depth-outlier-filtered and subsampled."""
    if frame.depth_m is None:
        return np.zeros((0, 3))
    mask = erode(frame.instance == instance_id, config.mask_erosion_px) & np.isfinite(frame.depth_m)
    v, u = np.nonzero(mask)
    if u.size == 0:
        return np.zeros((0, 3))
    d = frame.depth_m[v, u]
    med = np.median(d)
    mad = np.median(np.abs(d - med))
    keep = np.abs(d - med) <= config.depth_outlier_m + 3 * mad
    u, v, d = u[keep], v[keep], d[keep]
    if u.size > config.max_points_per_instance:
        sel = rng.choice(u.size, config.max_points_per_instance, replace=False)
        u, v, d = u[sel], v[sel], d[sel]
    return transform_points(frame.T_world_camera, frame.intrinsics.backproject(u.astype(float), v.astype(float), d))


@dataclass
class TrackedObject:
    object_id: int
    keys: np.ndarray
    labels: Counter = field(default_factory=Counter)
    observations: int = 0
    _dilated: np.ndarray | None = field(default=None, repr=False)

    def add_keys(self, keys: np.ndarray) -> None:
        self.keys = np.union1d(self.keys, keys)
        self._dilated = None

    @property
    def dilated(self) -> np.ndarray:
        """Keys grown by one voxel (cached: association compares every instance against every object)."""
        if self._dilated is None:
            self._dilated = dilate_keys(self.keys)
        return self._dilated

    @property
    def label(self) -> str:
        return self.labels.most_common(1)[0][0] if self.labels else "object"

    def bounds(self, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
        ijk = unpack_keys(self.keys)
        return ijk.min(axis=0) * voxel_size, (ijk.max(axis=0) + 1) * voxel_size


def _key_bounds(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ijk = unpack_keys(keys)
    return ijk.min(axis=0), ijk.max(axis=0)


def _share_inside(keys: np.ndarray, container: np.ndarray, pad: int) -> float:
    """Fraction of `keys` inside the bounding box of `container`, grown by `pad` voxels."""
    lo, hi = _key_bounds(container)
    ijk = unpack_keys(keys)
    return float(np.all((ijk >= lo - pad) & (ijk <= hi + pad), axis=1).mean())


class ObjectAssociator:
    def __init__(self, config: AssociationConfig, seed: int = 0) -> None:
        self.config = config
        self.objects: dict[int, TrackedObject] = {}
        self._next_id = 1
        self._rng = np.random.default_rng(seed)
        self.merged_into: dict[int, int] = {}
        self.frame_keys: dict[int, np.ndarray] = {}  # instance id -> voxel keys of the last associated frame

    def _overlap(self, inst_keys: np.ndarray, obj: TrackedObject) -> float:
        """max(voxel overlap, share of either one inside the other's box); both tolerate one voxel.

        Voxel overlap fails when two views see disjoint faces of an object; the box share catches that, in
        both directions, since a partly occluded first view may give a box smaller than the next view.
        """
        if inst_keys.size == 0 or obj.keys.size == 0:
            return 0.0
        near = np.isin(inst_keys, obj.dilated, assume_unique=True).sum()
        voxel = float(near) / float(min(inst_keys.size, obj.keys.size))
        pad = 1 + int(np.ceil(self.config.box_margin_m / self.config.voxel_size_m))
        in_box = max(_share_inside(inst_keys, obj.keys, pad), _share_inside(obj.keys, inst_keys, pad))
        return max(voxel, self.config.box_overlap_weight * in_box)

    def associate(self, frame: Frame) -> dict[int, int]:
        """Map this frame's instance ids to object ids, creating objects as needed."""
        instances = self.frame_keys = self.instance_keys(frame)
        scores = []
        for inst, keys in instances.items():
            label = frame.labels.get(inst, "object")
            for obj in self.objects.values():
                if self.config.require_label_match and obj.label != label:
                    continue
                s = self._overlap(keys, obj)
                if s >= self.config.min_overlap:
                    scores.append((s, inst, obj.object_id))
        mapping: dict[int, int] = {}
        used: set[int] = set()
        for _score, inst, oid in sorted(scores, reverse=True):
            if inst not in mapping and oid not in used:
                mapping[inst] = oid
                used.add(oid)
        for inst, keys in instances.items():
            label = frame.labels.get(inst, "object")
            if inst not in mapping:
                oid = self._next_id
                self._next_id += 1
                self.objects[oid] = TrackedObject(oid, np.zeros(0, dtype=np.int64))
                mapping[inst] = oid
            obj = self.objects[mapping[inst]]
            obj.add_keys(keys)
            obj.labels[label] += 1
            obj.observations += 1
        self._merge_overlapping(set(mapping.values()))
        return {inst: self.resolve(oid) for inst, oid in mapping.items()}

    def _merge_overlapping(self, touched: set[int]) -> None:
        """Merge same-label objects that turned out to be one (e.g. first seen from disjoint sides)."""
        for oid in sorted(touched):
            if oid not in self.objects:
                continue
            obj = self.objects[oid]
            for other in list(self.objects.values()):
                if other.object_id == oid or other.label != obj.label:
                    continue
                if self._overlap(obj.keys, other) >= self.config.merge_overlap:
                    keep, drop = sorted((oid, other.object_id))
                    kept, dropped = self.objects[keep], self.objects.pop(drop)
                    kept.add_keys(dropped.keys)
                    kept.labels.update(dropped.labels)
                    kept.observations += dropped.observations
                    self.merged_into[drop] = keep
                    log.info("merged object %d into %d (%s)", drop, keep, kept.label)
                    if drop == oid:
                        break
                    obj = kept

    def instance_keys(self, frame: Frame) -> dict[int, np.ndarray]:
        """The voxel keys of each instance of `frame` (none without depth): what association compares, and what an
        object's keys are rebuilt from after evictions."""
        keys = {}
        for inst in frame.instance_ids():
            pts = instance_points(frame, inst, self.config, self._rng)
            if len(pts):
                keys[inst] = voxel_keys(pts, self.config.voxel_size_m)
        return keys

    def rebuild(self, held: list[tuple[dict[int, int], dict[int, np.ndarray]]], objects: set[int]) -> list[int]:
        """Rebuild `objects`' keys from the keyframes still held, each (instance -> object, instance -> keys):
        what evicted keyframes alone had seen goes with them, and an object no held keyframe shows is dropped
        (a robot that drives on would otherwise grow every object's keys and the object list without bound).
        Returns the dropped ids."""
        support: dict[int, list[np.ndarray]] = {oid: [] for oid in objects if oid in self.objects}
        shown: set[int] = set()
        for instance_to_object, keys in held:
            for inst, oid in instance_to_object.items():
                shown.add(oid)
                if oid in support and inst in keys:
                    support[oid].append(keys[inst])
        for oid, parts in support.items():
            if parts:
                self.objects[oid].keys = np.unique(np.concatenate(parts))
                self.objects[oid]._dilated = None
            # shown, but no keys came out (e.g. keys recomputed under a changed erosion): keep what it had
        untouched = set(self.objects) - set(support)
        return self.drop_unshown(untouched | (shown & set(support)))

    def drop_unshown(self, shown: set[int]) -> list[int]:
        """Drop the objects not in `shown` (the object ids held keyframes refer to); the dropped ids."""
        dropped = sorted(set(self.objects) - shown)
        for oid in dropped:
            del self.objects[oid]
        return dropped

    def resolve(self, object_id: int) -> int:
        while object_id in self.merged_into:
            object_id = self.merged_into[object_id]
        return object_id

    # ---------------------------------------------------------- persistence
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able description, arrays) of everything association has learnt, for a saved map."""
        meta = {
            "next_id": self._next_id,
            "merged_into": {str(k): v for k, v in self.merged_into.items()},
            "rng": self._rng.bit_generator.state,
            "objects": [{"id": o.object_id, "labels": dict(o.labels), "observations": o.observations} for o in self.objects.values()],
        }
        return meta, {f"keys_{o.object_id}": o.keys for o in self.objects.values()}

    @classmethod
    def from_state(cls, config: AssociationConfig, meta: dict, arrays) -> ObjectAssociator:
        assoc = cls(config)
        assoc._next_id = int(meta["next_id"])
        assoc.merged_into = {int(k): int(v) for k, v in meta["merged_into"].items()}
        assoc._rng.bit_generator.state = meta["rng"]
        for o in meta["objects"]:
            oid = int(o["id"])
            assoc.objects[oid] = TrackedObject(
                oid, np.asarray(arrays[f"keys_{oid}"], dtype=np.int64), Counter(o["labels"]), int(o["observations"])
            )
        return assoc

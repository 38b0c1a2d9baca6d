"""Fuse keyframes into per-object and background TSDF volumes (map frame, metres).

An object's volume takes its masked pixels as surface and every other reading of the keyframes that saw it
as free space; the background's volume takes the pixels of no reconstructed object as surface.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dprecon_ros.core.fusion.config import TsdfConfig
from dprecon_ros.core.fusion.tsdf import TsdfVolume, VolumeSpec
from dprecon_ros.core.types import Keyframe, ObjectSeed

BOUNDS_MAX_POINTS = 200_000  # depth points sampled for the scene's bounds
BOUNDS_PERCENTILE = 0.5  # the bounds drop this percentage of points at each end (outliers, far readings)


def background_bounds(keyframes: list[Keyframe], max_points: int = BOUNDS_MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Extent (lo, hi) of the keyframes' depth points in the map frame, robust to stray readings."""
    pts = []
    per_frame = max(1, max_points // max(1, len(keyframes)))
    rng = np.random.default_rng(0)
    for kf in keyframes:
        f = kf.frame
        v, u = np.nonzero(np.isfinite(f.depth_m))
        if u.size == 0:
            continue
        sel = rng.choice(u.size, min(per_frame, u.size), replace=False)
        p = f.intrinsics.backproject(u[sel].astype(float), v[sel].astype(float), f.depth_m[v[sel], u[sel]])
        pts.append(p @ f.T_world_camera[:3, :3].T + f.T_world_camera[:3, 3])
    if not pts:
        return np.zeros(3), np.zeros(3)
    allp = np.concatenate(pts)
    return np.percentile(allp, BOUNDS_PERCENTILE, axis=0), np.percentile(allp, 100 - BOUNDS_PERCENTILE, axis=0)


def fuse_into(
    spec: VolumeSpec,
    keyframes: list[Keyframe],
    surface_of: Callable[[Keyframe], np.ndarray],
    config: TsdfConfig,
    device: torch.device,
    check_cancelled: Callable[[], None] | None = None,
) -> TsdfVolume:
    """`check_cancelled` runs before each keyframe: one volume can take many seconds, and a cancel (a reset,
    a shutdown) must not wait for all of it."""
    vol = TsdfVolume(spec, config.truncation_voxels, device)
    for kf in keyframes:
        if check_cancelled is not None:
            check_cancelled()
        f = kf.frame
        vol.integrate(f.depth_m, f.rgb, f.intrinsics, f.T_world_camera, surface_of(kf), config.free_space_weight)
    return vol


def fuse_object(
    seed: ObjectSeed,
    keyframes: list[Keyframe],
    config: TsdfConfig,
    device: torch.device,
    size_scale: float = 1.0,
    check_cancelled: Callable[[], None] | None = None,
) -> TsdfVolume:
    """The object's own volume from the keyframes that saw it; `size_scale` < 1 shrinks the voxel budget."""
    margin = config.object_margin_m
    budget = max(1000, int(config.max_object_voxels * size_scale))
    spec = VolumeSpec.around(seed.lo - margin, seed.hi + margin, config.object_voxel_m, budget)
    seen = [kf for kf in keyframes if seed.object_id in kf.instance_to_object.values()]
    return fuse_into(spec, seen, lambda kf, oid=seed.object_id: kf.object_mask(oid), config, device, check_cancelled)


def fuse_background(
    keyframes: list[Keyframe],
    config: TsdfConfig,
    device: torch.device,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    size_scale: float = 1.0,
    check_cancelled: Callable[[], None] | None = None,
) -> TsdfVolume | None:
    """The background's volume over `bounds` (default: the extent of the keyframes' depth points)."""
    lo, hi = bounds if bounds is not None else background_bounds(keyframes)
    if not keyframes or not np.all(hi > lo):
        return None
    pad = config.truncation_voxels * config.background_voxel_m
    budget = max(1000, int(config.max_background_voxels * size_scale))
    spec = VolumeSpec.around(lo - pad, hi + pad, config.background_voxel_m, budget)
    return fuse_into(spec, keyframes, lambda kf: kf.background_mask(), config, device, check_cancelled)

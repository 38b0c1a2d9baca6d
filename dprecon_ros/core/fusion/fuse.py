"""Fuse keyframes into per-object and background sparse TSDF volumes (map frame, metres), all at once.

What a run does when the live map does not hold a volume as the run's keyframes give it (the live map off, a
CPU retry, a map just loaded). An object's volume takes its masked pixels as surface and every other reading
of the keyframes that saw it as free space; the background's takes the pixels of no reconstructed object.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dprecon_ros.core.fusion.config import TsdfConfig
from dprecon_ros.core.fusion.live_map import expected_contributions, make_volume, surface_mask
from dprecon_ros.core.fusion.sparse_tsdf import DepthView, SparseTsdfVolume
from dprecon_ros.core.types import BACKGROUND_ID, Keyframe, ObjectSeed

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


def fuse_volume(
    volume: SparseTsdfVolume,
    volume_id: int,
    keyframes: list[Keyframe],
    device: torch.device,
    check_cancelled: Callable[[], None] | None = None,
) -> SparseTsdfVolume:
    """Integrate every contribution `keyframes` give volume `volume_id`. All blocks are allocated first, so
    each keyframe is integrated once (no catching up of blocks found later). `check_cancelled` runs before
    each keyframe: a cancel (a reset, a shutdown) must not wait for all of them."""
    by_index = {kf.index: kf for kf in keyframes}
    contributions = sorted(expected_contributions(keyframes).get(volume_id, set()))

    def views():
        for contribution in contributions:
            if check_cancelled is not None:
                check_cancelled()
            kf = by_index[contribution[0]]
            surface = torch.as_tensor(surface_mask(kf, contribution, volume_id == BACKGROUND_ID), device=device)
            yield DepthView.of(kf.frame, device, kf.index), surface

    if volume.carve_in_frustum:
        for view, surface in views():
            volume.allocate(view, surface)
    for view, surface in views():
        volume.integrate(view, surface)
    return volume


def fuse_object(
    seed: ObjectSeed, keyframes: list[Keyframe], config: TsdfConfig, device: torch.device, check_cancelled: Callable[[], None] | None = None
) -> SparseTsdfVolume:
    """The object's own volume from the keyframes that saw it."""
    return fuse_volume(make_volume(config, seed.object_id, device), seed.object_id, keyframes, device, check_cancelled)


def fuse_background(
    keyframes: list[Keyframe], config: TsdfConfig, device: torch.device, check_cancelled: Callable[[], None] | None = None
) -> SparseTsdfVolume | None:
    """The background's volume; None without keyframes."""
    if not keyframes:
        return None
    return fuse_volume(make_volume(config, BACKGROUND_ID, device), BACKGROUND_ID, keyframes, device, check_cancelled)


def object_box(seed: ObjectSeed, config: TsdfConfig) -> tuple[np.ndarray, np.ndarray]:
    """What of an object's volume belongs to it: its association box grown by the margin."""
    return seed.lo - config.object_margin_m, seed.hi + config.object_margin_m

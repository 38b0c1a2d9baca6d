"""Backend `tsdf`: per-object and background TSDF fusion of keyframes into coloured meshes.

The observed-geometry baseline: fast, no learning, and the initialisation of the neural stages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..config import DpreconConfig
from .boxes import oriented_box
from .device import resolve_device
from .meshing import extract_mesh
from .scene_graph import BACKGROUND_ID, build_scene_graph
from .tsdf import TsdfVolume, VolumeSpec
from .types import Keyframe, ObjectReconstruction, Reconstruction

log = logging.getLogger("dprecon_ros")
ProgressFn = Callable[[str, float], None]


@dataclass
class ObjectSeed:
    """What the associator knows of an object before reconstruction."""

    object_id: int
    label: str
    lo: np.ndarray
    hi: np.ndarray
    observations: int


def background_bounds(keyframes: list[Keyframe], max_points: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
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
    return np.percentile(allp, 0.5, axis=0), np.percentile(allp, 99.5, axis=0)


class TsdfBackend:
    name = "tsdf"

    def __init__(self, config: DpreconConfig) -> None:
        self.config = config
        self.device = resolve_device(config.tsdf.device)

    def _fuse(self, spec: VolumeSpec, keyframes: list[Keyframe], surface_of: Callable[[Keyframe], np.ndarray]) -> TsdfVolume:
        vol = TsdfVolume(spec, self.config.tsdf.truncation_voxels, self.device)
        for kf in keyframes:
            f = kf.frame
            vol.integrate(f.depth_m, f.rgb, f.intrinsics, f.T_world_camera, surface_of(kf), self.config.tsdf.free_space_weight)
        return vol

    def _mesh(self, vol: TsdfVolume, target_faces: int, min_component_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tsdf, weight, color = vol.grids()
        return extract_mesh(tsdf, weight, color, vol.spec, self.config.mesh.min_weight, target_faces, min_component_fraction)

    def depth_keyframes(self, keyframes: list[Keyframe]) -> list[Keyframe]:
        usable = [kf for kf in keyframes if kf.frame.depth_m is not None]
        if len(usable) < len(keyframes):
            log.warning("tsdf fusion: %d keyframes without depth are skipped", len(keyframes) - len(usable))
        return usable

    def fuse_object(self, seed: ObjectSeed, usable: list[Keyframe]) -> TsdfVolume:
        """The object's own volume: its masked pixels are surface, every other reading carves free space."""
        margin = self.config.tsdf.object_margin_m
        spec = VolumeSpec.around(seed.lo - margin, seed.hi + margin, self.config.tsdf.object_voxel_m, self.config.tsdf.max_object_voxels)
        seen = [kf for kf in usable if seed.object_id in kf.instance_to_object.values()]
        return self._fuse(spec, seen, lambda kf, oid=seed.object_id: kf.object_mask(oid))

    def fuse_background(self, usable: list[Keyframe], bounds: tuple[np.ndarray, np.ndarray] | None = None) -> TsdfVolume | None:
        """The background's volume over `bounds` (default: the extent of the keyframes' depth points)."""
        lo, hi = bounds if bounds is not None else background_bounds(usable)
        if not usable or not np.all(hi > lo):
            return None
        cfg = self.config.tsdf
        pad = cfg.truncation_voxels * cfg.background_voxel_m
        spec = VolumeSpec.around(lo - pad, hi + pad, cfg.background_voxel_m, cfg.max_background_voxels)
        return self._fuse(spec, usable, lambda kf: kf.background_mask())

    def reconstruct(self, keyframes: list[Keyframe], seeds: list[ObjectSeed], progress: ProgressFn | None = None) -> Reconstruction:
        progress = progress or (lambda stage, fraction: None)
        cfg = self.config
        timings: dict[str, float] = {}
        usable = self.depth_keyframes(keyframes)
        objects: list[ObjectReconstruction] = []
        t0 = time.perf_counter()
        for i, seed in enumerate(seeds):
            progress("objects", i / max(1, len(seeds)))
            v, f, c = self._mesh(self.fuse_object(seed, usable), cfg.mesh.target_faces, cfg.mesh.min_component_fraction)
            if len(f) == 0:
                log.info("object %d (%s) produced no surface", seed.object_id, seed.label)
                continue
            objects.append(
                ObjectReconstruction(
                    seed.object_id,
                    seed.label,
                    v,
                    f,
                    c,
                    centroid=v.mean(axis=0),
                    box=oriented_box(v),
                    observation_count=seed.observations,
                )
            )
        timings["objects"] = time.perf_counter() - t0
        progress("background", 0.0)
        t0 = time.perf_counter()
        background = None
        vol = self.fuse_background(usable)
        if vol is not None:
            v, f, c = self._mesh(vol, cfg.mesh.background_target_faces, min_component_fraction=0.0)
            if len(f):
                background = ObjectReconstruction(BACKGROUND_ID, "background", v, f, c, v.mean(axis=0), oriented_box(v), len(usable))
        timings["background"] = time.perf_counter() - t0
        progress("scene_graph", 0.0)
        t0 = time.perf_counter()
        graph = build_scene_graph(objects, background, cfg.scene_graph)
        timings["scene_graph"] = time.perf_counter() - t0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        stamp = max((kf.frame.stamp for kf in keyframes), default=0.0)
        return Reconstruction(objects, background, graph, stamp, timings, backend=self.name)


BACKENDS = {"tsdf": TsdfBackend}


def make_backend(config: DpreconConfig):
    if config.reconstruction.backend == "neural" and "neural" not in BACKENDS:
        from .neural.backend import NeuralBackend

        BACKENDS["neural"] = NeuralBackend
    try:
        return BACKENDS[config.reconstruction.backend](config)
    except KeyError:
        raise ValueError(f"unknown backend {config.reconstruction.backend!r}; have {sorted(BACKENDS)}") from None

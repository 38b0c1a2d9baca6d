"""A map small enough for tests about behaviour, not quality: a few low-resolution views, coarse volumes,
and a geometry stage that runs until it is cancelled (tests of cancel, reset and shutdown)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dprecon_ros.config import DpreconConfig, set_leaf
from dprecon_ros.core.mapping.mapper import Mapper
from dprecon_ros.core.types import Frame

# coarse volumes: a run over a handful of 80x64 views takes well under a second on a CPU
TINY_TSDF: dict[str, object] = {
    "tsdf.object_voxel_m": 0.05,
    "tsdf.background_voxel_m": 0.1,
}
# a toy geometry stage with more steps than any test waits for: a run with it ends only when cancelled
ENDLESS_GEOMETRY: dict[str, object] = {
    "geometry.cpu_preset": False,
    "geometry.iterations": 1_000_000,
    "geometry.rays_per_batch": 32,
    "geometry.object_resolution": 8,
    "geometry.background_resolution": 8,
    "geometry.feature_resolution": 4,
    "geometry.background_patches": 1,
    "geometry.patch_size": 4,
    "geometry.progress_every": 1,  # feedback after every step: a test can wait until steps are going
}


def tiny_config(persist_dir: str | Path | None = None, **overrides: object) -> DpreconConfig:
    """CPU, TINY_TSDF, and dotted-name `overrides` (double underscores for dots)."""
    cfg = DpreconConfig()
    cfg.compute.device = "cpu"
    for name, value in {**TINY_TSDF, **{k.replace("__", "."): v for k, v in overrides.items()}}.items():
        set_leaf(cfg, name, value)
    if persist_dir is not None:
        cfg.keyframes.persist_dir = str(persist_dir)
    return cfg


def write_tiny_map(directory: str | Path, frames: Iterable[Frame], reconstruct: bool = True) -> Mapper:
    """The persist directory a node fed `frames` would leave (with its reconstructed map if `reconstruct`)."""
    mapper = Mapper(tiny_config(directory))
    for frame in frames:
        mapper.add_frame(frame)
    if reconstruct:
        mapper.reconstruct()
    return mapper

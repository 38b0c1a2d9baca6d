"""Configuration of TSDF fusion (the `fuse` stage)."""

from __future__ import annotations

from dataclasses import dataclass

from dprecon_ros.config_fields import config_field


@dataclass
class TsdfConfig:
    object_voxel_m: float = config_field(0.01, "voxel size of object volumes", (0.001, 0.5))
    background_voxel_m: float = config_field(0.04, "voxel size of the background volume", (0.005, 1.0))
    truncation_voxels: float = config_field(4.0, "truncation distance in voxels", (1.0, 50.0))
    object_margin_m: float = config_field(0.06, "object volumes extend this far beyond the object's points", (0.0, 1.0))
    max_object_voxels: int = config_field(4_000_000, "object volumes are coarsened to stay under this", (1000, 1_000_000_000))
    max_background_voxels: int = config_field(8_000_000, "the background volume is coarsened to stay under this", (1000, 1_000_000_000))
    free_space_weight: float = config_field(0.5, "weight of free-space carving seen through non-object pixels", (0.0, 1.0))

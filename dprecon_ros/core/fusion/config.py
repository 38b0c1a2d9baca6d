"""Configuration of TSDF fusion (the `fuse` stage and the live map)."""

from __future__ import annotations

from dataclasses import dataclass

from dprecon_ros.config_fields import config_field


@dataclass
class TsdfConfig:
    object_voxel_m: float = config_field(0.01, "voxel size of object volumes", (0.001, 0.5))
    background_voxel_m: float = config_field(0.04, "voxel size of the background volume", (0.005, 1.0))
    truncation_voxels: float = config_field(4.0, "truncation distance in voxels", (1.0, 50.0))
    object_margin_m: float = config_field(0.06, "object volumes extend this far beyond the object's points", (0.0, 1.0))
    free_space_weight: float = config_field(0.5, "weight of free-space carving seen through non-object pixels", (0.0, 1.0))
    block_voxels: int = config_field(
        8, "edge of a voxel block of the sparse volumes, in voxels (a power of two: 8 or 16)", (2, 64), live=False
    )
    allocation_samples_per_block: float = config_field(
        3.0,
        "depth pixels are sampled densely enough that a block at the farthest reading spans this many samples;"
        " more finds blocks seen as thin slivers, at the cost of more back-projection",
        (0.5, 64.0),
    )
    max_depth_m: float = config_field(10.0, "readings farther than this allocate no blocks", (0.1, 1000.0))
    live: bool = config_field(True, "fuse each keyframe into the live map when it is accepted (off the ingestion path)", live=False)

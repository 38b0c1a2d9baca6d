"""Configuration of keyframe selection and mask-to-object association."""

from __future__ import annotations

from dataclasses import dataclass

from dprecon_ros.config_fields import config_field


@dataclass
class KeyframeConfig:
    min_translation_m: float = config_field(0.12, "a frame becomes a keyframe if it moved this far from every keyframe", (0.0, 10.0))
    min_rotation_deg: float = config_field(12.0, "... or turned this much from every keyframe", (0.0, 180.0))
    max_keyframes: int = config_field(60, "keyframe count bound (the most redundant is evicted)", (2, 10000))
    max_memory_mb: float = config_field(
        1024.0,
        "memory bound of the keyframes (images and association voxel keys) plus the frames waiting to become one (decoded, queued), MiB",
        (1.0, 1.0e6),
    )
    waiting_share: float = config_field(
        0.25,
        "largest share of max_memory_mb that frames waiting to become keyframes may claim from the keyframes (a"
        " backlog beyond it evicts no more)",
        (0.0, 0.9),
    )
    blur_threshold: float = config_field(15.0, "frames whose Laplacian variance (0-255 grey) is below this are blurred", (0.0, 1.0e5))
    rotation_weight_m_per_rad: float = config_field(0.5, "metres a radian of rotation counts as when ranking redundancy", (0.0, 10.0))
    persist_dir: str = config_field(
        "", "directory that mirrors the keyframe buffer and the reconstructed map; empty = in memory only", live=False
    )


@dataclass
class AssociationConfig:
    voxel_size_m: float = config_field(
        0.025, "voxel size of the occupancy used for 3D overlap (objects store their voxels at it)", (0.001, 1.0), live=False
    )
    min_overlap: float = config_field(0.25, "overlap (fraction of the smaller set) needed to join an object", (0.0, 1.0))
    require_label_match: bool = config_field(True, "only join objects of the same label")
    max_points_per_instance: int = config_field(4000, "back-projected points kept per instance", (100, 1000000))
    depth_outlier_m: float = config_field(
        0.3, "instance pixels further than this (plus 3 MAD) from the median depth are dropped", (0.01, 10.0)
    )
    mask_erosion_px: int = config_field(1, "instance masks are eroded by this many pixels against depth bleeding at edges", (0, 20))
    box_overlap_weight: float = config_field(0.9, "weight of 'instance inside the object's box' against voxel overlap", (0.0, 1.0))
    box_margin_m: float = config_field(
        0.05, "an object's box is grown by this much when testing whether an instance lies inside it", (0.0, 1.0)
    )
    merge_overlap: float = config_field(0.5, "objects of the same label overlapping this much are merged", (0.0, 1.0))
    min_observations: int = config_field(1, "objects seen in fewer keyframes are not reconstructed", (1, 1000))

"""Configuration of mesh extraction (the `mesh` stage)."""

from __future__ import annotations

from dataclasses import dataclass

from dprecon_ros.config_fields import config_field


@dataclass
class MeshConfig:
    target_faces: int = config_field(20000, "object meshes are simplified to about this many faces", (100, 10_000_000))
    background_target_faces: int = config_field(60000, "background mesh face budget", (100, 10_000_000))
    min_component_fraction: float = config_field(
        0.05, "drop object mesh components smaller than this fraction of the largest (1 = largest only)", (0.0, 1.0)
    )
    min_weight: float = config_field(0.5, "voxels observed with less total weight are treated as unknown", (0.0, 1000.0))

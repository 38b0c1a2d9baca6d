"""Configuration of the scene graph's relations."""

from __future__ import annotations

from dataclasses import dataclass

from dprecon_ros.config_fields import config_field


@dataclass
class SceneGraphConfig:
    up_axis: str = config_field("z", "gravity-up axis of the map frame", choices=("z", "y"))
    on_max_gap_m: float = config_field(0.06, "max vertical gap between a supported object's bottom and its support's top", (0.0, 1.0))
    on_min_footprint_overlap: float = config_field(0.5, "fraction of the upper footprint that must lie over the support", (0.0, 1.0))
    inside_min_fraction: float = config_field(0.8, "fraction of a box inside another for 'inside'", (0.0, 1.0))
    next_to_max_distance_m: float = config_field(0.25, "max horizontal gap between boxes for 'next_to'", (0.0, 10.0))
    floor_label: str = config_field("floor", "label of the background support node")

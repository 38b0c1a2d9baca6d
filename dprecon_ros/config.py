"""One typed configuration tree for the whole package.

Each part declares its section next to its code; this module composes them. Defaults live in the sections,
`config/*.yaml` overrides them, and the ROS node maps every leaf onto a declared parameter
(`dprecon_ros.ros.params`) using each field's help text, range and `live` flag.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dprecon_ros.config_fields import (  # noqa: F401  (re-exported: the one place users import from)
    ConfigError,
    apply_overrides,
    config_field,
    is_live,
    iter_leaves,
    set_leaf,
)
from dprecon_ros.core.compute import ComputeConfig
from dprecon_ros.core.fusion.config import TsdfConfig
from dprecon_ros.core.ingest.config import FrameConfig, SyncConfig, TopicsConfig
from dprecon_ros.core.mapping.config import AssociationConfig, KeyframeConfig
from dprecon_ros.core.pipeline_config import ReconstructionConfig
from dprecon_ros.core.scene_graph_config import SceneGraphConfig
from dprecon_ros.core.stages.geometry.config import GeometryConfig
from dprecon_ros.core.stages.mesh import MeshConfig
from dprecon_ros.core.stages.prior.config import PriorConfig
from dprecon_ros.core.texture.config import TextureConfig


@dataclass
class DpreconConfig:
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    frames: FrameConfig = field(default_factory=FrameConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    association: AssociationConfig = field(default_factory=AssociationConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    tsdf: TsdfConfig = field(default_factory=TsdfConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)
    scene_graph: SceneGraphConfig = field(default_factory=SceneGraphConfig)


NODE_ONLY_KEYS = ("use_sim_time",)


def unwrap_ros_parameters(data: dict[str, Any]) -> dict[str, Any]:
    """Accept a ROS 2 params file (`<node>: ros__parameters: ...`) as well as a plain nested mapping, so one
    YAML serves `--params-file` and the offline tools."""
    for value in data.values():
        if isinstance(value, dict) and "ros__parameters" in value:
            params = dict(value["ros__parameters"])
            return {k: v for k, v in params.items() if k not in NODE_ONLY_KEYS}
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> DpreconConfig:
    """Defaults, then the YAML file (if any), then dotted-name overrides."""
    config = DpreconConfig()
    if path:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        apply_overrides(config, unwrap_ros_parameters(data))
    for dotted, value in (overrides or {}).items():
        set_leaf(config, dotted, value)
    return config


def config_to_dict(config: DpreconConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)

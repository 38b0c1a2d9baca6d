"""One typed configuration tree for the whole package.

Defaults live here, next to their meaning; `config/*.yaml` overrides them, and the ROS node maps every
leaf onto a declared parameter (`dprecon_ros.ros.params`) using the `help` and `range` metadata below.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def config_field(default: Any, help: str, range: tuple[float, float] | None = None, choices: tuple[str, ...] = ()):
    """A dataclass field that carries its own documentation and validity range."""
    meta = {"help": help, "range": range, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TopicsConfig:
    rgb: str = config_field("/camera/color/image_raw", "colour image topic (rgb8, bgr8, rgba8, bgra8, mono8)")
    camera_info: str = config_field("/camera/color/camera_info", "CameraInfo of the colour camera")
    depth: str = config_field("/camera/depth/image_raw", "depth topic registered to colour (32FC1 m or 16UC1 mm); empty = none")
    instance: str = config_field("/camera/instance/image_raw", "instance-id image (16UC1, 32SC1, 8UC1); 0 = background")
    labels: str = config_field(
        "/camera/instance/labels", 'JSON {"<id>": "<label>"} for the latest instance image; empty = none (all "object")'
    )
    pose: str = config_field("/camera/pose", "camera pose topic (PoseStamped or Odometry, see pose_source)")
    pose_source: str = config_field("pose", "where the camera pose comes from", choices=("pose", "odometry", "tf"))
    map_frame: str = config_field("map", "world frame of all outputs (REP-105)")
    image_qos: str = config_field("sensor_data", "QoS of image subscriptions", choices=("sensor_data", "reliable"))


@dataclass
class SyncConfig:
    tolerance_s: float = config_field(0.03, "max stamp difference when matching colour, depth, mask and pose", (0.0, 1.0))
    queue_size: int = config_field(30, "messages kept per stream while waiting for a match", (1, 1000))
    max_pose_gap_s: float = config_field(0.25, "poses further apart than this are not interpolated between", (0.0, 10.0))
    reorder_window_s: float = config_field(
        1.0, "a stream is given up on for a frame only once it is this far past the frame's stamp", (0.0, 10.0)
    )
    labels_wait_s: float = config_field(5.0, "how long (in image stamps) a frame waits for its labels message", (0.0, 60.0))
    tf_buffer_s: float = config_field(30.0, "how much pose history is kept for interpolation", (1.0, 600.0))
    max_linear_speed_mps: float = config_field(3.0, "pose jumps faster than this are rejected", (0.01, 100.0))
    max_angular_speed_dps: float = config_field(360.0, "rotations faster than this (deg/s) are rejected", (1.0, 10000.0))


@dataclass
class FrameConfig:
    min_depth_m: float = config_field(0.1, "depth readings nearer than this are invalid", (0.0, 10.0))
    max_depth_m: float = config_field(6.0, "depth readings further than this are invalid", (0.1, 100.0))
    min_valid_depth_ratio: float = config_field(0.05, "frames with fewer valid depth pixels are rejected", (0.0, 1.0))
    min_mask_pixels: int = config_field(40, "instances smaller than this (pixels) are ignored", (1, 100000))


@dataclass
class KeyframeConfig:
    min_translation_m: float = config_field(0.12, "a frame becomes a keyframe if it moved this far from every keyframe", (0.0, 10.0))
    min_rotation_deg: float = config_field(12.0, "... or turned this much from every keyframe", (0.0, 180.0))
    max_keyframes: int = config_field(60, "keyframe count bound (the most redundant is evicted)", (2, 10000))
    max_memory_mb: float = config_field(1024.0, "keyframe memory bound in MiB", (1.0, 1.0e6))
    blur_threshold: float = config_field(15.0, "frames whose Laplacian variance (0-255 grey) is below this are blurred", (0.0, 1.0e5))
    rotation_weight_m_per_rad: float = config_field(0.5, "metres a radian of rotation counts as when ranking redundancy", (0.0, 10.0))
    pending_frames: int = config_field(16, "synchronised frames waiting for keyframe selection before the oldest is dropped", (1, 10000))
    persist_dir: str = config_field("", "directory that mirrors the keyframe buffer; empty = in memory only")


@dataclass
class AssociationConfig:
    voxel_size_m: float = config_field(0.025, "voxel size of the occupancy used for 3D overlap", (0.001, 1.0))
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


@dataclass
class TsdfConfig:
    object_voxel_m: float = config_field(0.01, "voxel size of object volumes", (0.001, 0.5))
    background_voxel_m: float = config_field(0.04, "voxel size of the background volume", (0.005, 1.0))
    truncation_voxels: float = config_field(4.0, "truncation distance in voxels", (1.0, 50.0))
    object_margin_m: float = config_field(0.06, "object volumes extend this far beyond the object's points", (0.0, 1.0))
    max_object_voxels: int = config_field(4_000_000, "object volumes are coarsened to stay under this", (1000, 1_000_000_000))
    max_background_voxels: int = config_field(8_000_000, "the background volume is coarsened to stay under this", (1000, 1_000_000_000))
    free_space_weight: float = config_field(0.5, "weight of free-space carving seen through non-object pixels", (0.0, 1.0))
    device: str = config_field("auto", "torch device: auto, cpu, cuda, cuda:N")


@dataclass
class MeshConfig:
    target_faces: int = config_field(20000, "object meshes are simplified to about this many faces", (100, 10_000_000))
    background_target_faces: int = config_field(60000, "background mesh face budget", (100, 10_000_000))
    min_component_fraction: float = config_field(
        0.05, "drop object mesh components smaller than this fraction of the largest (1 = largest only)", (0.0, 1.0)
    )
    min_weight: float = config_field(0.5, "voxels observed with less total weight are treated as unknown", (0.0, 1000.0))


@dataclass
class SceneGraphConfig:
    up_axis: str = config_field("z", "gravity-up axis of the map frame", choices=("z", "y"))
    on_max_gap_m: float = config_field(0.06, "max vertical gap between a supported object's bottom and its support's top", (0.0, 1.0))
    on_min_footprint_overlap: float = config_field(0.5, "fraction of the upper footprint that must lie over the support", (0.0, 1.0))
    inside_min_fraction: float = config_field(0.8, "fraction of a box inside another for 'inside'", (0.0, 1.0))
    next_to_max_distance_m: float = config_field(0.25, "max horizontal gap between boxes for 'next_to'", (0.0, 10.0))
    floor_label: str = config_field("floor", "label of the background support node")


@dataclass
class NeuralConfig:
    """Stage 1 of DP-Recon: compositional SDF fields fitted to the keyframes (weights as in the paper)."""

    iterations: int = config_field(
        1500, "optimisation steps (the fields start from the TSDF, so far fewer than the paper's 35k)", (1, 1_000_000)
    )
    rays_per_batch: int = config_field(1024, "rays per step", (8, 1_000_000))
    object_resolution: int = config_field(96, "SDF grid cells along an object's longest side", (8, 512))
    background_resolution: int = config_field(128, "SDF grid cells along the scene's longest side", (8, 1024))
    feature_resolution: int = config_field(64, "colour feature grid cells along the scene's longest side", (4, 512))
    feature_dim: int = config_field(8, "colour feature channels", (1, 64))
    hidden_dim: int = config_field(64, "width of the colour network", (8, 1024))
    object_margin: float = config_field(0.15, "object grids extend this fraction of the box size beyond it", (0.0, 2.0))
    carve_margin_m: float = config_field(0.015, "depth tolerance of the initial hull carving (m); at least one grid cell", (0.0, 1.0))
    lr_sdf_voxels: float = config_field(0.05, "learning rate of each SDF grid, in cells of that grid", (1e-5, 10.0))
    lr_beta: float = config_field(0.001, "learning rate of log(beta)", (0.0, 1.0))
    lr_color: float = config_field(0.01, "learning rate of the colour feature grid and network", (1e-6, 1.0))
    beta_init: float = config_field(
        0.005,
        "initial VolSDF beta (scene units, radius 1); the paper starts at 0.1 from scratch, fields here start at the TSDF",
        (1e-5, 1.0),
    )
    samples_init: int = config_field(64, "error-bounded sampling: initial uniform samples per ray", (4, 1024))
    samples_final: int = config_field(64, "error-bounded sampling: samples drawn from the opacity bound", (4, 1024))
    samples_extra: int = config_field(32, "error-bounded sampling: extra samples kept from the refined set", (0, 1024))
    sampling_eps: float = config_field(0.1, "error-bounded sampling: opacity error bound", (1e-4, 1.0))
    sampling_iters: int = config_field(5, "error-bounded sampling: refinement rounds", (0, 20))
    w_rgb: float = config_field(1.0, "weight of the RGB L1 loss", (0.0, 1000.0))
    w_depth: float = config_field(
        0.1, "weight of the depth loss (metric with a depth topic, scale-and-shift invariant without)", (0.0, 1000.0)
    )
    w_normal_l1: float = config_field(0.05, "weight of the normal L1 loss (normals from measured depth)", (0.0, 1000.0))
    w_normal_cos: float = config_field(0.05, "weight of the normal angular loss", (0.0, 1000.0))
    w_mask: float = config_field(1.0, "weight of the instance loss (rendered object opacity vs masks, MSE)", (0.0, 1000.0))
    w_eikonal: float = config_field(0.1, "weight of the eikonal loss", (0.0, 1000.0))
    w_smooth: float = config_field(0.005, "weight of the normal smoothness loss", (0.0, 1000.0))
    w_overlap: float = config_field(0.5, "weight of the object-violation loss (a point inside two objects)", (0.0, 1000.0))
    w_background: float = config_field(0.1, "weight of the background regulariser (background empty on object surfaces)", (0.0, 1000.0))
    smooth_offset: float = config_field(0.01, "offset (scene units) between the points compared by the smoothness loss", (1e-5, 1.0))
    mixed_precision: bool = config_field(True, "bf16 autocast for the colour network on CUDA (SDF grids stay float32)")
    progress_every: int = config_field(25, "report progress every this many steps", (1, 100000))
    seed: int = config_field(0, "random seed of ray and point sampling", (0, 2**31 - 1))
    device: str = config_field("auto", "torch device: auto, cpu, cuda, cuda:N")


@dataclass
class ReconstructionConfig:
    backend: str = config_field("tsdf", "reconstruction backend", choices=("tsdf", "neural"))
    period_s: float = config_field(15.0, "seconds between periodic reconstructions; 0 = only on demand", (0.0, 86400.0))
    min_keyframes: int = config_field(3, "a run needs at least this many keyframes", (1, 10000))
    export_dir: str = config_field("", "if set, every run's meshes and scene graph are exported here")


@dataclass
class DpreconConfig:
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    frames: FrameConfig = field(default_factory=FrameConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    association: AssociationConfig = field(default_factory=AssociationConfig)
    tsdf: TsdfConfig = field(default_factory=TsdfConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    scene_graph: SceneGraphConfig = field(default_factory=SceneGraphConfig)
    neural: NeuralConfig = field(default_factory=NeuralConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)


class ConfigError(ValueError):
    """A configuration value has the wrong name, type or range."""


def _validate_leaf(path: str, f: dataclasses.Field, value: Any) -> Any:
    hint = f.type if not isinstance(f.type, str) else {"float": float, "int": int, "bool": bool, "str": str}[f.type]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected a bool, got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an int, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        value = float(value)
    elif hint is str and not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    rng = f.metadata.get("range")
    if rng is not None and not (rng[0] <= value <= rng[1]):
        raise ConfigError(f"{path}: {value!r} outside [{rng[0]}, {rng[1]}]")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{path}: {value!r} not one of {list(choices)}")
    return value


def _is_section(f: dataclasses.Field) -> bool:
    return dataclasses.is_dataclass(f.default_factory) if f.default_factory is not dataclasses.MISSING else False


def apply_overrides(section: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Write nested `values` into the dataclass tree, validating names, types and ranges."""
    fields = {f.name: f for f in dataclasses.fields(section)}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}")
        f = fields[key]
        if _is_section(f):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a mapping")
            apply_overrides(getattr(section, key), value, prefix=f"{path}.")
        else:
            setattr(section, key, _validate_leaf(path, f, value))


def iter_leaves(section: Any, prefix: str = "") -> typing.Iterator[tuple[str, dataclasses.Field, Any]]:
    """Yield (dotted.name, field, value) for every leaf, in declaration order."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            yield from iter_leaves(value, prefix=f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, value


def set_leaf(config: Any, dotted: str, value: Any) -> None:
    """Set one leaf by its dotted name, validated like YAML input."""
    *parents, leaf = dotted.split(".")
    nested: dict[str, Any] = {leaf: value}
    for name in reversed(parents):
        nested = {name: nested}
    apply_overrides(config, nested)


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

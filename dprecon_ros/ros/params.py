"""Map the typed config tree onto ROS parameters: one declaration per leaf, with description and range."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from ..config import ConfigError, iter_leaves, set_leaf

# Parameters that change what the node subscribes to or allocates are read once at start-up.
READ_ONLY_SECTIONS = ("topics.", "keyframes.persist_dir", "tsdf.device", "neural.device", "reconstruction.backend")


def _descriptor(name: str, f: dataclasses.Field, value: Any) -> ParameterDescriptor:
    text = f.metadata.get("help", "")
    choices = f.metadata.get("choices")
    if choices:
        text += f" (one of: {', '.join(choices)})"
    desc = ParameterDescriptor(description=text, read_only=name.startswith(READ_ONLY_SECTIONS))
    rng = f.metadata.get("range")
    if rng is not None and not isinstance(value, bool):
        if isinstance(value, int):
            desc.integer_range = [IntegerRange(from_value=int(rng[0]), to_value=int(min(rng[1], 2**62)), step=0)]
        elif isinstance(value, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(rng[0]), to_value=float(rng[1]), step=0.0)]
    return desc


def declare_config(node: Node, config: Any) -> None:
    """Declare every leaf of a config dataclass (defaults from `config`) and read the values the node was
    started with."""
    for name, f, value in iter_leaves(config):
        declared = node.declare_parameter(name, value, _descriptor(name, f, value)).value
        try:
            set_leaf(config, name, declared)
        except ConfigError as exc:
            node.get_logger().error(f"parameter {exc}; keeping default {value!r}")


def attach_validation(node: Node, config: Any) -> None:
    """Validate runtime changes against the config's types and ranges, then apply them."""

    def on_set(params: list[Parameter]) -> SetParametersResult:
        changes = [p for p in params if p.name != "use_sim_time"]
        trial = copy.deepcopy(config)
        try:
            for p in changes:
                set_leaf(trial, p.name, p.value)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        for p in changes:
            set_leaf(config, p.name, p.value)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)

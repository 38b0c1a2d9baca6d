"""Map the typed config tree onto ROS parameters: one declaration per leaf, with description, range, and
read-only where the value is read once at start-up (the field's `live=False`)."""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from dprecon_ros.config import ConfigError, is_live, iter_leaves, set_leaf
from dprecon_ros.config_fields import validate_leaf


def _descriptor(f: dataclasses.Field, value: Any) -> ParameterDescriptor:
    text = f.metadata.get("help", "")
    choices = f.metadata.get("choices")
    if choices:
        text += f" (one of: {', '.join(map(str, choices))})"
    if not is_live(f):
        text += " [read at start-up]"
    # lists: an empty one has no element type ROS could infer, so its type is checked here, not by ROS
    desc = ParameterDescriptor(description=text, read_only=not is_live(f), dynamic_typing=isinstance(value, list))
    rng = f.metadata.get("range")
    if rng is not None and not isinstance(value, (bool, list)):
        if isinstance(value, int):
            desc.integer_range = [IntegerRange(from_value=int(rng[0]), to_value=int(min(rng[1], 2**62)), step=0)]
        elif isinstance(value, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(rng[0]), to_value=float(rng[1]), step=0.0)]
    return desc


class StartupParameterError(ConfigError):
    """A parameter the node was started with is invalid (out of range, not a choice, wrong type): the node does
    not start, whatever the parameter (the runner exits with status 2 after one error line)."""


def declare_config(node: Node, config: Any) -> None:
    """Declare every leaf of a config dataclass (defaults from `config`) and read the values the node was
    started with; StartupParameterError, logged once, for the first invalid one."""
    for name, f, default in iter_leaves(config):
        # Declared untyped first so that any given value arrives here and is judged by the config's own check,
        # which names the parameter, the value and the range or choices (rclpy would raise for ranges and
        # types, and choices are no descriptor field), then declared again with its real descriptor.
        given = node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True)).value
        if given is None and isinstance(default, list):
            given = []  # an empty list in a parameters file carries no element type: rclpy hands it over unset
        try:
            value = validate_leaf(name, f, given)
        except ConfigError as exc:
            message = f"invalid parameter {exc}"
            node.get_logger().error(message)
            raise StartupParameterError(message) from None
        node.undeclare_parameter(name)
        node.declare_parameter(name, value, _descriptor(f, value), ignore_override=True)
        set_leaf(config, name, value)


def attach_validation(
    node: Node, config: Any, lock: threading.RLock | None = None, on_changed: Callable[[list[str]], None] | None = None
) -> None:
    """Validate runtime changes against the config's types and ranges, then apply them under `lock` (runs
    snapshot the config under the same lock); `on_changed` hears the names afterwards."""
    lock = lock or threading.RLock()

    def on_set(params: list[Parameter]) -> SetParametersResult:
        changes = [p for p in params if p.name != "use_sim_time"]
        trial = copy.deepcopy(config)
        try:
            for p in changes:
                set_leaf(trial, p.name, p.value)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        with lock:
            for p in changes:
                set_leaf(config, p.name, p.value)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    if on_changed is not None:
        node.add_post_set_parameters_callback(lambda params: on_changed([p.name for p in params]))

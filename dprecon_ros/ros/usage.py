"""`--help` for the node executables: how to pass ROS arguments, and every parameter with its type, default,
range or choices and description, from the typed config (the text the parameter descriptors carry)."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from dprecon_ros.config_fields import is_live, iter_leaves, leaf_type

HELP_FLAGS = ("-h", "--help")
# node module -> its config class ("module:Class"); imported only when help is asked for
CONFIGS = {
    "dprecon_ros.ros.node": "dprecon_ros.config:DpreconConfig",
    "dprecon_ros.ros.sim_node": "dprecon_ros.ros.sim_node:SimNodeConfig",
    "dprecon_ros.ros.recorder_node": "dprecon_ros.ros.recorder_node:RecorderConfig",
    "dprecon_ros.ros.replay_node": "dprecon_ros.ros.replay_node:ReplayConfig",
}


def wants_help(argv: list[str]) -> bool:
    """-h or --help among the program's own arguments (before `--ros-args`, where rcl would refuse them)."""
    own = argv[1 : argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    return any(a in HELP_FLAGS for a in own)


def _constraint(f: dataclasses.Field) -> str:
    rng, choices = f.metadata.get("range"), f.metadata.get("choices")
    parts = []
    if choices:
        parts.append(f"one of: {', '.join(choices)}")
    elif rng is not None:
        parts.append(f"[{rng[0]}, {rng[1]}]")
    if f.metadata.get("schedule"):
        parts.append("schedule [start_step, start_value, end_value, end_step]")
    if not is_live(f):
        parts.append("read at start-up")
    return "; ".join(parts)


def parameter_lines(config: Any) -> list[str]:
    lines = []
    for name, f, value in iter_leaves(config):
        kind, element = leaf_type(f)
        type_name = f"list[{element.__name__}]" if kind is list else kind.__name__
        constraint = _constraint(f)
        lines.append(f"  {name} = {value!r}  ({type_name}{'; ' + constraint if constraint else ''})")
        lines.append(f"      {f.metadata.get('help', '')}")
    return lines


def usage(prog: str, module: str) -> str:
    """The help text of the node defined in `module`, run as `prog` (also its node name)."""
    doc = (importlib.import_module(module).__doc__ or "").strip().split("\n\n")[0]
    lines = [
        f"usage: {prog} [-h] [--ros-args [-p NAME:=VALUE]... [--params-file FILE] [-r FROM:=TO]... [-r __ns:=/NAMESPACE]]",
        "",
        doc,
        "",
        "ROS arguments: -p sets one parameter; --params-file reads a YAML with the parameters under",
        f"`{prog}: ros__parameters:` (`/**/{prog}:` inside a namespace); -r remaps a name; relative names follow",
        "`-r __ns:=/NAMESPACE`. An invalid value stops the node with one error line naming it and what is allowed.",
    ]
    config_path = CONFIGS.get(module)
    if config_path:
        mod, cls = config_path.split(":")
        config = getattr(importlib.import_module(mod), cls)()
        lines += ["", "parameters (name = default):", *parameter_lines(config)]
    return "\n".join(lines)

"""launch/*.launch.py agree with the package: executables, parameter files, parameter names and remappings.

`launch` and `launch_ros` are not installable here, so each file runs against small stand-ins that record
what it asks for; the checks are then made against setup.py, config/ and the typed configuration.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from dprecon_ros.config import DpreconConfig, iter_leaves
from dprecon_ros.ros.recorder_node import RecorderConfig
from dprecon_ros.ros.replay_node import ReplayConfig
from dprecon_ros.ros.sim_node import SimNodeConfig

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
NODE_CONFIGS = {
    "dprecon_node": DpreconConfig,
    "dprecon_sim": SimNodeConfig,
    "dprecon_replay": ReplayConfig,
    "dprecon_record": RecorderConfig,
}
ROS_BUILTIN_PARAMS = {"use_sim_time"}


class Recorded:
    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorded):
    pass


class DeclareLaunchArgument(Recorded):
    pass


class PathJoinSubstitution(Recorded):
    pass


class EnvironmentVariable(Recorded):
    pass


class FindPackageShare(Recorded):
    pass


class Node(Recorded):
    pass


class SetEnvironmentVariable(Recorded):
    pass


class LaunchDescription(Recorded):
    pass


def stand_in_modules() -> dict[str, types.ModuleType]:
    def module(name: str, **attrs) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        return m

    return {
        "launch": module("launch", LaunchDescription=LaunchDescription),
        "launch.actions": module(
            "launch.actions", DeclareLaunchArgument=DeclareLaunchArgument, SetEnvironmentVariable=SetEnvironmentVariable
        ),
        "launch.substitutions": module(
            "launch.substitutions",
            LaunchConfiguration=LaunchConfiguration,
            PathJoinSubstitution=PathJoinSubstitution,
            EnvironmentVariable=EnvironmentVariable,
        ),
        "launch_ros": module("launch_ros"),
        "launch_ros.actions": module("launch_ros.actions", Node=Node),
        "launch_ros.substitutions": module("launch_ros.substitutions", FindPackageShare=FindPackageShare),
    }


def load_description(path: Path, monkeypatch) -> list[Recorded]:
    for name, module in stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description().args[0]


def console_scripts() -> set[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return {ast.literal_eval(v).split("=")[0].strip() for v in value.elts}
    raise AssertionError("setup.py has no console_scripts")


def resolve_share_path(sub: PathJoinSubstitution) -> Path:
    parts = sub.args[0]
    assert isinstance(parts[0], FindPackageShare) and parts[0].args == ("dprecon_ros",)
    return REPO.joinpath(*parts[1:])


def parameter_names(config_cls) -> set[str]:
    return {name for name, _, _ in iter_leaves(config_cls())}


def test_there_are_launch_files_for_camera_sim_and_replay():
    assert {p.name for p in LAUNCH_FILES} >= {"camera.launch.py", "sim.launch.py", "replay.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_agrees_with_package(path, monkeypatch):
    entities = load_description(path, monkeypatch)
    arguments = {e.args[0]: e.kwargs for e in entities if isinstance(e, DeclareLaunchArgument)}
    nodes = [e for e in entities if isinstance(e, Node)]
    assert nodes, "no nodes"
    scripts = console_scripts()
    for arg in arguments.values():
        assert arg.get("description"), "every launch argument is documented"
        default = arg.get("default_value")
        if isinstance(default, PathJoinSubstitution):
            assert resolve_share_path(default).is_file(), f"{default.args} does not exist"
    for node in nodes:
        kw = node.kwargs
        assert kw["package"] == "dprecon_ros"
        assert kw["executable"] in scripts, f"{kw['executable']} is not a console script"
        names = parameter_names(NODE_CONFIGS[kw["executable"]]) | ROS_BUILTIN_PARAMS
        for entry in kw.get("parameters", []):
            if isinstance(entry, LaunchConfiguration):
                assert entry.args[0] in arguments, f"parameters file argument {entry.args[0]} is not declared"
            elif isinstance(entry, dict):
                for key, value in entry.items():
                    assert key in names, f"{kw['executable']} has no parameter {key}"
                    if isinstance(value, LaunchConfiguration):
                        assert value.args[0] in arguments
        if isinstance(kw.get("namespace"), LaunchConfiguration):
            assert kw["namespace"].args[0] in arguments, "namespace argument is not declared"
        topics = {getattr(DpreconConfig().topics, n) for n in ("rgb", "camera_info", "depth", "instance", "labels", "pose")}
        for source, target in kw.get("remappings", []):
            assert source in topics, f"remapping of {source}, which {kw['executable']} does not use"
            assert isinstance(target, LaunchConfiguration) and target.args[0] in arguments


def test_parameter_files_load_into_the_typed_configs():
    import yaml

    from dprecon_ros.config import load_config, unwrap_ros_parameters

    load_config(REPO / "config" / "dprecon.yaml")
    sim = unwrap_ros_parameters(yaml.safe_load((REPO / "config" / "sim.yaml").read_text()))
    names = parameter_names(SimNodeConfig)

    def leaves(d, prefix=""):
        for k, v in d.items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]

    assert set(leaves(sim)) <= names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_gives_its_processes_the_camera_transport_profile(path, monkeypatch):
    entities = load_description(path, monkeypatch)
    arguments = {e.args[0]: e.kwargs for e in entities if isinstance(e, DeclareLaunchArgument)}
    settings = [e for e in entities if isinstance(e, SetEnvironmentVariable)]
    assert [e.args[0] for e in settings] == ["FASTDDS_DEFAULT_PROFILES_FILE"]
    value = settings[0].args[1]
    assert isinstance(value, LaunchConfiguration) and value.args[0] in arguments
    # a profile the user already set (discovery server, interface allowlist) is kept; else the package's
    default = arguments[value.args[0]]["default_value"]
    assert isinstance(default, EnvironmentVariable) and default.args == ("FASTDDS_DEFAULT_PROFILES_FILE",)
    assert resolve_share_path(default.kwargs["default_value"]) == REPO / "config" / "fastdds_camera.xml"
    first_node = next(i for i, e in enumerate(entities) if isinstance(e, Node))
    assert entities.index(settings[0]) < first_node, "the variable must be set before the nodes start"


def test_launch_and_config_files_are_installed():
    setup = (REPO / "setup.py").read_text()
    assert 'glob("launch/*.py")' in setup and 'glob("config/*.yaml")' in setup and 'glob("config/*.xml")' in setup


def test_readme_gives_plain_commands_for_every_launch_file():
    readme = (REPO / "README.md").read_text()
    for path in LAUNCH_FILES:
        assert f"ros2 launch dprecon_ros {path.name}" in readme
    for script in ("dprecon_node", "dprecon_sim", "dprecon_replay", "dprecon_record"):
        assert f".venv/bin/{script} --ros-args" in readme

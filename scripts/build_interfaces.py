#!/usr/bin/env python3
"""Build the ROS 2 interface packages (dprecon_msgs from msg/*.msg|srv|action, and tf2_msgs) into the venv.

ROS 2 generates typed messages only from an ament_cmake package, so this writes one per interface set under
build/interfaces/ and runs cmake + make install with the venv as the install prefix. The rosidl wheels
carry the wheel builder's include paths in their CMake files; they are rewritten to this interpreter's first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
BUILD = ROOT / "build" / "interfaces"

PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>{name}</name>
  <version>0.1.0</version>
  <description>{description}</description>
  <maintainer email="dev@dprecon-ros.invalid">dprecon_ros developers</maintainer>
  <license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
{depends}
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""

CMAKELISTS = """cmake_minimum_required(VERSION 3.8)
project({name})
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
{find_depends}
rosidl_generate_interfaces(${{PROJECT_NAME}}
{files}
  DEPENDENCIES {deps})
ament_export_dependencies(rosidl_default_runtime)
ament_package()
"""

TF2_MSG = "geometry_msgs/TransformStamped[] transforms\n"


def patch_wheel_cmake_paths() -> None:
    """Point the wheels' CMake configs at this interpreter's headers and numpy."""
    import numpy

    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    for path in (VENV / "share").rglob("*.cmake"):
        text = path.read_text(errors="replace")
        new = text.replace("/opt/python/cp311-cp311/include/python3.11", py_include)
        new = re.sub(r"/[^;\"\s]*?/numpy/_core/include", np_include, new)
        if new != text:
            path.write_text(new)


def write_package(name: str, description: str, interfaces: dict[str, str], deps: list[str]) -> Path:
    src = BUILD / "src" / name
    if src.exists():
        shutil.rmtree(src)
    for rel, text in interfaces.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    (src / "package.xml").write_text(
        PACKAGE_XML.format(name=name, description=description, depends="\n".join(f"  <depend>{d}</depend>" for d in deps))
    )
    (src / "CMakeLists.txt").write_text(
        CMAKELISTS.format(
            name=name,
            find_depends="\n".join(f"find_package({d} REQUIRED)" for d in deps),
            files="\n".join(f'  "{rel}"' for rel in sorted(interfaces)),
            deps=" ".join(deps),
        )
    )
    return src


def build(src: Path) -> None:
    out = BUILD / "build" / src.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV))
    subprocess.run(
        [
            "cmake",
            str(src),
            f"-DCMAKE_INSTALL_PREFIX={VENV}",
            f"-DPython3_EXECUTABLE={VENV / 'bin' / 'python'}",
            "-DBUILD_TESTING=OFF",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        cwd=out,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(["make", f"-j{os.cpu_count() or 2}"], cwd=out, env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["make", "install"], cwd=out, env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    patch_wheel_cmake_paths()
    msg_dir = ROOT / "msg"
    interfaces = {}
    for path in sorted(msg_dir.iterdir()):
        if path.suffix in (".msg", ".srv", ".action"):
            interfaces[f"{path.suffix[1:]}/{path.name}"] = path.read_text()
    deps = ["builtin_interfaces", "std_msgs", "geometry_msgs", "shape_msgs"]
    if any(rel.startswith("action/") for rel in interfaces):
        # generated action types (goal/result/feedback + SendGoal/GetResult services) use action_msgs
        deps.append("action_msgs")
    build(write_package("dprecon_msgs", "Messages, services and actions of dprecon_ros", interfaces, deps))
    build(write_package("tf2_msgs", "tf2 messages (TFMessage), wire-compatible", {"msg/TFMessage.msg": TF2_MSG}, ["geometry_msgs"]))
    print("built interface packages dprecon_msgs, tf2_msgs")


if __name__ == "__main__":
    main()

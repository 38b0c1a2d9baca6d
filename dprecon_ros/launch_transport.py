"""The launch files' shared part: the Fast DDS profile every process they start loads (README, Camera-rate
images). Imported by launch files only; `launch` and `launch_ros` are imported when called."""

from __future__ import annotations

PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


def transport_profile_actions(publishers: str) -> list:
    """The `fastdds_profile` argument (default: a profile the user already set, else the package's) and the
    variable set from it, to come before the nodes; `publishers` names who should load the same file."""
    from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
    from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    package_profile = PathJoinSubstitution([FindPackageShare("dprecon_ros"), "config", "fastdds_camera.xml"])
    return [
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=EnvironmentVariable(PROFILE_VARIABLE, default_value=package_profile),
            description="Fast DDS XML profile (default: the one already set, else the package's camera-rate profile;"
            f" README, Camera-rate images); give {publishers} the same",
        ),
        SetEnvironmentVariable(PROFILE_VARIABLE, LaunchConfiguration("fastdds_profile")),
    ]

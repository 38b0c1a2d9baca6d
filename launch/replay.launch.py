"""Replay a recorded rosbag2 (mcap or sqlite3) into dprecon_node on the bag's own clock.

`ros2 launch dprecon_ros replay.launch.py bag:=/data/run1 rate:=0.5 export_dir:=/tmp/run1`
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from dprecon_ros.launch_transport import transport_profile_actions
from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config",
                default_value=PathJoinSubstitution([FindPackageShare("dprecon_ros"), "config", "dprecon.yaml"]),
                description="dprecon_node parameters file",
            ),
            DeclareLaunchArgument("bag", description="bag directory or file"),
            DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
            *transport_profile_actions("the publishers"),
            DeclareLaunchArgument("export_dir", default_value="", description="export meshes and scene graph here after every run"),
            Node(
                package="dprecon_ros",
                executable="dprecon_replay",
                name="dprecon_replay",
                output="screen",
                parameters=[{"bag": LaunchConfiguration("bag"), "rate": LaunchConfiguration("rate"), "publish_clock": True}],
            ),
            Node(
                package="dprecon_ros",
                executable="dprecon_node",
                name="dprecon_node",
                output="screen",
                parameters=[
                    LaunchConfiguration("config"),
                    {
                        "use_sim_time": True,
                        # replay publishes reliably and waits for acknowledgements
                        "topics.image_qos": "reliable",
                        "reconstruction.export_dir": LaunchConfiguration("export_dir"),
                    },
                ],
            ),
        ]
    )

"""The simulated room: dprecon_sim publishes a sparse camera arc, dprecon_node maps it.

`ros2 launch dprecon_ros sim.launch.py views:=15 shuffle_ids:=true export_dir:=/tmp/dprecon`
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from dprecon_ros.launch_transport import transport_profile_actions
from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("dprecon_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config", default_value=PathJoinSubstitution([share, "config", "dprecon.yaml"]), description="dprecon_node parameters file"
            ),
            DeclareLaunchArgument(
                "sim_config", default_value=PathJoinSubstitution([share, "config", "sim.yaml"]), description="dprecon_sim parameters file"
            ),
            DeclareLaunchArgument("views", default_value="15", description="camera views along the arc"),
            DeclareLaunchArgument(
                "shuffle_ids", default_value="true", description="new instance ids in every frame, as a 2D detector gives"
            ),
            DeclareLaunchArgument("rate_hz", default_value="2.0", description="simulated frames per second"),
            DeclareLaunchArgument("ground_truth_dir", default_value="", description="write ground-truth meshes here"),
            *transport_profile_actions("the publishers"),
            DeclareLaunchArgument("export_dir", default_value="", description="export meshes and scene graph here after every run"),
            Node(
                package="dprecon_ros",
                executable="dprecon_sim",
                name="dprecon_sim",
                output="screen",
                parameters=[
                    LaunchConfiguration("sim_config"),
                    {
                        "sim.num_views": LaunchConfiguration("views"),
                        "sim.shuffle_ids": LaunchConfiguration("shuffle_ids"),
                        "rate_hz": LaunchConfiguration("rate_hz"),
                        "ground_truth_dir": LaunchConfiguration("ground_truth_dir"),
                        "wait_for_subscribers_s": 30.0,
                    },
                ],
            ),
            Node(
                package="dprecon_ros",
                executable="dprecon_node",
                name="dprecon_node",
                output="screen",
                parameters=[
                    LaunchConfiguration("config"),
                    {
                        # the simulator publishes reliably; best-effort would drop large images in bursts
                        "topics.image_qos": "reliable",
                        "reconstruction.export_dir": LaunchConfiguration("export_dir"),
                    },
                ],
            ),
        ]
    )

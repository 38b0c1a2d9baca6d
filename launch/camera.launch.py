"""dprecon_node on a real RGB-D camera.

Remap the camera driver's topics onto the node's inputs with the launch arguments, e.g.
`ros2 launch dprecon_ros camera.launch.py rgb:=/camera/camera/color/image_raw pose:=/odom pose_source:=odometry`;
`namespace:=robot1` puts the node and its (relative) inputs under /robot1. The node loads
config/fastdds_camera.xml (`fastdds_profile:=`); start the camera driver with the same FASTDDS_DEFAULT_PROFILES_FILE.
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from dprecon_ros.launch_transport import transport_profile_actions
from launch import LaunchDescription

# node input topic (the config default, relative: it follows the node's namespace) -> launch argument that
# remaps it; the argument's default is the same relative name, so an unset argument remaps nothing
INPUT_REMAPS = {
    "camera/color/image_raw": ("rgb", "colour image (rgb8, bgr8, rgba8, bgra8, mono8)"),
    "camera/color/camera_info": ("camera_info", "CameraInfo of the colour camera"),
    "camera/depth/image_raw": ("depth", "depth registered to the colour camera (16UC1 mm or 32FC1 m)"),
    "camera/instance/image_raw": ("instance", "instance-id image (16UC1, 32SC1 or mono8)"),
    "camera/instance/labels": ("labels", "JSON labels of the instance ids (std_msgs/String)"),
    "camera/pose": ("pose", "camera pose (PoseStamped or Odometry, see pose_source)"),
}


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument(
            "config",
            default_value=PathJoinSubstitution([FindPackageShare("dprecon_ros"), "config", "dprecon.yaml"]),
            description="dprecon_node parameters file",
        ),
        DeclareLaunchArgument("pose_source", default_value="pose", description="pose, odometry or tf"),
        DeclareLaunchArgument("backend", default_value="tsdf", description="reconstruction backend"),
        DeclareLaunchArgument("export_dir", default_value="", description="export meshes and scene graph here after every run"),
        DeclareLaunchArgument("persist_dir", default_value="", description="persist keyframes here (resumed on restart)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node, its inputs and outputs (e.g. robot1)"),
    ]
    args += [DeclareLaunchArgument(name, default_value=topic, description=text) for topic, (name, text) in INPUT_REMAPS.items()]
    node = Node(
        package="dprecon_ros",
        executable="dprecon_node",
        name="dprecon_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("config"),
            {
                "topics.pose_source": LaunchConfiguration("pose_source"),
                "reconstruction.backend": LaunchConfiguration("backend"),
                "reconstruction.export_dir": LaunchConfiguration("export_dir"),
                "keyframes.persist_dir": LaunchConfiguration("persist_dir"),
                "use_sim_time": LaunchConfiguration("use_sim_time"),
            },
        ],
        remappings=[(topic, LaunchConfiguration(name)) for topic, (name, _) in INPUT_REMAPS.items()],
    )
    return LaunchDescription([*args, *transport_profile_actions("the camera driver"), node])

"""Configuration of the input side: topics, synchronisation, frame validity."""

from __future__ import annotations

from dataclasses import dataclass

from dprecon_ros.config_fields import config_field


@dataclass
class TopicsConfig:
    """Input names are relative (ROS convention): `__ns:=/robot1` puts them under /robot1 with the outputs, and
    a remap rule `camera/pose:=/odom` applies in any namespace. /tf and /tf_static stay global."""

    rgb: str = config_field("camera/color/image_raw", "colour image topic (rgb8, bgr8, rgba8, bgra8, mono8)", live=False)
    camera_info: str = config_field("camera/color/camera_info", "CameraInfo of the colour camera", live=False)
    depth: str = config_field("camera/depth/image_raw", "depth topic registered to colour (32FC1 m or 16UC1 mm); empty = none", live=False)
    instance: str = config_field("camera/instance/image_raw", "instance-id image (16UC1, 32SC1, 8UC1); 0 = background", live=False)
    labels: str = config_field(
        "camera/instance/labels", 'JSON {"<id>": "<label>"} for the latest instance image; empty = none (all "object")', live=False
    )
    pose: str = config_field("camera/pose", "camera pose topic (PoseStamped or Odometry, see pose_source)", live=False)
    pose_source: str = config_field("pose", "where the camera pose comes from", choices=("pose", "odometry", "tf"), live=False)
    map_frame: str = config_field("map", "world frame of all outputs (REP-105)", live=False)
    marker_history: int = config_field(
        4,
        "~/markers messages kept for late subscribers (transient local); markers are incremental with a full snapshot"
        " at least every this many, and each kept message can hold every mesh, so memory grows with it (1 = always full)",
        (1, 64),
        live=False,
    )
    image_qos: str = config_field(
        "reliable",
        "QoS of image and CameraInfo subscriptions: reliable (keep-last; best effort lost over half of each stream at 30 Hz"
        " on one machine) or sensor_data (best effort, for publishers that offer only that)",
        choices=("sensor_data", "reliable"),
        live=False,
    )


@dataclass
class SyncConfig:
    tolerance_s: float = config_field(0.03, "max stamp difference when matching colour, depth, mask and pose", (0.0, 1.0))
    queue_s: float = config_field(
        10.0,
        "camera time of messages kept per stream while waiting for a match (a late pose or a first CameraInfo is waited"
        " for this long, within queue_size)",
        (0.1, 600.0),
    )
    queue_size: int = config_field(
        240, "messages kept per stream at most while waiting for a match (bounds memory at high rates)", (1, 10000)
    )
    max_pose_gap_s: float = config_field(0.25, "poses further apart than this are not interpolated between", (0.0, 10.0))
    reorder_window_s: float = config_field(
        1.0, "a stream is given up on for a frame only once it is this far past the frame's stamp", (0.0, 10.0)
    )
    labels_wait_s: float = config_field(5.0, "how long (in image stamps) a frame waits for its labels message", (0.0, 60.0))
    idle_flush_s: float = config_field(
        5.0,
        "wall seconds without any input after which frames still waiting are resolved (a stream that stopped); longer"
        " than any pause of a live publisher, or its delayed partners are dropped",
        (0.1, 600.0),
    )
    inbox_s: float = config_field(
        2.0,
        "camera time of images the node holds undecoded for its ingest worker; beyond it the oldest are dropped (lost_backlog)",
        (0.1, 60.0),
        live=False,
    )
    tf_buffer_s: float = config_field(30.0, "how much pose history is kept for interpolation", (1.0, 600.0))
    max_linear_speed_mps: float = config_field(3.0, "pose jumps faster than this are rejected", (0.01, 100.0))
    max_angular_speed_dps: float = config_field(360.0, "rotations faster than this (deg/s) are rejected", (1.0, 10000.0))


@dataclass
class FrameConfig:
    min_depth_m: float = config_field(0.1, "depth readings nearer than this are invalid", (0.0, 10.0))
    max_depth_m: float = config_field(6.0, "depth readings further than this are invalid", (0.1, 100.0))
    min_valid_depth_ratio: float = config_field(0.05, "frames with fewer valid depth pixels are rejected", (0.0, 1.0))
    min_mask_pixels: int = config_field(40, "instances smaller than this (pixels) are ignored", (1, 100000))
    max_image_pixels: int = config_field(
        4096 * 3072, "images with more pixels (width x height) are refused before decoding: a keyframe must stay small", (1, 10**9)
    )
    max_instances: int = config_field(
        256, "a mask (or labels message) with more instance ids than this is refused: a segmentation gone wrong", (1, 65535)
    )
    max_label_length: int = config_field(128, "labels longer than this (characters) are refused", (1, 100000))

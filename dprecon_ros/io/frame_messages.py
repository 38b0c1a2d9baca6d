"""Build the standard ROS messages of a Frame (as rosbags objects) and serialise them to CDR.

One builder serves both the bag writer and the simulator node (which publishes the CDR bytes directly), so a
bag and a live stream carry identical messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from rosbags.typesys import Stores, get_typestore

from dprecon_ros.core.geometry import matrix_to_quat
from dprecon_ros.core.ingest.config import TopicsConfig
from dprecon_ros.core.ingest.image_codec import encode_image
from dprecon_ros.core.types import Frame

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
T = TYPESTORE.types

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
STRING = "std_msgs/msg/String"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
ODOMETRY = "nav_msgs/msg/Odometry"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
CLOCK = "rosgraph_msgs/msg/Clock"


@dataclass
class SensorFrames:
    """Frame ids of the simulated sensor (REP-103 optical frame)."""

    camera: str = "camera_color_optical_frame"
    map: str = "map"


def _time(stamp: float):
    sec = int(np.floor(stamp))
    return T["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((stamp - sec) * 1e9)) % 1_000_000_000)


def _header(stamp: float, frame_id: str):
    return T["std_msgs/msg/Header"](stamp=_time(stamp), frame_id=frame_id)


def image_message(array: np.ndarray, encoding: str, stamp: float, frame_id: str):
    h, w, step, data = encode_image(array, encoding)
    return T[IMAGE](
        header=_header(stamp, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=np.frombuffer(data, dtype=np.uint8),
    )


def camera_info_message(frame: Frame, frame_id: str):
    K = frame.intrinsics
    P = np.zeros((3, 4))
    P[:, :3] = K.K
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return T[CAMERA_INFO](
        header=_header(frame.stamp, frame_id),
        height=K.height,
        width=K.width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=K.K.reshape(-1),
        r=np.eye(3).reshape(-1),
        p=P.reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def _pose(T_world_camera: np.ndarray):
    q = matrix_to_quat(T_world_camera[:3, :3])
    t = T_world_camera[:3, 3]
    return T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
        orientation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]),
    )


def pose_message(frame: Frame, frames: SensorFrames):
    return T[POSE_STAMPED](header=_header(frame.stamp, frames.map), pose=_pose(frame.T_world_camera))


def tf_message(frame: Frame, frames: SensorFrames):
    q = matrix_to_quat(frame.T_world_camera[:3, :3])
    t = frame.T_world_camera[:3, 3]
    transform = T["geometry_msgs/msg/Transform"](
        translation=T["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]),
    )
    ts = T["geometry_msgs/msg/TransformStamped"](header=_header(frame.stamp, frames.map), child_frame_id=frames.camera, transform=transform)
    return T[TF_MESSAGE](transforms=[ts])


def clock_message(stamp: float):
    return T[CLOCK](clock=_time(stamp))


def frame_messages(frame: Frame, topics: TopicsConfig, frames: SensorFrames = SensorFrames()) -> list[tuple[str, str, object]]:
    """(topic, msgtype, message) for every input topic of one frame, in publishing order.

    Labels go before the instance image they describe, and the pose before the images, so a consumer that
    matches on arrival has everything it needs when the images come.
    """
    out: list[tuple[str, str, object]] = [
        (topics.camera_info, CAMERA_INFO, camera_info_message(frame, frames.camera)),
        (topics.pose, POSE_STAMPED, pose_message(frame, frames)),
        ("/tf", TF_MESSAGE, tf_message(frame, frames)),
    ]
    if topics.labels:
        out.append((topics.labels, STRING, T[STRING](data=json.dumps({str(k): v for k, v in frame.labels.items()}))))
    out.append((topics.instance, IMAGE, image_message(frame.instance.astype(np.uint16), "16UC1", frame.stamp, frames.camera)))
    if frame.depth_m is not None and topics.depth:
        out.append((topics.depth, IMAGE, image_message(np.nan_to_num(frame.depth_m, nan=0.0), "32FC1", frame.stamp, frames.camera)))
    out.append((topics.rgb, IMAGE, image_message(frame.rgb, "rgb8", frame.stamp, frames.camera)))
    return out


def serialize(message, msgtype: str) -> bytes:
    return bytes(TYPESTORE.serialize_cdr(message, msgtype))

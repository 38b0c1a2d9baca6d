"""rclpy QoS profiles as rosbag2 records them (`offered_qos_profiles`), so a bag written by a node replays with
the QoS its topics were offered with."""

from __future__ import annotations

from enum import Enum

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

NS_PER_S = 1_000_000_000


def _policy(value: Enum, kind: type[Enum]) -> Enum:
    """rclpy and rosbags name the policies alike (both follow rmw)."""
    return kind.__members__.get(value.name, kind.__members__["UNKNOWN"])


def _time(duration: Duration) -> QosTime:
    sec, nsec = divmod(duration.nanoseconds, NS_PER_S)
    return QosTime(sec=sec, nsec=nsec)


def bag_qos(profile: QoSProfile) -> Qos:
    return Qos(
        history=_policy(profile.history, QosHistory),
        depth=profile.depth,
        reliability=_policy(profile.reliability, QosReliability),
        durability=_policy(profile.durability, QosDurability),
        deadline=_time(profile.deadline),
        lifespan=_time(profile.lifespan),
        liveliness=_policy(profile.liveliness, QosLiveliness),
        liveliness_lease_duration=_time(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=profile.avoid_ros_namespace_conventions,
    )


def offered_by_publishers(node: Node, topic: str) -> list[Qos]:
    """The profiles of every publisher on `topic` (a resolved name) the graph knows of, as `ros2 bag record`
    stores them."""
    return [bag_qos(info.qos_profile) for info in node.get_publishers_info_by_topic(topic)]

"""The QoS a rosbag2 records per topic (`offered_qos_profiles`), without ROS.

`ros2 bag play` publishes a topic transient-local only when every recorded offer was transient-local, so a
bag without profiles replays latched topics (labels, /tf_static) volatile. The depths are those of the
project's own publishers and subscriptions (ros/qos.py reads them from here).
"""

from __future__ import annotations

from collections.abc import Sequence

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

STREAM_DEPTH = 20  # reliable image inputs: a burst of frames fits
# subscriptions to poses, CameraInfo and /tf: small and at camera rate; 20 lost some behind large images at
# 60 Hz, and a history of a few seconds costs a few hundred kilobytes
SMALL_STREAM_DEPTH = 200
LATCHED_DEPTH = 10  # labels: a burst must not overwrite one before it is read
# RMW_DURATION_INFINITE: how rmw reports an unset deadline, lifespan and liveliness lease
INFINITE = QosTime(sec=9223372036, nsec=854775807)


def offered_qos(depth: int, transient_local: bool = False, reliable: bool = True) -> Qos:
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=INFINITE,
        lifespan=INFINITE,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=INFINITE,
        avoid_ros_namespace_conventions=False,
    )


STREAM = offered_qos(STREAM_DEPTH)
LATCHED = offered_qos(LATCHED_DEPTH, transient_local=True)


def is_latched(profiles: Sequence[Qos]) -> bool:
    """ros2 bag play's rule: replay transient-local only if every recorded offer was."""
    return bool(profiles) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in profiles)

"""QoS profiles: sensor data for live images, reliable for bag replay, transient-local for maps."""

from collections.abc import Mapping
from pathlib import Path

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from dprecon_ros.io.offered_qos import LATCHED_DEPTH, SMALL_STREAM_DEPTH, STREAM_DEPTH

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST
)
# Labels describe the mask they travel with; keep a few so a burst does not overwrite one before it is read.
# The subscription is volatile: a volatile subscription matches volatile publishers (what most segmentation
# nodes use, rclpy's and rclcpp's default) and transient-local ones alike, while a transient-local one refuses
# volatile publishers (incompatible durability). Reliable: labels must not be lost (a frame waits for its
# labels); a best-effort labels publisher does not match and is reported by rclpy as incompatible.
LABELS = QoSProfile(
    depth=LATCHED_DEPTH, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST
)
# What sim and replay publish labels and /tf_static with: a late subscriber still gets the last few.
LATCHED_INPUT = QoSProfile(
    depth=LATCHED_DEPTH,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
RELIABLE = QoSProfile(depth=STREAM_DEPTH, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
RELIABLE_SMALL = QoSProfile(depth=SMALL_STREAM_DEPTH, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
TF_STATIC = LATCHED


def image_qos(name: str, depth: int = STREAM_DEPTH) -> QoSProfile:
    """'sensor_data' (best effort: connects to reliable and best-effort publishers) or 'reliable'."""
    if name == "reliable":
        return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    return QoSProfile(**{k: getattr(qos_profile_sensor_data, k) for k in ("reliability", "durability", "history")}, depth=depth)


# Markers are sent incrementally (only what changed); a late subscriber replays the last `history`, and the
# node sends a full snapshot before the oldest kept one would be its last, so the replay always ends complete.
# The writer keeps those messages, each up to every mesh of the map: topics.marker_history bounds that memory.
MARKER_REPLAY_DEPTH = 64  # subscribers: at least any topics.marker_history


def markers_qos(history: int) -> QoSProfile:
    return QoSProfile(
        depth=history, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST
    )


PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")  # Fast DDS 3.x, 2.x


def transport_profile(environ: Mapping[str, str]) -> tuple[str, bool]:
    """What the start-up log says about the DDS profile, and whether it is a problem: Fast DDS ignores a
    profile it cannot read with only a line on stderr, and its defaults lose sets at camera rate."""
    for name in PROFILE_VARIABLES:
        if path := environ.get(name):
            if not Path(path).is_file():
                return f"{name}={path} does not exist: Fast DDS runs on its defaults", True
            return f"Fast DDS profile {path}", False
    return "Fast DDS defaults (camera-rate images need config/fastdds_camera.xml on the publisher: README)", False

"""QoS profiles: sensor data for live images, reliable for bag replay, transient-local for maps."""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST
)
# Labels describe the mask they travel with; keep a few so a burst does not overwrite one before it is read.
LABELS = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST
)
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
TF_STATIC = LATCHED


def image_qos(name: str) -> QoSProfile:
    """'sensor_data' (best effort: connects to reliable and best-effort publishers) or 'reliable'."""
    if name == "reliable":
        return RELIABLE
    profile = QoSProfile(**{k: getattr(qos_profile_sensor_data, k) for k in ("reliability", "durability", "history")}, depth=20)
    return profile


# Markers are sent incrementally (only what changed); a late subscriber replays this many, and the node
# sends a full snapshot before the oldest kept one would be its last, so the replay always ends complete.
MARKER_HISTORY = 16
MARKERS = QoSProfile(
    depth=MARKER_HISTORY,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)

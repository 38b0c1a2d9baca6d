"""dprecon_record: record the node's input topics to a rosbag2 (mcap), since ros2 bag is not installable here.

Subscribes without deserialising (raw CDR) and writes each message with its receive time, under the name it
was subscribed to (namespace and remapping applied) and with the QoS profiles its publishers offered, as
`ros2 bag record` does: a replay then publishes labels and /tf_static transient-local again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rclpy.node import Node
from rclpy.qos import QoSProfile

from dprecon_ros.config import TopicsConfig, config_field
from dprecon_ros.io.bags import BagWriter
from dprecon_ros.io.frame_messages import CAMERA_INFO, IMAGE, ODOMETRY, POSE_STAMPED, STRING, TF_MESSAGE
from dprecon_ros.ros.bag_qos import bag_qos, offered_by_publishers
from dprecon_ros.ros.params import declare_config
from dprecon_ros.ros.qos import LABELS, LATCHED_INPUT, RELIABLE, RELIABLE_SMALL, TF_STATIC
from dprecon_ros.ros.raw_publishing import message_class
from dprecon_ros.ros.runner import run_node


@dataclass
class RecorderConfig:
    output: str = config_field("inputs_bag", "bag directory to create")
    storage: str = config_field("mcap", "bag storage", choices=("mcap", "sqlite3"))
    topics: TopicsConfig = field(default_factory=TopicsConfig)


def input_topics(t: TopicsConfig) -> dict[str, str]:
    """Topic (as configured) -> message type of every input the node can use."""
    topics = {t.rgb: IMAGE, t.instance: IMAGE, t.camera_info: CAMERA_INFO, "/tf": TF_MESSAGE, "/tf_static": TF_MESSAGE}
    if t.labels:
        topics[t.labels] = STRING
    if t.depth:
        topics[t.depth] = IMAGE
    topics[t.pose] = ODOMETRY if t.pose_source == "odometry" else POSE_STAMPED
    return topics


class RecorderNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("dprecon_record", **kwargs)
        self.cfg = RecorderConfig()
        declare_config(self, self.cfg)
        self.writer = BagWriter(self.cfg.output, self.cfg.storage)
        self.count = 0
        # subscription QoS, and what a topic is assumed to be offered with if its publisher has left the graph
        special = {self.cfg.topics.labels: (LABELS, LATCHED_INPUT), "/tf_static": (TF_STATIC, LATCHED_INPUT)}
        resolved = []
        for topic, msgtype in input_topics(self.cfg.topics).items():
            stream = RELIABLE if msgtype == IMAGE else RELIABLE_SMALL
            qos, fallback = special.get(topic, (stream, stream))
            name = self.resolve_topic_name(topic)  # namespace and remapping applied: the name subscribed to
            self.create_subscription(
                message_class(msgtype), name, lambda data, t=name, m=msgtype, f=fallback: self._write(t, m, data, f), qos, raw=True
            )
            resolved.append(name)
        self.get_logger().info(f"recording {', '.join(resolved)} to {self.cfg.output}")

    def _write(self, topic: str, msgtype: str, data: bytes, fallback: QoSProfile) -> None:
        offered = [] if self.writer.has_topic(topic) else offered_by_publishers(self, topic) or [bag_qos(fallback)]
        self.writer.write_cdr(topic, msgtype, self.get_clock().now().nanoseconds, bytes(data), offered)
        self.count += 1

    def destroy_node(self) -> None:
        writer = getattr(self, "writer", None)  # None when a bad parameter stopped the start-up before it
        if writer is not None:
            writer.close()
            self.get_logger().info(f"wrote {self.count} messages to {self.cfg.output}")
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node(RecorderNode, args)


if __name__ == "__main__":
    main()

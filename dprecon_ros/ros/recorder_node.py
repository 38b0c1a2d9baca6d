"""dprecon_record: record the node's input topics to a rosbag2 (mcap), since ros2 bag is not installable here.

Subscribes without deserialising (raw CDR) and writes each message with its receive time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rclpy.node import Node

from dprecon_ros.config import TopicsConfig, config_field
from dprecon_ros.io.bags import BagWriter
from dprecon_ros.io.frame_messages import CAMERA_INFO, IMAGE, ODOMETRY, POSE_STAMPED, STRING, TF_MESSAGE
from dprecon_ros.ros.params import declare_config
from dprecon_ros.ros.qos import LATCHED, RELIABLE
from dprecon_ros.ros.raw_publishing import message_class
from dprecon_ros.ros.runner import run_node


@dataclass
class RecorderConfig:
    output: str = config_field("inputs_bag", "bag directory to create")
    storage: str = config_field("mcap", "bag storage", choices=("mcap", "sqlite3"))
    topics: TopicsConfig = field(default_factory=TopicsConfig)


def input_topics(t: TopicsConfig) -> dict[str, str]:
    """Topic -> message type of every input the node can use."""
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
        latched = {self.cfg.topics.labels, "/tf_static"}
        for topic, msgtype in input_topics(self.cfg.topics).items():
            qos = LATCHED if topic in latched else RELIABLE
            self.create_subscription(message_class(msgtype), topic, lambda data, t=topic, m=msgtype: self._write(t, m, data), qos, raw=True)
        self.get_logger().info(f"recording {len(input_topics(self.cfg.topics))} topics to {self.cfg.output}")

    def _write(self, topic: str, msgtype: str, data: bytes) -> None:
        self.writer.write_cdr(topic, msgtype, self.get_clock().now().nanoseconds, bytes(data))
        self.count += 1

    def destroy_node(self) -> None:
        self.writer.close()
        self.get_logger().info(f"wrote {self.count} messages to {self.cfg.output}")
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node(RecorderNode, args)


if __name__ == "__main__":
    main()

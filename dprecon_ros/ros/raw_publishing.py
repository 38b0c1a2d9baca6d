"""Publish pre-serialised CDR with rclpy (sim and replay publish bytes, so bags and live streams match)."""

from __future__ import annotations

import importlib

from rclpy.node import Node
from rclpy.qos import QoSProfile

from .qos import LABELS, RELIABLE

LATCHED_TOPICS = ("/tf_static",)


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class RawPublishers:
    """One publisher per topic, created on first use with the message's rclpy type."""

    def __init__(self, node: Node, latched_topics: tuple[str, ...] = ()) -> None:
        self.node = node
        self.latched = set(LATCHED_TOPICS) | set(latched_topics)
        self._pubs = {}

    def qos_for(self, topic: str) -> QoSProfile:
        return LABELS if topic in self.latched else RELIABLE

    def prepare(self, topic: str, msgtype: str) -> None:
        """Create the publisher now, so discovery is done before the first message (else it is lost)."""
        if topic not in self._pubs:
            self._pubs[topic] = self.node.create_publisher(message_class(msgtype), topic, self.qos_for(topic))

    def wait_for_subscribers(self, topics: list[str], timeout_s: float) -> list[str]:
        """Wait until each topic has a matched subscriber (messages sent before matching are lost);
        returns the topics still without one after the timeout."""
        import time

        import rclpy

        deadline = time.monotonic() + timeout_s
        while True:
            missing = [t for t in topics if t in self._pubs and self._pubs[t].get_subscription_count() == 0]
            if not missing or time.monotonic() >= deadline or not rclpy.ok():
                return missing
            time.sleep(0.05)

    def wait_for_acks(self, timeout_s: float) -> bool:
        """Block until every reliable subscriber has acknowledged what was sent.

        A burst of large images can overflow the transport and be repaired only by later retransmission; a
        process that exits straight after publishing would lose those messages.
        """
        from rclpy.duration import Duration

        return all(pub.wait_for_all_acked(Duration(seconds=timeout_s)) for pub in self._pubs.values())

    def publish(self, topic: str, msgtype: str, data: bytes) -> None:
        self.prepare(topic, msgtype)
        self._pubs[topic].publish(data)

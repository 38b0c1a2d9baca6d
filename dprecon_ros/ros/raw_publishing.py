"""Publish pre-serialised CDR with rclpy (sim and replay publish bytes, so bags and live streams match)."""

from __future__ import annotations

import importlib

from rclpy.node import Node
from rclpy.qos import QoSProfile

from dprecon_ros.io.frame_messages import IMAGE
from dprecon_ros.ros.qos import LATCHED_INPUT, RELIABLE

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
        self._types: dict[str, str] = {}

    def qos_for(self, topic: str, msgtype: str) -> QoSProfile:
        """Latched topics transient-local; the rest reliable keep-last 20, small messages too: a writer history
        of 200 poses delayed their delivery behind the images by over half a second at 60 Hz."""
        return LATCHED_INPUT if topic in self.latched else RELIABLE

    def prepare(self, topic: str, msgtype: str) -> None:
        """Create the publisher now, so discovery is done before the first message (else it is lost)."""
        if topic not in self._pubs:
            self._pubs[topic] = self.node.create_publisher(message_class(msgtype), topic, self.qos_for(topic, msgtype))
            self._types[topic] = msgtype

    def resolved(self, topic: str) -> str:
        """The full name a prepared topic is published on (namespace and remapping applied)."""
        return self._pubs[topic].topic_name

    def essential_topics(self) -> list[str]:
        """Prepared topics a consumer cannot do without before the first message: images, and latched topics
        (a late latched subscriber gets only the last few messages)."""
        return [t for t, msgtype in self._types.items() if msgtype == IMAGE or t in self.latched]

    def wait_for_subscribers(self, topics: list[str], timeout_s: float, settle_s: float = 0.5) -> list[str]:
        """Wait until each of `topics` has a matched subscriber, every subscriber the graph knows of on a
        prepared topic is matched, and that has held for `settle_s`; returns the `topics` still without a
        subscriber after the timeout.

        Messages sent before a volatile subscription matches are lost (and a latched one keeps only its
        depth), and a consumer's subscriptions are discovered one by one: its image subscriptions may match
        while CameraInfo, labels or poses are still unknown.
        """
        import time

        deadline = time.monotonic() + timeout_s
        ready_since = None
        while True:
            missing = [t for t in topics if t in self._pubs and self._pubs[t].get_subscription_count() == 0]
            unmatched = [t for t, pub in self._pubs.items() if pub.get_subscription_count() < self.node.count_subscribers(t)]
            now = time.monotonic()
            ready_since = (ready_since or now) if not missing and not unmatched else None
            if (ready_since is not None and now - ready_since >= settle_s) or now >= deadline or not self.node.context.ok():
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

"""dprecon_sim: publishes a simulated room along a camera trajectory as the node's standard inputs.

RGB, depth, instance masks, labels, CameraInfo, PoseStamped and /tf, optionally /clock (for use_sim_time);
writes the ground-truth meshes for evaluation, and can record what it publishes to an mcap bag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from dprecon_ros.config import TopicsConfig, config_field
from dprecon_ros.io.bags import BagWriter
from dprecon_ros.io.frame_messages import CLOCK, clock_message, frame_messages, serialize
from dprecon_ros.ros.bag_qos import bag_qos
from dprecon_ros.ros.params import declare_config
from dprecon_ros.ros.raw_publishing import RawPublishers
from dprecon_ros.ros.runner import run_node
from dprecon_ros.sim.simulator import RoomSimulator, SimConfig


@dataclass
class SimNodeConfig:
    rate_hz: float = config_field(2.0, "frames published per second (wall clock)", (0.01, 100.0))
    loop: bool = config_field(False, "start the trajectory again after the last view")
    exit_when_done: bool = config_field(False, "shut down after the last view (and the linger time)")
    ack_timeout_s: float = config_field(
        10.0, "after the last view, wait up to this long for reliable subscribers to acknowledge", (0.0, 600.0)
    )
    linger_s: float = config_field(2.0, "seconds to keep running after the last view", (0.0, 3600.0))
    start_delay_s: float = config_field(
        2.0, "seconds to wait before the first frame, after subscribers matched (lets them match this publisher too)", (0.0, 600.0)
    )
    wait_for_subscribers_s: float = config_field(
        0.0,
        "wait up to this long for a subscriber on every image and labels topic (and for every known subscriber to match) before the first frame",
        (0.0, 600.0),
    )
    publish_clock: bool = config_field(False, "publish /clock with simulated time (run consumers with use_sim_time)")
    ground_truth_dir: str = config_field("", "directory for ground-truth meshes; empty = none")
    record_bag: str = config_field("", "also record the published inputs to this mcap bag; empty = none")
    sim: SimConfig = field(default_factory=SimConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("dprecon_sim", **kwargs)
        self.cfg = SimNodeConfig()
        declare_config(self, self.cfg)
        self.sim = RoomSimulator(self.cfg.sim)
        self.poses = self.sim.trajectory()
        self.sim_stamps = self.sim.stamps(self.poses, start_stamp=1000.0)
        if self.cfg.ground_truth_dir:
            paths = self.sim.export_ground_truth(self.cfg.ground_truth_dir)
            self.get_logger().info(f"wrote {len(paths)} ground-truth meshes to {self.cfg.ground_truth_dir}")
        self.pubs = RawPublishers(self, latched_topics=(self.cfg.topics.labels,))
        first, _ = self.sim.frame(self.poses[0], 0.0)
        for topic, msgtype, _ in frame_messages(first, self.cfg.topics):
            self.pubs.prepare(topic, msgtype)
        if self.cfg.publish_clock:
            self.pubs.prepare("/clock", CLOCK)
        if self.cfg.wait_for_subscribers_s > 0:
            missing = self.pubs.wait_for_subscribers(self.pubs.essential_topics(), self.cfg.wait_for_subscribers_s)
            if missing:
                self.get_logger().warning(f"no subscriber on {', '.join(missing)}; publishing anyway")
        self.bag = BagWriter(self.cfg.record_bag) if self.cfg.record_bag else None
        self.index = 0
        self.done_at = None
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._started = self._steady.now()
        self.create_timer(1.0 / self.cfg.rate_hz, self._tick, clock=self._steady)
        self.get_logger().info(f"simulating {len(self.poses)} views at {self.cfg.rate_hz} Hz")

    def _stamp(self) -> float:
        if self.cfg.publish_clock:
            return self.sim_stamps[self.index % len(self.poses)] + (self.index // len(self.poses)) * (self.sim_stamps[-1] + 1.0)
        return self.get_clock().now().nanoseconds * 1e-9

    def _publish(self, topic: str, msgtype: str, msg, stamp: float) -> None:
        data = serialize(msg, msgtype)
        self.pubs.publish(topic, msgtype, data)
        if self.bag is not None:
            name = self.pubs.resolved(topic)  # as a recorder subscribed to it would store it
            offered = [] if self.bag.has_topic(name) else [bag_qos(self.pubs.qos_for(topic, msgtype))]
            self.bag.write_cdr(name, msgtype, int(stamp * 1e9), data, offered)

    def _tick(self) -> None:
        if (self._steady.now() - self._started).nanoseconds * 1e-9 < self.cfg.start_delay_s:
            return
        if self.index >= len(self.poses) and not self.cfg.loop:
            self._finish()
            return
        stamp = self._stamp()
        frame, _ = self.sim.frame(self.poses[self.index % len(self.poses)], stamp)
        if self.cfg.publish_clock:
            self._publish("/clock", CLOCK, clock_message(stamp), stamp)
        for topic, msgtype, msg in frame_messages(frame, self.cfg.topics):
            self._publish(topic, msgtype, msg, stamp)
        self.index += 1

    def _finish(self) -> None:
        if self.done_at is None:
            self.done_at = self._steady.now()
            acked = self.pubs.wait_for_acks(self.cfg.ack_timeout_s)
            self.get_logger().info(f"published all {len(self.poses)} views" + ("" if acked else " (some not acknowledged)"))
            if self.bag is not None:
                self.bag.close()
                self.bag = None
        elif self.cfg.exit_when_done and (self._steady.now() - self.done_at).nanoseconds * 1e-9 >= self.cfg.linger_s:
            raise SystemExit(0)

    def destroy_node(self) -> None:
        # attributes are missing when a bad parameter stopped the start-up before they were made
        if getattr(self, "bag", None) is not None:
            self.bag.close()
        if getattr(self, "sim", None) is not None:
            self.sim.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node(SimNode, args)


if __name__ == "__main__":
    main()

"""dprecon_replay: play any rosbag2 (mcap or sqlite3) into the ROS graph at a chosen rate.

Publishes the stored CDR unchanged, paced by the bag's timestamps divided by `rate`, and optionally /clock
so consumers running with use_sim_time see the recorded time. Topics the bag records as offered
transient-local (labels, /tf_static) are published transient-local, as `ros2 bag play` does.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rosbags.highlevel import AnyReader

from dprecon_ros.config_fields import config_field
from dprecon_ros.io.frame_messages import CLOCK, TYPESTORE, clock_message, serialize
from dprecon_ros.io.offered_qos import is_latched
from dprecon_ros.ros.params import StartupParameterError, declare_config
from dprecon_ros.ros.raw_publishing import RawPublishers
from dprecon_ros.ros.runner import STARTUP_ERROR_EXIT, print_help_if_asked, take_over_stop_signals


@dataclass
class ReplayConfig:
    bag: str = config_field("", "bag directory or file to play")
    rate: float = config_field(1.0, "playback speed factor (2 = twice as fast)", (0.01, 1000.0))
    publish_clock: bool = config_field(True, "publish /clock from the bag's timestamps")
    start_delay_s: float = config_field(
        2.0, "seconds to wait before playing, after subscribers matched (lets them match this publisher too)", (0.0, 600.0)
    )
    wait_for_subscribers_s: float = config_field(
        10.0,
        "wait up to this long for a subscriber on every image and latched topic (and for every known subscriber to match) before playing",
        (0.0, 600.0),
    )
    loop: bool = config_field(False, "play the bag again when it ends")
    ack_timeout_s: float = config_field(10.0, "after playing, wait up to this long for reliable subscribers to acknowledge", (0.0, 600.0))
    latched_topics: str = config_field(
        "", "comma-separated topics published transient-local besides those the bag records as offered transient-local"
    )


class ReplayNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("dprecon_replay", **kwargs)
        self.cfg = ReplayConfig()
        declare_config(self, self.cfg)
        if not self.cfg.bag or not Path(self.cfg.bag).exists():
            raise SystemExit(f"dprecon_replay: bag {self.cfg.bag!r} does not exist (set -p bag:=PATH)")
        latched = tuple(t.strip() for t in self.cfg.latched_topics.split(",") if t.strip())
        self.pubs = RawPublishers(self, latched_topics=latched)
        self.published = 0

    def prepare(self) -> None:
        with AnyReader([Path(self.cfg.bag)], default_typestore=TYPESTORE) as reader:
            for connection in reader.connections:
                # as ros2 bag play does: transient-local when every recorded offer was (labels, /tf_static)
                if is_latched(getattr(connection.ext, "offered_qos_profiles", [])):
                    self.pubs.latched.add(connection.topic)
                self.pubs.prepare(connection.topic, connection.msgtype)
        if self.cfg.publish_clock:
            self.pubs.prepare("/clock", CLOCK)
        missing = self.pubs.wait_for_subscribers(self.pubs.essential_topics(), self.cfg.wait_for_subscribers_s)
        if missing:
            self.get_logger().warning(f"no subscriber on {', '.join(missing)}; playing anyway")

    def play_once(self) -> int:
        with AnyReader([Path(self.cfg.bag)], default_typestore=TYPESTORE) as reader:
            wall0, bag0 = None, None
            for connection, stamp_ns, raw in reader.messages():
                if not rclpy.ok():
                    break
                if wall0 is None:
                    wall0, bag0 = time.monotonic(), stamp_ns
                delay = (stamp_ns - bag0) * 1e-9 / self.cfg.rate - (time.monotonic() - wall0)
                if delay > 0:
                    time.sleep(delay)
                if self.cfg.publish_clock:
                    self.pubs.publish("/clock", CLOCK, serialize(clock_message(stamp_ns * 1e-9), CLOCK))
                self.pubs.publish(connection.topic, connection.msgtype, bytes(raw))
                self.published += 1
        return self.published

    def run(self) -> None:
        self.prepare()
        time.sleep(self.cfg.start_delay_s)
        while rclpy.ok():
            n = self.play_once()
            acked = self.pubs.wait_for_acks(self.cfg.ack_timeout_s)
            self.get_logger().info(f"played {n} messages from {self.cfg.bag}" + ("" if acked else " (some not acknowledged)"))
            if not self.cfg.loop:
                break


def main(args: list[str] | None = None) -> None:
    """Plays in the main thread (not a spinning executor, like run_node): pacing is a sleep between messages."""
    argv = list(args if args is not None else sys.argv)
    if print_help_if_asked(argv, __name__):
        return
    take_over_stop_signals()
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = ReplayNode()
        node.run()
        time.sleep(0.5)
        node.destroy_node()
    except StartupParameterError:
        raise SystemExit(STARTUP_ERROR_EXIT) from None
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()

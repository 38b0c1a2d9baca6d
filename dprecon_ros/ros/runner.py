"""Process entry point shared by the nodes: init, spin until Ctrl-C or shutdown, always clean up."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node


def run_node(make_node: Callable[[], Node], args: list[str] | None = None, make_executor: Callable[[], Executor] | None = None) -> None:
    """`SystemExit` from a callback ends the spin normally (the simulator exits that way when done)."""
    rclpy.init(args=args if args is not None else sys.argv)
    node = make_node()
    executor = make_executor() if make_executor else rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()

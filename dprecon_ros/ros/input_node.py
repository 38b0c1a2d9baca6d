"""The node's input subscriptions, on an inner node with an executor thread of its own.

The main executor also serves the action, services, timers and parameter services, and rclpy's Python
executor rebuilds its wait set for all of them on every wake: at 60 Hz (six input streams, 360 callbacks a
second) it took a whole core and the transport dropped what it could not take in time. Inputs only put
messages into the inbox, so they need none of that: an inner node (`<name>_inputs`, as tf2's listener makes
its own) is spun by a single-threaded executor of its own; at 60 Hz the node then used a quarter of a core.
(rclpy's experimental events executor was lighter still, but fell seconds behind on /tf in a bag replay.) Topic names are resolved by the outer
node first, so its namespace and remappings, node-specific ones included, apply unchanged. Each message is
handed over with its publisher and publication sequence number, from which the inbox counts what never arrived.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile

SPIN_TIMEOUT_S = 0.1  # how often the input thread looks at its stop flag
FAILURE_BURST = 100  # input callbacks failing in a row before the thread pauses SPIN_TIMEOUT_S after each


def message_source(info: dict) -> tuple[bytes | None, int | None]:
    """(publisher id, publication sequence number) of a received message; None where the RMW gives none."""
    gid = info.get("publisher_gid") or {}
    return gid.get("data"), info.get("publication_sequence_number")


class InputSubscriptions:
    def __init__(
        self,
        owner: Node,
        table: dict[str, tuple[type, str, QoSProfile]],
        on_message: Callable[[str, object, tuple[bytes | None, int | None]], None],
        events: Callable[[str, str], SubscriptionEventCallbacks],
        on_error: Callable[[Exception], None],
    ) -> None:
        """`table`: stream -> (message type, topic as the owner would name it, QoS); `on_message(stream, msg,
        (publisher, sequence))`; `events(stream, resolved topic)`: the transport's event callbacks, which may
        fire as soon as a subscription exists; `on_error`: a callback raised (the thread goes on)."""
        self.node = Node(
            f"{owner.get_name()}_inputs",
            namespace=owner.get_namespace(),
            context=owner.context,
            use_global_arguments=False,  # the owner resolved the names with every remapping already
            start_parameter_services=False,
        )
        topics = {stream: owner.resolve_topic_name(name) for stream, (_, name, _) in table.items()}
        self.subscriptions = {
            stream: self.node.create_subscription(
                kind,
                topics[stream],
                lambda m, info, s=stream: on_message(s, m, message_source(info)),
                profile,
                event_callbacks=events(stream, topics[stream]),
            )
            for stream, (kind, _, profile) in table.items()
        }
        self._on_error = on_error
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="dprecon_inputs", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        failures = 0  # in a row
        while not self._stop.is_set() and self.node.context.ok():
            try:
                self._executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - one failing callback must not end every input
                if not self.node.context.ok():  # shutting down: the executor's errors then are expected
                    return
                self._on_error(exc)
                failures += 1
                if failures >= FAILURE_BURST:  # failing at every wake: do not take a whole core doing it
                    self._stop.wait(SPIN_TIMEOUT_S)

    def stop(self, timeout_s: float) -> bool:
        """No more input; True if the thread ended in time."""
        self._stop.set()
        self._executor.wake()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def destroy(self) -> None:
        self._executor.shutdown(timeout_sec=SPIN_TIMEOUT_S)
        self.node.destroy_node()

"""A small rclpy client of dprecon_node: waits for its outputs, sends `~/reconstruct` goals and calls its
services (demo and tests)."""

from __future__ import annotations

import json
import time
import uuid

import rclpy
import rclpy.executors
from dprecon_msgs.action import EditObject, Reconstruct
from dprecon_msgs.msg import MapObjectArray, MapperStatus, SceneGraph
from dprecon_msgs.srv import ExportMap, MapStore, SetPrompt
from rclpy.action import ActionClient
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger
from unique_identifier_msgs.msg import UUID
from visualization_msgs.msg import Marker, MarkerArray

from dprecon_ros.ros.qos import LATCHED, MARKER_REPLAY_DEPTH, markers_qos
from dprecon_ros.ros.service_guard import REQUESTS
from dprecon_ros.testing.markers import replay_markers

# A goal request sent right after the server was discovered can be lost: the server may not have matched this
# client's request writer yet (seen after a node restart on a slow machine). Unanswered after this long, it is
# sent again with the same goal id, which the server accepts at most once. Not recovered: a lost answer to an
# accepted request (the copies are then rejected as duplicates, and `send_goal` times out while the goal runs).
GOAL_RESEND_S = 5.0


class DpreconClient:
    def __init__(self, node_name: str = "dprecon_node", client_name: str = "dprecon_client", context=None) -> None:
        self.context = context
        self.node: Node = rclpy.create_node(client_name, context=context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        base = f"/{node_name}"
        self.objects: MapObjectArray | None = None
        self.graph: SceneGraph | None = None
        self.graph_json: dict | None = None
        self.status: MapperStatus | None = None
        self.node.create_subscription(MapObjectArray, f"{base}/objects", lambda m: setattr(self, "objects", m), LATCHED)
        self.node.create_subscription(SceneGraph, f"{base}/scene_graph", lambda m: setattr(self, "graph", m), LATCHED)
        self.node.create_subscription(
            String, f"{base}/scene_graph/json", lambda m: setattr(self, "graph_json", json.loads(m.data)), LATCHED
        )
        self.node.create_subscription(MapperStatus, f"{base}/status", lambda m: setattr(self, "status", m), LATCHED)
        self.markers_received: list[MarkerArray] = []  # since the last full snapshot: what replay_markers needs
        self.markers_count = 0
        self.node.create_subscription(MarkerArray, f"{base}/markers", self._on_markers, markers_qos(MARKER_REPLAY_DEPTH))
        self.live_map_received: list[MarkerArray] = []
        self.node.create_subscription(MarkerArray, f"{base}/live_map", self.live_map_received.append, markers_qos(MARKER_REPLAY_DEPTH))
        # KEEP_ALL like the server: a burst of goals answered before this client spins must not overflow the
        # default depth of 10 answers and lose some
        services = {f"{kind}_service_qos_profile": REQUESTS for kind in ("goal", "result", "cancel")}
        self.reconstruct_action = ActionClient(self.node, Reconstruct, f"{base}/reconstruct", **services)
        self.edit_action = ActionClient(self.node, EditObject, f"{base}/edit_object", **services)
        self.feedback: list = []
        self.export_client = self.node.create_client(ExportMap, f"{base}/export")
        self.reset_client = self.node.create_client(Trigger, f"{base}/reset")
        self.save_map_client = self.node.create_client(MapStore, f"{base}/save_map")
        self.load_map_client = self.node.create_client(MapStore, f"{base}/load_map")
        self.set_prompt_client = self.node.create_client(SetPrompt, f"{base}/set_prompt")

    def _on_markers(self, msg: MarkerArray) -> None:
        self.markers_count += 1
        if msg.markers and msg.markers[0].action == Marker.DELETEALL:  # a snapshot: nothing before it matters
            self.markers_received.clear()
        self.markers_received.append(msg)

    def spin_until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.1)
        return bool(predicate())

    def wait_for_keyframes_settled(self, minimum: int, settle_s: float, timeout_s: float) -> int:
        """Wait until the node holds at least `minimum` keyframes and the count stopped changing."""
        last, since = -1, time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.1)
            n = self.status.keyframes if self.status is not None else -1
            if n != last:
                last, since = n, time.monotonic()
            elif n >= minimum and time.monotonic() - since >= settle_s:
                break
        return last

    def call(self, client, request, timeout_s: float):
        if not client.wait_for_service(timeout_sec=min(timeout_s, 30.0)):
            raise TimeoutError(f"service {client.srv_name} not available")
        future = client.call_async(request)
        self.executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        if not future.done():
            raise TimeoutError(f"service {client.srv_name} did not answer in {timeout_s} s")
        return future.result()

    def send_goal(self, action: ActionClient, goal, name: str, timeout_s: float, feedback_callback=None):
        """Send `goal` to `action` (named `name` in errors); the goal handle once answered, accepted or not."""
        if not action.wait_for_server(timeout_sec=timeout_s):
            raise TimeoutError(f"action {name} not available")
        goal_id = UUID(uuid=list(uuid.uuid4().bytes))
        deadline = time.monotonic() + timeout_s
        sent = []
        while time.monotonic() < deadline:
            sent.append(action.send_goal_async(goal, feedback_callback=feedback_callback, goal_uuid=goal_id))
            resend_at = min(deadline, time.monotonic() + GOAL_RESEND_S)
            while time.monotonic() < resend_at:
                answers = [future.result() for future in sent if future.done()]
                accepted = [handle for handle in answers if handle.accepted]
                if accepted:
                    return accepted[0]
                if len(answers) == len(sent):  # all rejected: a copy's rejection alone may hide the original's acceptance
                    return answers[0]
                self.executor.spin_once(timeout_sec=0.1)
        raise TimeoutError(f"{name} goal not answered")

    def send_reconstruct(self, force: bool = False, stages: list[str] | None = None, timeout_s: float = 30.0):
        """Send a `~/reconstruct` goal; the goal handle (feedback collects in `self.feedback`)."""
        goal = Reconstruct.Goal(force=force, stages=stages or [])
        return self.send_goal(self.reconstruct_action, goal, "~/reconstruct", timeout_s, lambda m: self.feedback.append(m.feedback))

    def send_edit(self, object_id: int, prompt: str, timeout_s: float = 30.0):
        """Send an `~/edit_object` goal; the goal handle (accepted or rejected)."""
        return self.send_goal(self.edit_action, EditObject.Goal(object_id=object_id, prompt=prompt), "~/edit_object", timeout_s)

    def wait_result(self, handle, timeout_s: float):
        """(status, result) of a goal; TimeoutError if it does not end in time."""
        future = handle.get_result_async()
        self.executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        if not future.done():
            raise TimeoutError(f"the goal did not finish in {timeout_s} s")
        return future.result().status, future.result().result

    def cancel(self, handle, timeout_s: float = 10.0):
        future = handle.cancel_goal_async()
        self.executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        return future.result()

    def reconstruct(self, timeout_s: float = 600.0, force: bool = False, stages: list[str] | None = None):
        """Run a reconstruction to its end; the action's result (success, message, counts)."""
        handle = self.send_reconstruct(force, stages)
        if not handle.accepted:
            raise RuntimeError("~/reconstruct goal rejected")
        return self.wait_result(handle, timeout_s)[1]

    @property
    def markers(self) -> MarkerArray | None:
        return self.markers_received[-1] if self.markers_received else None

    def live_map_state(self) -> dict[tuple[str, int], Marker]:
        """What a viewer of ~/live_map shows now."""
        return replay_markers(self.live_map_received)

    def marker_state(self) -> dict[tuple[str, int], object]:
        """What a viewer shows after replaying every marker message received: (ns, id) -> marker."""
        return replay_markers(self.markers_received)

    def reset(self, timeout_s: float = 30.0):
        return self.call(self.reset_client, Trigger.Request(), timeout_s)

    def save_map(self, directory: str, timeout_s: float = 120.0):
        return self.call(self.save_map_client, MapStore.Request(directory=directory), timeout_s)

    def load_map(self, directory: str, timeout_s: float = 120.0):
        return self.call(self.load_map_client, MapStore.Request(directory=directory), timeout_s)

    def set_prompt(self, object_id: int, prompt: str, timeout_s: float = 30.0):
        return self.call(self.set_prompt_client, SetPrompt.Request(object_id=object_id, prompt=prompt), timeout_s)

    def export(self, directory: str, timeout_s: float = 120.0):
        return self.call(self.export_client, ExportMap.Request(directory=directory), timeout_s)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.executor.shutdown()
        self.node.destroy_node()

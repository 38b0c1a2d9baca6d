"""A small rclpy client of dprecon_node: waits for its outputs and calls its services (demo and tests)."""

from __future__ import annotations

import json
import time

import rclpy
import rclpy.executors
from dprecon_msgs.msg import MapObjectArray, MapperStatus, SceneGraph
from dprecon_msgs.srv import ExportMap
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from ..ros.qos import LATCHED


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
        self.markers: MarkerArray | None = None
        self.status: MapperStatus | None = None
        self.node.create_subscription(MapObjectArray, f"{base}/objects", lambda m: setattr(self, "objects", m), LATCHED)
        self.node.create_subscription(SceneGraph, f"{base}/scene_graph", lambda m: setattr(self, "graph", m), LATCHED)
        self.node.create_subscription(
            String, f"{base}/scene_graph/json", lambda m: setattr(self, "graph_json", json.loads(m.data)), LATCHED
        )
        self.node.create_subscription(MarkerArray, f"{base}/markers", lambda m: setattr(self, "markers", m), LATCHED)
        self.node.create_subscription(MapperStatus, f"{base}/status", lambda m: setattr(self, "status", m), LATCHED)
        self.reconstruct_client = self.node.create_client(Trigger, f"{base}/reconstruct")
        self.export_client = self.node.create_client(ExportMap, f"{base}/export")

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

    def reconstruct(self, timeout_s: float = 600.0):
        return self.call(self.reconstruct_client, Trigger.Request(), timeout_s)

    def export(self, directory: str, timeout_s: float = 120.0):
        return self.call(self.export_client, ExportMap.Request(directory=directory), timeout_s)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.executor.shutdown()
        self.node.destroy_node()

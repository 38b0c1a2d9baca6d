"""dprecon_node: subscribes to camera, depth, instance, labels and pose; keeps keyframes; reconstructs in a
worker; publishes objects, the scene graph (typed and JSON), markers and status; offers services.

Glue only: messages go into the core's FrameAssembler and Mapper, results come back through conversions.
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from pathlib import Path

from dprecon_msgs.msg import MapObjectArray, MapperStatus, SceneGraph
from dprecon_msgs.srv import ExportMap, KeyframeStore
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from ..config import DpreconConfig
from ..core.counters import EventCounters
from ..core.export import export_reconstruction
from ..core.ingest import FrameAssembler
from ..core.mapper import Mapper
from ..core.types import Frame, Reconstruction
from . import conversions
from .logging_bridge import bridge_core_logging
from .params import attach_validation, declare_config
from .qos import LABELS, LATCHED, RELIABLE, TF_STATIC, image_qos
from .runner import run_node

INGEST_PERIOD_S = 0.02
STATUS_PERIOD_S = 1.0
# inputs, services, timers and the reconstruction worker's publishing run side by side
EXECUTOR_THREADS = 4


class DpreconNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("dprecon_node", **kwargs)
        bridge_core_logging(self.get_logger())
        self.config = DpreconConfig()
        declare_config(self, self.config)
        attach_validation(self, self.config)
        self.counters = EventCounters()
        self.assembler = FrameAssembler(self.config, self.counters)
        self.mapper = Mapper(self.config, self.counters)
        self._input_lock = threading.Lock()
        self._frames: deque[Frame] = deque()
        self._stage, self._progress, self._last_error = "idle", 0.0, ""
        self._worker: threading.Thread | None = None
        self._create_interfaces()
        t = self.config.topics
        self.get_logger().info(
            f"dprecon_node ready: backend={self.config.reconstruction.backend}, rgb={t.rgb}, depth={t.depth or '-'}, "
            f"instance={t.instance}, pose from {t.pose_source}, {len(self.mapper.keyframes)} keyframes resumed"
        )

    # ------------------------------------------------------------------ set-up
    def _create_interfaces(self) -> None:
        t = self.config.topics
        # Reentrant: the assembler has its own lock, and a mutually exclusive group starved some topics here.
        inputs = ReentrantCallbackGroup()
        qos = image_qos(t.image_qos)
        self.create_subscription(Image, t.rgb, lambda m: self._feed(self.assembler.add_rgb, m), qos, callback_group=inputs)
        self.create_subscription(Image, t.instance, lambda m: self._feed(self.assembler.add_instance, m), qos, callback_group=inputs)
        if t.depth:
            self.create_subscription(Image, t.depth, lambda m: self._feed(self.assembler.add_depth, m), qos, callback_group=inputs)
        self.create_subscription(
            CameraInfo, t.camera_info, lambda m: self._feed(self.assembler.add_camera_info, m), qos, callback_group=inputs
        )
        if t.labels:
            self.create_subscription(
                String, t.labels, lambda m: self._feed(self.assembler.add_labels, m.data), LABELS, callback_group=inputs
            )
        if t.pose_source == "pose":
            self.create_subscription(PoseStamped, t.pose, lambda m: self._feed(self.assembler.add_pose, m), RELIABLE, callback_group=inputs)
        elif t.pose_source == "odometry":
            self.create_subscription(
                Odometry, t.pose, lambda m: self._feed(self.assembler.add_odometry, m), RELIABLE, callback_group=inputs
            )
        else:
            self.create_subscription(TFMessage, "/tf", lambda m: self._feed(self.assembler.add_tf, m), RELIABLE, callback_group=inputs)
            self.create_subscription(
                TFMessage,
                "/tf_static",
                lambda m: self._feed(lambda x: self.assembler.add_tf(x, static=True), m),
                TF_STATIC,
                callback_group=inputs,
            )

        self.pub_objects = self.create_publisher(MapObjectArray, "~/objects", LATCHED)
        self.pub_graph = self.create_publisher(SceneGraph, "~/scene_graph", LATCHED)
        self.pub_graph_json = self.create_publisher(String, "~/scene_graph/json", LATCHED)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", LATCHED)
        self.pub_status = self.create_publisher(MapperStatus, "~/status", LATCHED)

        # Work timers run on the steady clock: with use_sim_time, ROS time stops when a bag or simulator
        # stops publishing /clock, and ingestion must still finish.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(INGEST_PERIOD_S, self._ingest, callback_group=MutuallyExclusiveCallbackGroup(), clock=steady)
        self.create_timer(STATUS_PERIOD_S, self._publish_status, callback_group=MutuallyExclusiveCallbackGroup(), clock=steady)
        if self.config.reconstruction.period_s > 0:
            self.create_timer(
                self.config.reconstruction.period_s,
                self._periodic_reconstruction,
                callback_group=MutuallyExclusiveCallbackGroup(),
                clock=steady,
            )
        services = ReentrantCallbackGroup()
        self.create_service(Trigger, "~/reconstruct", self._srv_reconstruct, callback_group=services)
        self.create_service(ExportMap, "~/export", self._srv_export, callback_group=services)
        self.create_service(Trigger, "~/reset", self._srv_reset, callback_group=services)
        self.create_service(KeyframeStore, "~/save_keyframes", self._srv_save, callback_group=services)
        self.create_service(KeyframeStore, "~/load_keyframes", self._srv_load, callback_group=services)

    # --------------------------------------------------------------- ingestion
    def _feed(self, add, msg) -> None:
        """Hand a message to the assembler; complete frames go to a bounded queue for the ingest timer."""
        with self._input_lock:
            try:
                add(msg)
                frames = self.assembler.pop_frames()
            except Exception as exc:  # malformed input must never stop the node
                self.counters.count("input_error", f"input message failed: {exc!r}")
                self.get_logger().debug(traceback.format_exc())
                return
            for frame in frames:
                if len(self._frames) >= self.config.keyframes.pending_frames:
                    self._frames.popleft()
                    self.counters.count("frame_queue_overflow", "keyframe selection is behind; oldest frame dropped")
                self._frames.append(frame)

    def _ingest(self) -> None:
        while True:
            with self._input_lock:
                if not self._frames:
                    return
                frame = self._frames.popleft()
            try:
                self.mapper.add_frame(frame)
            except Exception as exc:  # a bad frame must never stop the node
                self.counters.count("ingest_error", f"frame at {frame.stamp:.3f} failed: {exc!r}")

    # ---------------------------------------------------------- reconstruction
    def _progress_cb(self, stage: str, fraction: float) -> None:
        self._stage, self._progress = stage, fraction

    def _run_reconstruction(self) -> tuple[bool, str]:
        self._stage, self._progress = "reconstructing", 0.0
        try:
            recon = self.mapper.reconstruct(self._progress_cb)
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            self.counters.count("reconstruction_error", f"reconstruction failed: {self._last_error}")
            self.get_logger().debug(traceback.format_exc())
            self._stage = "error"
            return False, self._last_error
        if recon is None:
            self._stage = "idle"
            return False, f"nothing reconstructed ({len(self.mapper.keyframes)} keyframes; see status counters)"
        self._stage = "publishing"
        self._publish(recon)
        if self.config.reconstruction.export_dir:
            try:
                self._export(recon, self.config.reconstruction.export_dir)
            except OSError as exc:
                self.counters.count("export_error", f"export to {self.config.reconstruction.export_dir} failed: {exc}")
        self._stage, self._progress = "idle", 1.0
        return (
            True,
            f"{len(recon.objects)} objects, {len(recon.scene_graph.relations)} relations in {recon.timings_s.get('total', 0):.2f} s",
        )

    def _periodic_reconstruction(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return
        if len(self.mapper.keyframes) < self.config.reconstruction.min_keyframes:
            return
        self._worker = threading.Thread(target=self._run_reconstruction, name="dprecon-reconstruction", daemon=True)
        self._worker.start()

    def _publish(self, recon: Reconstruction) -> None:
        frame_id = self.config.topics.map_frame
        self.pub_objects.publish(conversions.objects_message(recon, frame_id))
        self.pub_graph.publish(conversions.scene_graph_message(recon, frame_id))
        self.pub_graph_json.publish(conversions.scene_graph_json(recon, frame_id))
        self.pub_markers.publish(conversions.marker_array(recon, frame_id))
        self._publish_status()

    def _export(self, recon: Reconstruction, directory: str) -> list[Path]:
        return export_reconstruction(recon, directory, self.config.topics.map_frame)

    def _publish_status(self) -> None:
        recon = self.mapper.latest
        self.pub_status.publish(
            conversions.status_message(
                self.get_clock().now().to_msg(),
                self._stage,
                self._progress,
                self.config.reconstruction.backend,
                len(self.mapper.keyframes),
                len(recon.objects) if recon else 0,
                self.mapper.runs,
                recon.timings_s.get("total", 0.0) if recon else 0.0,
                recon.stamp if recon else 0.0,
                self.counters.snapshot(),
                self._last_error,
            )
        )

    # ----------------------------------------------------------------- services
    def _srv_reconstruct(self, request, response):
        worker = self._worker
        if worker is not None and worker.is_alive():
            worker.join()  # a periodic run is in progress: answer with a run over the latest keyframes, after it
        response.success, response.message = self._run_reconstruction()
        return response

    def _srv_export(self, request, response):
        directory = request.directory or self.config.reconstruction.export_dir
        recon = self.mapper.latest
        if not directory:
            response.success, response.message = False, "no directory given and reconstruction.export_dir is empty"
        elif recon is None:
            response.success, response.message = False, "nothing reconstructed yet; call ~/reconstruct first"
        else:
            try:
                response.files = [str(p) for p in self._export(recon, directory)]
                response.success, response.message = True, f"exported {len(recon.objects)} objects to {directory}"
            except OSError as exc:
                response.success, response.message = False, f"export to {directory} failed: {exc}"
        return response

    def _srv_reset(self, request, response):
        self.mapper.reset()
        response.success, response.message = True, "keyframes and objects cleared"
        return response

    def _store_dir(self, request) -> str:
        return request.directory or self.config.keyframes.persist_dir

    def _srv_save(self, request, response):
        directory = self._store_dir(request)
        if not directory:
            response.success, response.message = False, "no directory given and keyframes.persist_dir is empty"
            return response
        try:
            response.count = self.mapper.save(directory)
            response.success, response.message = True, f"saved {response.count} keyframes to {directory}"
        except OSError as exc:
            response.success, response.message = False, f"saving to {directory} failed: {exc}"
        return response

    def _srv_load(self, request, response):
        directory = self._store_dir(request)
        if not directory or not Path(directory).is_dir():
            response.success, response.message = False, f"no keyframe directory {directory!r}"
            return response
        response.count = self.mapper.load(directory)
        response.success, response.message = True, f"loaded {response.count} keyframes from {directory}"
        return response


def main(args: list[str] | None = None) -> None:
    run_node(DpreconNode, args, lambda: MultiThreadedExecutor(num_threads=EXECUTOR_THREADS))


if __name__ == "__main__":
    main()

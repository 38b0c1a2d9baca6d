"""dprecon_node: subscribes to camera, depth, instance, labels and pose; keeps keyframes; reconstructs in a
background job; publishes objects, the scene graph (typed and JSON), markers and status; offers the
`~/reconstruct` action and map services.

Glue only: messages go into the core's FrameAssembler and Mapper, results come back through conversions.
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from pathlib import Path

from dprecon_msgs.action import Reconstruct
from dprecon_msgs.msg import MapObjectArray, MapperStatus, SceneGraph
from dprecon_msgs.srv import ExportMap, MapStore
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from dprecon_ros.config import ConfigError, DpreconConfig
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.ingest.assembler import FrameAssembler
from dprecon_ros.core.mapping.mapper import CANCELLED, RECONSTRUCTED, UNCHANGED, Mapper, RunJob
from dprecon_ros.core.stages.catalog import make_stages
from dprecon_ros.core.store.manifest import MapFormatError
from dprecon_ros.core.types import Frame, Reconstruction
from dprecon_ros.io.export import export_reconstruction
from dprecon_ros.ros import conversions
from dprecon_ros.ros.logging_bridge import bridge_core_logging
from dprecon_ros.ros.params import attach_validation, declare_config
from dprecon_ros.ros.qos import LABELS, LATCHED, MARKER_HISTORY, MARKERS, RELIABLE, TF_STATIC, image_qos
from dprecon_ros.ros.runner import run_node

INGEST_PERIOD_S = 0.02
STATUS_PERIOD_S = 1.0
FEEDBACK_PERIOD_S = 0.2  # action feedback while a goal's run goes on
# inputs, services, the action, timers and publishing run side by side
EXECUTOR_THREADS = 4


class DpreconNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("dprecon_node", **kwargs)
        bridge_core_logging(self.get_logger())
        self.config = DpreconConfig()
        declare_config(self, self.config)
        self.counters = EventCounters()
        self.assembler = FrameAssembler(self.config, self.counters)
        self.mapper = Mapper(self.config, self.counters)
        attach_validation(self, self.config, self.mapper.config_lock, self._on_parameters_changed)
        self._input_lock = threading.Lock()
        self._frames: deque[Frame] = deque()
        self._last_error = ""
        # publishing, reset and load take this lock: the latched topics always end at the node's current map
        self._map_lock = threading.RLock()
        self._shown: conversions.MarkersShown | None = None  # None: the next marker message is a full snapshot
        self._markers_since_snapshot = 0
        self._period_timer = None
        self._create_interfaces()
        if self.mapper.latest is not None:
            self._publish(self.mapper.latest)
        t = self.config.topics
        self.get_logger().info(
            f"dprecon_node ready: stages={'+'.join(self.config.reconstruction.stage_names())}, rgb={t.rgb}, depth={t.depth or '-'}, "
            f"instance={t.instance}, pose from {t.pose_source}, {len(self.mapper.keyframes)} keyframes and "
            f"{len(self.mapper.model.objects)} objects resumed"
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
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", MARKERS)
        self.pub_status = self.create_publisher(MapperStatus, "~/status", LATCHED)

        # Work timers run on the steady clock: with use_sim_time, ROS time stops when a bag or simulator
        # stops publishing /clock, and ingestion must still finish.
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(INGEST_PERIOD_S, self._ingest, callback_group=MutuallyExclusiveCallbackGroup(), clock=self._steady)
        self.create_timer(STATUS_PERIOD_S, self._publish_status, callback_group=MutuallyExclusiveCallbackGroup(), clock=self._steady)
        self._schedule_periodic_runs()
        services = ReentrantCallbackGroup()
        ActionServer(
            self,
            Reconstruct,
            "~/reconstruct",
            execute_callback=self._execute_reconstruct,
            goal_callback=self._accept_goal,
            cancel_callback=lambda goal: CancelResponse.ACCEPT,
            callback_group=services,
        )
        self.create_service(ExportMap, "~/export", self._srv_export, callback_group=services)
        self.create_service(Trigger, "~/reset", self._srv_reset, callback_group=services)
        self.create_service(MapStore, "~/save_map", self._srv_save_map, callback_group=services)
        self.create_service(MapStore, "~/load_map", self._srv_load_map, callback_group=services)

    def _schedule_periodic_runs(self) -> None:
        if self._period_timer is not None:
            self.destroy_timer(self._period_timer)
            self._period_timer = None
        period = self.config.reconstruction.period_s
        if period > 0:
            self._period_timer = self.create_timer(
                period, self._periodic_reconstruction, callback_group=MutuallyExclusiveCallbackGroup(), clock=self._steady
            )

    def _on_parameters_changed(self, names: list[str]) -> None:
        if "reconstruction.period_s" in names:
            self._schedule_periodic_runs()

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
    def _periodic_reconstruction(self) -> None:
        """Start a run unless one is going; a run with nothing new refits nothing and publishes nothing."""
        if len(self.mapper.keyframes) >= self.config.reconstruction.min_keyframes:
            self.mapper.start(on_done=self._finish)

    def _finish(self, job: RunJob) -> None:
        """Publish and export a finished job's map (called in the job's thread as it ends, whoever started it)."""
        with self._map_lock:
            report = job.report
            if job.error is not None:
                self._last_error = report.message
                self.counters.count("reconstruction_error", f"reconstruction failed: {report.message}")
                self.get_logger().debug("".join(traceback.format_exception(job.error)))
                return
            self.get_logger().info(f"reconstruction {report.status}: {report.message}")
            # a reset or a load after the run committed: its map is no longer the node's
            if report.status != RECONSTRUCTED or report.reconstruction is not self.mapper.latest:
                return
            self._publish(report.reconstruction)
            if self.config.reconstruction.export_dir:
                try:
                    self._export(report.reconstruction, self.config.reconstruction.export_dir)
                except OSError as exc:
                    self.counters.count("export_error", f"export to {self.config.reconstruction.export_dir} failed: {exc}")

    def _accept_goal(self, goal) -> GoalResponse:
        if goal.stages:
            try:
                make_stages(list(goal.stages))
            except ConfigError as exc:
                self.get_logger().error(f"~/reconstruct goal rejected: {exc}")
                return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute_reconstruct(self, goal_handle) -> Reconstruct.Result:
        request = goal_handle.request
        job = None
        while job is None:  # a periodic run in progress: this goal runs after it, over the latest keyframes
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                return Reconstruct.Result(success=False, message="cancelled before it started")
            job = self.mapper.start(force=request.force, stages=list(request.stages) or None, on_done=self._finish)
            if job is None and self.mapper.job is not None:
                self.mapper.job.wait(FEEDBACK_PERIOD_S)
        while not job.wait(FEEDBACK_PERIOD_S):
            if goal_handle.is_cancel_requested:
                job.cancel()
            p = job.progress
            goal_handle.publish_feedback(
                Reconstruct.Feedback(stage=p.stage, stage_index=p.stage_index, stage_count=p.stage_count, progress=p.fraction)
            )
        report = job.report
        recon = report.reconstruction
        result = Reconstruct.Result(
            success=report.status in (RECONSTRUCTED, UNCHANGED),
            message=report.message,
            refitted=len(report.refitted_objects),
            objects=len(recon.objects) if recon is not None else 0,
            relations=len(recon.scene_graph.relations) if recon is not None else 0,
            duration_s=float(report.duration_s),
        )
        if report.status == CANCELLED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def _publish(self, recon: Reconstruction) -> None:
        with self._map_lock:
            frame_id = self.config.topics.map_frame
            self.pub_objects.publish(conversions.objects_message(recon, frame_id))
            self.pub_graph.publish(conversions.scene_graph_message(recon, frame_id))
            self.pub_graph_json.publish(conversions.scene_graph_json(recon, frame_id))
            # a snapshot before the oldest kept message would be the last one a late subscriber replays
            if self._markers_since_snapshot >= MARKER_HISTORY - 1:
                self._shown = None
            markers, shown = conversions.marker_update(recon, frame_id, self._shown)
            self._markers_since_snapshot = 0 if self._shown is None else self._markers_since_snapshot + 1
            self._shown = shown
            self.pub_markers.publish(markers)
        self._publish_status()

    def _publish_empty_map(self) -> None:
        with self._map_lock:
            objects, graph, markers = conversions.empty_map_messages(self.config.topics.map_frame, self.get_clock().now().to_msg())
            self.pub_objects.publish(objects)
            self.pub_graph.publish(graph)
            self.pub_graph_json.publish(String(data=conversions.empty_graph_json(self.config.topics.map_frame)))
            self.pub_markers.publish(markers)
            self._shown, self._markers_since_snapshot = conversions.MarkersShown(), 0
        self._publish_status()

    def _export(self, recon: Reconstruction, directory: str) -> list[Path]:
        return export_reconstruction(recon, directory, self.config.topics.map_frame)

    def _publish_status(self) -> None:
        job = self.mapper.job
        running = job is not None and job.report is None  # a job handing over its result is finished
        p = job.progress if running else None
        self.pub_status.publish(
            conversions.status_message(
                self.get_clock().now().to_msg(),
                p.stage if p else "idle",
                p.fraction if p else 1.0 if self.mapper.latest is not None else 0.0,
                p.stage_index if p else 0,
                p.stage_count if p else 0,
                self.config.reconstruction.backend,
                self.config.reconstruction.stage_names(),
                len(self.mapper.keyframes),
                self.mapper.latest,
                self.mapper.runs,
                self.counters.snapshot(),
                self._last_error,
            )
        )

    # ----------------------------------------------------------------- services
    def _srv_export(self, request, response):
        directory = request.directory or self.config.reconstruction.export_dir
        recon = self.mapper.latest
        if not directory:
            response.success, response.message = False, "no directory given and reconstruction.export_dir is empty"
        elif recon is None:
            response.success, response.message = False, "nothing reconstructed yet; send a ~/reconstruct goal first"
        else:
            try:
                response.files = [str(p) for p in self._export(recon, directory)]
                response.success, response.message = True, f"exported {len(recon.objects)} objects to {directory}"
            except OSError as exc:
                response.success, response.message = False, f"export to {directory} failed: {exc}"
        return response

    def _srv_reset(self, request, response):
        job = self.mapper.job
        with self._map_lock:  # a run ending now either published before this or sees the reset
            self.mapper.reset()
            self._publish_empty_map()
        if job is not None:
            job.wait(timeout=10.0)
        response.success, response.message = True, "keyframes and objects cleared; a running reconstruction was cancelled"
        return response

    def _map_dir(self, request) -> str:
        return request.directory or self.config.keyframes.persist_dir

    def _srv_save_map(self, request, response):
        directory = self._map_dir(request)
        if not directory:
            response.success, response.message = False, "no directory given and keyframes.persist_dir is empty"
            return response
        try:
            response.keyframes = self.mapper.save_map(directory)
            response.objects = len(self.mapper.model.objects)
            response.success, response.message = True, f"saved {response.keyframes} keyframes and {response.objects} objects to {directory}"
        except OSError as exc:
            response.success, response.message = False, f"saving to {directory} failed: {exc}"
        return response

    def _srv_load_map(self, request, response):
        directory = self._map_dir(request)
        if not directory or not Path(directory).is_dir():
            response.success, response.message = False, f"no map directory {directory!r}"
            return response
        with self._map_lock:
            try:
                response.keyframes = self.mapper.load_map(directory)
            except MapFormatError as exc:
                response.success, response.message = False, str(exc)
                self.counters.count("map_unreadable", f"~/load_map refused: {exc}")
                return response
            response.objects = len(self.mapper.model.objects)
            if self.mapper.latest is not None:
                self._shown = None  # a different map: replace every marker
                self._publish(self.mapper.latest)
            else:
                self._publish_empty_map()
        response.success, response.message = True, f"loaded {response.keyframes} keyframes and {response.objects} objects from {directory}"
        return response


def main(args: list[str] | None = None) -> None:
    run_node(DpreconNode, args, lambda: MultiThreadedExecutor(num_threads=EXECUTOR_THREADS))


if __name__ == "__main__":
    main()

"""dprecon_node: subscribes to camera, depth, instance, labels and pose; keeps keyframes; reconstructs in a
background job; publishes objects, the scene graph (typed and JSON), markers and status; offers the
`~/reconstruct` action and map services.

Glue only: messages go into the core's FrameAssembler and Mapper, results come back through conversions.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from pathlib import Path

from dprecon_msgs.msg import MapObjectArray, MapperStatus, SceneGraph
from dprecon_msgs.srv import ExportMap, MapStore, SetPrompt
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from dprecon_ros.config import DpreconConfig
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.heap import fix_mmap_threshold, limit_arenas
from dprecon_ros.core.ingest.assembler import FrameAssembler, stamp_of
from dprecon_ros.core.ingest.inbox import IMAGE_STREAMS, Inbox
from dprecon_ros.core.ingest.worker import IngestWorker
from dprecon_ros.core.mapping.mapper import RECONSTRUCTED, Mapper, RunJob
from dprecon_ros.core.scene_model import BACKGROUND_ID
from dprecon_ros.core.store.manifest import MapFormatError
from dprecon_ros.core.types import Reconstruction
from dprecon_ros.io.export import export_reconstruction
from dprecon_ros.io.mesh_resources import MeshResources, mesh_resource_dir
from dprecon_ros.io.offered_qos import SMALL_STREAM_DEPTH
from dprecon_ros.ros import conversions
from dprecon_ros.ros.cdr_arrays import ArraySlots
from dprecon_ros.ros.input_node import InputSubscriptions
from dprecon_ros.ros.logging_bridge import bridge_core_logging
from dprecon_ros.ros.params import attach_validation, declare_config
from dprecon_ros.ros.qos import LABELS, LATCHED, RELIABLE_SMALL, TF_STATIC, image_qos, markers_qos, transport_profile
from dprecon_ros.ros.reconstruct_action import EditAction, ReconstructAction
from dprecon_ros.ros.runner import EXECUTOR_STOP_TIMEOUT_S, run_node
from dprecon_ros.ros.service_guard import REQUESTS, guarded, shorten

STATUS_PERIOD_S = 1.0
LIVE_MAP_HISTORY = 1  # each ~/live_map message is the whole live map: a late subscriber needs only the last
# inputs, services, timers and publishing run side by side; each held ~/reconstruct or ~/edit_object goal
# takes one more
BASE_EXECUTOR_THREADS = 4
# at shutdown, after the last goals were answered: the answers are sent, but DDS delivers them from its own
# threads, which go with the node
ANSWER_DELIVERY_S = 0.2


class DpreconNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("dprecon_node", **kwargs)
        bridge_core_logging(self.get_logger())
        self.config = DpreconConfig()
        declare_config(self, self.config)
        limit_arenas(self.config.compute.malloc_arenas)  # before the executor's and the runs' threads allocate
        fix_mmap_threshold(self.config.compute.malloc_mmap_threshold_kb)
        self.counters = EventCounters()
        self.assembler = FrameAssembler(self.config, self.counters)
        self.mapper = Mapper(self.config, self.counters)
        attach_validation(self, self.config, self.mapper.config_lock, self._on_parameters_changed)
        self._input_lock = threading.Lock()
        self.assembler.wanted = self.mapper.keyframes.is_novel_pose  # no decoding of frames selection would refuse
        self.inbox = Inbox(self.config.sync.inbox_s, self.counters, jump_s=self.config.sync.tf_buffer_s)
        self.mapper.keyframes.waiting_bytes = lambda: self.inbox.nbytes + self.assembler.nbytes
        self._last_error = ""
        # publishing, reset and load take this lock: the latched topics always end at the node's current map
        self._map_lock = threading.RLock()
        self._markers = conversions.MarkerStream(self.config.topics.marker_history)
        self._mesh_resources: MeshResources | None = None
        self._resources_lock = threading.RLock()  # the mesh-resource directory of the current map
        self._period_timer = None
        self._create_interfaces()
        if self.mapper.latest is not None:
            self._publish(self.mapper.latest)
        # the names as subscribed (namespace and remapping applied), not as configured
        names = ", ".join(f"{key}={sub.topic_name}" for key, sub in self.inputs.items())
        self.get_logger().info(
            f"dprecon_node ready: stages={'+'.join(self.config.reconstruction.stage_names())} "
            f"(backend {self.config.reconstruction.backend}), inputs {names}; "
            f"{len(self.mapper.keyframes)} keyframes and {len(self.mapper.model.objects)} objects resumed"
        )
        transport, wrong = transport_profile(os.environ)
        (self.get_logger().error if wrong else self.get_logger().info)(f"transport: {transport}")

    # ------------------------------------------------------------------ set-up
    def _create_interfaces(self) -> None:
        t = self.config.topics
        # Callbacks only put the message in the inbox (no lock, no decoding), on their own node and executor
        # thread (ros/input_node.py); the ingest worker takes them out in arrival order.
        qos = image_qos(t.image_qos)
        # input -> (type, name, assembler method, QoS). Configured names are relative, so they resolve in the
        # node's namespace and under its remappings; /tf and /tf_static are global by convention.
        table = {
            "rgb": (Image, t.rgb, FrameAssembler.add_rgb, qos),
            "instance": (Image, t.instance, FrameAssembler.add_instance, qos),
        }
        if t.depth:
            table["depth"] = (Image, t.depth, FrameAssembler.add_depth, qos)
        table["camera_info"] = (CameraInfo, t.camera_info, FrameAssembler.add_camera_info, image_qos(t.image_qos, SMALL_STREAM_DEPTH))
        if t.labels:
            table["labels"] = (String, t.labels, lambda a, m: a.add_labels(m.data), LABELS)
        if t.pose_source == "pose":
            table["pose"] = (PoseStamped, t.pose, FrameAssembler.add_pose, RELIABLE_SMALL)
        elif t.pose_source == "odometry":
            table["pose"] = (Odometry, t.pose, FrameAssembler.add_odometry, RELIABLE_SMALL)
        else:
            table["tf"] = (TFMessage, "/tf", FrameAssembler.add_tf, RELIABLE_SMALL)
            table["tf_static"] = (TFMessage, "/tf_static", lambda a, m: a.add_tf(m, static=True), TF_STATIC)
        self._inputs = InputSubscriptions(
            self,
            {key: (kind, name, profile) for key, (kind, name, _, profile) in table.items()},
            self._receive,
            self._transport_events,
            lambda exc: self.counters.count("input_error", f"an input callback failed: {exc!r}"),
        )
        self.inputs = self._inputs.subscriptions
        handlers = {key: add for key, (_, _, add, _) in table.items()}
        self.ingest = IngestWorker(
            self.inbox,
            lambda: self.assembler,
            handlers,
            self.mapper.add_frame,
            self._input_lock,
            self.counters,
            idle_flush_s=lambda: self.config.sync.idle_flush_s,
        )
        self.ingest.start()

        self.pub_objects = self.create_publisher(MapObjectArray, "~/objects", LATCHED)
        self.pub_graph = self.create_publisher(SceneGraph, "~/scene_graph", LATCHED)
        self.pub_graph_json = self.create_publisher(String, "~/scene_graph/json", LATCHED)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", markers_qos(self.config.topics.marker_history))
        self.pub_status = self.create_publisher(MapperStatus, "~/status", LATCHED)
        self.pub_live_map = self.create_publisher(MarkerArray, "~/live_map", markers_qos(LIVE_MAP_HISTORY))
        self._live_shown: set[int] = set()
        self._live_published_at = -1.0

        # Work timers run on the steady clock: with use_sim_time, ROS time stops when a bag or simulator
        # stops publishing /clock, and ingestion must still finish.
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(STATUS_PERIOD_S, self._publish_status, callback_group=MutuallyExclusiveCallbackGroup(), clock=self._steady)
        self._schedule_periodic_runs()
        if self.config.topics.live_map_rate_hz > 0 and self.config.tsdf.live:
            self.mapper.live_fusion.mesh_after_sync = True  # the fusion thread meshes; the timer only publishes
            self.create_timer(
                1.0 / self.config.topics.live_map_rate_hz,
                self._publish_live_map,
                callback_group=MutuallyExclusiveCallbackGroup(),
                clock=self._steady,
            )
        services = ReentrantCallbackGroup()
        capacity = self.config.reconstruction.max_queued_goals
        self.actions = [
            ReconstructAction(self, self.mapper, self.counters, capacity, self._finish, services),
            EditAction(self, self.mapper, self.counters, capacity, self._finish, services),
        ]
        for kind, name, handler in (
            (ExportMap, "~/export", self._srv_export),
            (Trigger, "~/reset", self._srv_reset),
            (MapStore, "~/save_map", self._srv_save_map),
            (MapStore, "~/load_map", self._srv_load_map),
            (SetPrompt, "~/set_prompt", self._srv_set_prompt),
        ):
            guard = guarded(name, handler, self.counters, self.get_logger())
            self.create_service(kind, name, guard, qos_profile=REQUESTS, callback_group=services)

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
        if "topics.marker_colors" in names and self.mapper.latest is not None:  # recoloured at once, not at the next run
            with self._map_lock:
                self._publish(self.mapper.latest)

    # --------------------------------------------------------------- ingestion
    def _transport_events(self, stream: str, topic: str) -> SubscriptionEventCallbacks:
        """Losses the transport knows of are counted too: a publisher whose QoS cannot match, messages lost.
        They can fire while the subscriptions are still being made, so they use nothing made after them."""

        def incompatible(info) -> None:
            advice = " (a best-effort camera driver needs topics.image_qos:=sensor_data)" if stream in IMAGE_STREAMS else ""
            self.counters.count(
                f"incompatible_qos_{stream}",
                f"a publisher of {topic} offers QoS this subscription cannot match "
                f"(policy {info.last_policy_kind}); its messages never arrive{advice}",
            )

        def lost(info) -> None:
            self.counters.count(
                f"transport_lost_{stream}",
                f"the transport lost {info.total_count_change} {stream} message(s)",
                amount=info.total_count_change,
            )

        return SubscriptionEventCallbacks(incompatible_qos=incompatible, message_lost=lost)

    def _receive(self, stream: str, msg, source: tuple[bytes | None, int | None]) -> None:
        self.inbox.put(stream, msg, stamp_of(msg) if stream in IMAGE_STREAMS else 0.0, *source)

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
            if report.status == RECONSTRUCTED:  # one line per reconstruction: what ran, what came out, how long
                recon = report.reconstruction
                what = f"edited {sorted(job.edits)} ({'; '.join(job.edits.values())})" if job.edits else "reconstructed"
                prior = f"; prior {recon.prior_status}" if recon.prior_status else ""
                self.get_logger().info(
                    f"{what}: stages {'+'.join(recon.stages)} (backend {recon.backend}), {len(recon.objects)} objects "
                    f"({len(report.refitted_objects)} refitted), {len(recon.scene_graph.relations)} relations, {report.duration_s:.2f} s{prior}"
                )
            else:  # unchanged, too few keyframes, cancelled: not a reconstruction (the mapper counts them)
                self.get_logger().debug(f"reconstruction {report.status}: {report.message}")
            # a reset or a load after the run committed: its map is no longer the node's
            if report.status != RECONSTRUCTED or report.reconstruction is not self.mapper.latest:
                return
            self._publish(report.reconstruction)
            if self.config.reconstruction.export_dir:
                try:
                    self._export(report.reconstruction, self.config.reconstruction.export_dir)
                except OSError as exc:
                    self.counters.count("export_error", f"export to {self.config.reconstruction.export_dir} failed: {exc}")

    def _publish(self, recon: Reconstruction) -> None:
        self._write_mesh_resources(recon)  # outside the map lock: encoding a 2048^2 texture takes a while
        with self._map_lock:
            frame_id = self.config.topics.map_frame
            # meshes go in as arrays, not one Python object per vertex (ros/cdr_arrays.py)
            arrays = ArraySlots()
            self.pub_objects.publish(arrays.serialize(conversions.objects_message(recon, frame_id, arrays)))
            self.pub_graph.publish(conversions.scene_graph_message(recon, frame_id))
            self.pub_graph_json.publish(conversions.scene_graph_json(recon, frame_id))
            arrays = ArraySlots()
            markers = self._markers.next(recon, frame_id, arrays, self.config.topics.marker_colors)
            self.pub_markers.publish(arrays.serialize(markers))
        self._publish_status()

    def _publish_live_map(self) -> None:
        """The newest live meshes, when the fusion thread made new ones since the last publication."""
        latest = self.mapper.live_fusion.latest
        if latest is None or latest.made_at == self._live_published_at:
            return
        arrays = ArraySlots()
        header = Header(frame_id=self.config.topics.map_frame, stamp=conversions.to_time(latest.stamp))
        markers, self._live_shown = conversions.live_map_markers(latest.meshes, self._live_shown, header, arrays)
        self.pub_live_map.publish(arrays.serialize(MarkerArray(markers=markers)))
        self._live_published_at = latest.made_at
        self.counters.count("live_map_published", "", logging.DEBUG)

    def _publish_empty_map(self) -> None:
        with self._map_lock:
            objects, graph, markers = conversions.empty_map_messages(self.config.topics.map_frame, self.get_clock().now().to_msg())
            self.pub_objects.publish(objects)
            self.pub_graph.publish(graph)
            self.pub_graph_json.publish(String(data=conversions.empty_graph_json(self.config.topics.map_frame)))
            self.pub_markers.publish(markers)
            self._markers.cleared()
            self._forget_mesh_resources()
            self.pub_live_map.publish(markers)  # DELETEALL: the live map starts again from the new buffer
            self._live_shown = set()
        self._publish_status()

    def _write_mesh_resources(self, recon: Reconstruction) -> None:
        """Textured GLBs where viewers load them (MESH_RESOURCE markers, MapObject.mesh_uri); a failure is counted
        and the map goes out with vertex colours."""
        directory = mesh_resource_dir(self.config)
        with self._resources_lock:
            try:
                if self._mesh_resources is None or self._mesh_resources.directory != Path(directory):
                    self._forget_mesh_resources()
                    self._mesh_resources = MeshResources(directory) if directory else None
                if self._mesh_resources is not None:
                    self._mesh_resources.update(recon)
                    return
            except Exception as exc:  # noqa: BLE001 - a disk or encoding failure must not stop the map being published
                self.counters.count("mesh_resource_error", f"textured meshes not written to {directory}: {exc}")
        for obj in [*recon.objects, recon.background]:  # no file: markers and messages carry vertex colours
            if obj is not None:
                obj.mesh_uri = ""

    def _forget_mesh_resources(self) -> None:
        """The map the files belonged to is gone (reset, load, another directory): delete them."""
        with self._resources_lock:
            resources, self._mesh_resources = self._mesh_resources, None
        if resources is not None:
            try:
                resources.clear()
            except OSError as exc:
                self.counters.count("mesh_resource_error", f"old textured meshes not deleted from {resources.directory}: {exc}")

    def _export(self, recon: Reconstruction, directory: str) -> list[Path]:
        return export_reconstruction(recon, directory, self.config.topics.map_frame)

    def _publish_status(self) -> None:
        counters, waiting = self._input_accounting()
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
                counters,
                self._last_error,
                waiting,
            )
        )

    def _input_accounting(self) -> tuple[dict[str, int], int]:
        """The counters and the frames still waiting, read together: a frame moves between them only under the
        input lock, so `received_rgb = considered + redundant + lost + waiting` holds in every status."""
        with self._input_lock:
            return self.counters.snapshot(), self.ingest.waiting_frames_locked()

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
            except (OSError, RecursionError) as exc:  # RecursionError: a path too deep for mkdir's recursion
                response.success = False
                response.message = f"export to {shorten(directory)} failed: {type(exc).__name__}: {shorten(str(exc))}"
                self.counters.count("service_error", response.message)
        return response

    def _srv_reset(self, request, response):
        """Empty everywhere: frames waiting, keyframes, objects, the latched topics, the persisted map; a run
        in progress is cancelled and never publishes (its result no longer is the mapper's latest)."""
        job = self.mapper.job
        # Lock order is map, then input (publishing reads the status under the input lock), so the input state
        # is cleared between two messages of the ingest worker and the map after it; a frame taken in between
        # is judged against the old keyframes and dropped by the mapper's epoch check (frame_of_replaced_map).
        with self._input_lock:
            self.inbox.clear("reset")  # received before the reset: of the old map
            self.assembler.reset()  # and so are images waiting for a match or for their labels
        with self._map_lock:  # a run ending now either published before this or sees the reset
            self.mapper.reset()
            self._publish_empty_map()
        if job is not None and not job.wait(timeout=self.config.reconstruction.cancel_timeout_s):
            self.counters.count("slow_cancel", "the cancelled reconstruction is still ending; it will not publish")
        response.success = True
        response.message = "keyframes, objects and the persisted map cleared; a running reconstruction was cancelled"
        return response

    def _srv_set_prompt(self, request, response):
        """Through the `prior.prompts` parameter, so the parameter always says which prompts are in force."""
        prompt = " ".join(request.prompt.split())  # one line: an entry is 'ID=prompt'
        if request.object_id == BACKGROUND_ID:
            response.success, response.message = False, "the background's prompt is the prior.background_prompt parameter"
            return response
        kept = [e for e in self.config.prior.prompts if e.partition("=")[0].strip() != str(request.object_id)]
        entries = kept + ([f"{request.object_id}={prompt}"] if prompt else [])
        result = self.set_parameters([Parameter("prior.prompts", Parameter.Type.STRING_ARRAY, entries)])[0]
        response.success = result.successful
        if not result.successful:
            response.message = f"prior.prompts not changed: {result.reason}"
        elif prompt:
            response.message = f"object {request.object_id} will be refitted with {prompt!r} at the next run"
        else:
            response.message = f"object {request.object_id}'s override is cleared (its prompt is its last edit's, or the label template)"
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
        try:  # read before taking the map lock: a slow or hung file system must not block ~/reset or publishing
            saved = self.mapper.read_map(directory)
        except MapFormatError as exc:  # nothing changed: the node keeps its map
            response.success, response.message = False, f"{exc}; the current map is kept"
            self.counters.count("map_unreadable", f"~/load_map refused: {exc}")
            return response
        with self._map_lock:
            loaded = self.mapper.install_map(saved, directory)
            response.keyframes, response.objects = loaded.keyframes, loaded.objects
            if self.mapper.latest is not None:
                self._markers.replace_all()
                self._forget_mesh_resources()  # the loaded map's versions would reuse the old files' names
                self._publish(self.mapper.latest)
            else:
                self._publish_empty_map()
        response.success, response.message = True, f"loaded {loaded.summary()} from {directory}"
        return response

    # ----------------------------------------------------------------- shutdown
    @property
    def executor_threads(self) -> int:
        return BASE_EXECUTOR_THREADS + len(self.actions) * self.config.reconstruction.max_queued_goals

    @property
    def stop_budget_s(self) -> float:
        """The longest the stop may wait of its own accord: in stop_work the input thread, the ingest worker, the
        run and the goals' answers, again the two threads in destroy_node, and the executor's own timeout."""
        return 6 * self.config.reconstruction.cancel_timeout_s + ANSWER_DELIVERY_S + EXECUTOR_STOP_TIMEOUT_S

    def destroy_node(self) -> None:
        """Also for a node whose construction failed (a bad start-up parameter): rclpy destroys it at shutdown."""
        timeout = self.config.reconstruction.cancel_timeout_s
        inputs, ingest = getattr(self, "_inputs", None), getattr(self, "ingest", None)
        if inputs is not None:
            inputs.stop(timeout)  # both stops are no-ops after stop_work
            inputs.destroy()
        if ingest is not None:
            ingest.stop(timeout)
        super().destroy_node()

    def stop_work(self) -> bool:
        """Ctrl-C, before the context goes: refuse new goals, cancel the run and join its thread (no job may be
        left inside torch when the interpreter exits), then answer every held goal. False if the run did not
        stop in time (the process then leaves without it)."""
        timeout = self.config.reconstruction.cancel_timeout_s
        threads_stopped = True
        for name, stop in (("input thread", self._inputs.stop), ("ingest worker", self.ingest.stop)):
            if not stop(timeout):
                self.get_logger().warning(f"the {name} did not stop within {timeout} s")
                threads_stopped = False
        held = sum(action.stop_accepting() for action in self.actions)
        joined = self.mapper.stop(timeout)
        if not joined:
            self.get_logger().warning(f"the reconstruction did not stop within {timeout} s; exiting without waiting for it")
        deadline = time.monotonic() + timeout  # one wait for all the actions' goals together
        for action in self.actions:
            if not action.wait_answered(max(0.0, deadline - time.monotonic())):
                self.get_logger().warning(f"{action.action_name} goals still unanswered after {timeout} s")
        if held:
            time.sleep(ANSWER_DELIVERY_S)
        return joined and threads_stopped  # a thread still running: the process must leave at once


def main(args: list[str] | None = None) -> None:
    run_node(DpreconNode, args, lambda node: MultiThreadedExecutor(num_threads=node.executor_threads))


if __name__ == "__main__":
    main()

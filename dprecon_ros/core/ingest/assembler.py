"""Turn a stream of ROS-like messages into synchronised, validated Frames.

Messages are duck-typed (fields of sensor_msgs/Image, CameraInfo, PoseStamped, Odometry, TFMessage), so the
same code serves the rclpy node and the offline bag reader. Colour, depth and instance images are matched by
stamp within a tolerance (approximate time); the pose is interpolated from a transform buffer at the colour
stamp. Images wait undecoded: a set whose pose says it is redundant (`wanted`) is never decoded. Anything that
cannot be used is counted and logged, never raised.

Accounting: every colour image that arrives ends in exactly one of `redundant` (skipped before decoding), a
Frame handed on, or a counter named `lost_<reason>`; until then it is one of `waiting_frames`. Problems with
the other streams are counted under their own names (`bad_depth`, `late_instance`, ...) and lose a set only
through the colour image that then finds no match (`lost_unmatched_depth`, ...).
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.geometry import make_transform, pose_distance, quat_to_matrix
from dprecon_ros.core.ingest.image_codec import (
    KIND_NAMES,
    ImageDecodeError,
    check_image,
    decode_depth,
    decode_instance,
    decode_rgb,
    raw_nbytes,
)
from dprecon_ros.core.ingest.tf_buffer import TransformBuffer, TransformLookupError
from dprecon_ros.core.ingest.undistort import SUPPORTED_MODELS, Undistorter, is_distorted
from dprecon_ros.core.types import CameraIntrinsics, Frame

if TYPE_CHECKING:
    from dprecon_ros.config import DpreconConfig

log = logging.getLogger("dprecon_ros")
CAMERA_POSE_FRAME = "__camera_pose__"
LABEL_HISTORY = 16
UNLABELLED = "object"
LOST_PREFIX = "lost_"
_DECODERS = {"rgb": decode_rgb, "depth": decode_depth, "instance": decode_instance}


def stamp_of(msg) -> float:
    s = msg.header.stamp
    return float(s.sec) + float(s.nanosec) * 1e-9


def pose_to_matrix(pose) -> np.ndarray:
    p, q = pose.position, pose.orientation
    return make_transform(quat_to_matrix(q.x, q.y, q.z, q.w), [p.x, p.y, p.z])


def frames_nbytes(frames) -> int:
    """Pixel bytes of frames (the keyframe memory bound counts frames on their way to the buffer too)."""
    return sum(f.nbytes for f in tuple(frames))  # a one-step copy: other threads may append meanwhile


def too_large(width: int, height: int, max_pixels: int) -> bool:
    """The one size rule for images and the CameraInfo that describes them."""
    return int(width) * int(height) > max_pixels


def camera_info_problem(K: np.ndarray, coeffs: np.ndarray, width: int, height: int, max_pixels: int) -> str:
    """Why a CameraInfo cannot describe a usable pinhole camera ('' when it can)."""
    if width <= 0 or height <= 0:
        return f"image size {width}x{height}"
    if too_large(width, height, max_pixels):
        return f"image size {width}x{height} exceeds frames.max_image_pixels={max_pixels}"
    if not (np.all(np.isfinite(K)) and np.all(np.isfinite(coeffs))):
        return "K or D holds NaN/inf"
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        return f"focal lengths fx={K[0, 0]}, fy={K[1, 1]} are not positive"
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
        return f"K is not a pinhole matrix (last row {K[2].tolist()})"
    return ""


def parse_labels(text: str, max_ids: int, max_length: int) -> dict[int, str]:
    """A labels message, JSON {"<id>": "<label>"}: every id a positive integer, every label a non-empty string.
    One bad entry refuses the message: a partly trusted message would mint objects with wrong labels."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object of id -> label, got {type(raw).__name__}")
    if len(raw) > max_ids:
        raise ValueError(f"{len(raw)} ids exceed frames.max_instances={max_ids}")
    labels = {}
    for key, value in raw.items():
        if not key.strip().isdigit() or int(key) <= 0:
            raise ValueError(f"id {key!r} is not a positive integer")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"label of id {key} is {json.dumps(value)}, not a non-empty string")
        if len(value) > max_length:
            raise ValueError(f"label of id {key} is {len(value)} characters (frames.max_label_length={max_length})")
        labels[int(key)] = value
    return labels


def lost_total(counts: dict[str, int]) -> int:
    """Colour frames lost, over every reason."""
    return sum(v for k, v in counts.items() if k.startswith(LOST_PREFIX))


@dataclass
class _Stamped:
    stamp: float
    msg: object  # the image message, decoded only once its set is wanted
    frame_id: str = ""


class FrameAssembler:
    def __init__(self, config: DpreconConfig, counters: EventCounters | None = None) -> None:
        self.config = config
        self.counters = counters or EventCounters()
        self.use_depth = bool(config.topics.depth)
        self._tf = TransformBuffer(config.sync.tf_buffer_s, config.sync.tolerance_s, config.sync.max_pose_gap_s)
        self._queues: dict[str, deque[_Stamped]] = {"rgb": deque(), "depth": deque(), "instance": deque()}
        self._last_stamp: dict[str, float] = {}
        self._labels: deque[dict[int, str]] = deque(maxlen=LABEL_HISTORY)
        self.intrinsics: CameraIntrinsics | None = None
        self._undistorter: Undistorter | None = None
        self._camera_info_key: tuple | None = None
        self._last_pose: tuple[float, np.ndarray] | None = None
        self._awaiting_labels: deque[Frame] = deque()
        self._consumed_stamp = -np.inf
        # pose -> is a frame taken there worth decoding? (keyframe novelty); None = decode every set
        self.wanted: Callable[[np.ndarray], bool] | None = None

    @property
    def nbytes(self) -> int:
        """Bytes held here: image messages waiting for a match and frames waiting for their labels."""
        # tuple() copies each deque in one step: another thread may append while this one counts
        queued = sum(raw_nbytes(item.msg) for queue in tuple(self._queues.values()) for item in tuple(queue))
        return queued + frames_nbytes(self._awaiting_labels)

    @property
    def waiting_frames(self) -> int:
        """Colour frames received and not yet resolved (handed on, redundant or lost)."""
        return len(self._queues["rgb"]) + len(self._awaiting_labels)

    def _lose(self, reason: str, message: str, level: int = logging.WARNING) -> None:
        """Count a colour frame (and so its whole set) as lost, with its reason."""
        self.counters.count(LOST_PREFIX + reason, message, level)

    def _refuse(self, stream: str, reason: str, message: str, level: int = logging.WARNING) -> None:
        """Count a refused message: a lost set for the colour stream, a message for the others."""
        if stream == "rgb":
            self._lose(f"{reason}_rgb", message, level)
        else:
            self.counters.count(f"{reason}_{stream}", message, level)

    @property
    def tf(self) -> TransformBuffer:
        """The pose history, following live changes of the sync parameters."""
        s = self.config.sync
        self._tf.history_s, self._tf.tolerance_s, self._tf.max_gap_s = s.tf_buffer_s, s.tolerance_s, s.max_pose_gap_s
        return self._tf

    # ---------------------------------------------------------------- inputs
    def _in_order(self, stream: str, stamp: float) -> bool:
        """Accept a message unless it is too old to be used.

        Transports and multi-threaded executors can deliver a few messages out of order, so queues are kept
        sorted and only messages older than what was already consumed are dropped. A jump back in time by
        more than the pose history (a bag restarted, a simulator reset) clears the input state instead.
        """
        newest = max(self._last_stamp.values(), default=None)
        if newest is not None and stamp < newest - self.config.sync.tf_buffer_s:
            self.counters.count("time_jump_back", f"{stream} stamp {stamp:.3f} is far behind {newest:.3f}; input state reset")
            self.reset("time_jump_back")
        elif stamp <= self._consumed_stamp - (0.0 if stream == "rgb" else self.config.sync.tolerance_s):
            # A late pose is harmless (poses are interpolated); a late image means a lost frame.
            level = logging.DEBUG if stream == "pose" else logging.WARNING
            message = f"{stream} stamp {stamp:.3f} arrived after frame {self._consumed_stamp:.3f} was built; dropped"
            self._refuse(stream, "late", message, level)
            return False
        self._last_stamp[stream] = max(stamp, self._last_stamp.get(stream, -np.inf))
        return True

    def reset(self, reason: str = "reset") -> None:
        """Forget all input state; colour frames still waiting are counted lost for `reason`."""
        for _ in range(self.waiting_frames):
            self._lose(reason, "", logging.DEBUG)
        for queue in self._queues.values():
            queue.clear()
        self._last_stamp.clear()
        self._consumed_stamp = -np.inf
        self._last_pose = None
        self._awaiting_labels.clear()
        self._tf = TransformBuffer(self.config.sync.tf_buffer_s, self.config.sync.tolerance_s, self.config.sync.max_pose_gap_s)

    def _enqueue(self, stream: str, item: _Stamped) -> None:
        queue = self._queues[stream]
        if queue and item.stamp < queue[-1].stamp:
            index = bisect.bisect_left([q.stamp for q in queue], item.stamp)
            queue.insert(index, item)
        else:
            queue.append(item)
        # a colour image waits at most sync.queue_s; its partners stay longer, so the last one it may still
        # match is not dropped the moment before the pose or CameraInfo it waited for arrives
        margin = 0.0 if stream == "rgb" else self.config.sync.reorder_window_s
        while self._over_bound(len(queue) - 1, queue[-1].stamp - queue[0].stamp - margin):
            queue.popleft()
            self._refuse(stream, "queue_overflow", f"{stream} queue full; oldest dropped")

    def _over_bound(self, count: int, span_s: float) -> bool:
        """Past the bound of what waits for a match: `sync.queue_s` of camera time or `sync.queue_size` items."""
        return count >= self.config.sync.queue_size or span_s > self.config.sync.queue_s

    def add_camera_info(self, msg) -> None:
        key = (int(msg.width), int(msg.height), tuple(np.asarray(msg.k, float)), tuple(np.asarray(msg.d, float)), msg.distortion_model)
        if key == self._camera_info_key:
            return
        K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        coeffs = np.asarray(msg.d, dtype=np.float64)
        problem = camera_info_problem(K, coeffs, int(msg.width), int(msg.height), self.config.frames.max_image_pixels)
        if problem:
            self.counters.count("bad_camera_info", f"CameraInfo refused: {problem}")
            return
        intrinsics = CameraIntrinsics.from_K(K, msg.width, msg.height)
        undistorter = None
        if is_distorted(coeffs):
            if msg.distortion_model not in SUPPORTED_MODELS:
                self.counters.count("unsupported_distortion", f"distortion model {msg.distortion_model!r} is not supported; images refused")
                self._camera_info_key, self.intrinsics = key, None
                return
            undistorter = Undistorter(intrinsics, coeffs)
            log.info("camera has %s distortion; images are undistorted before use", msg.distortion_model)
        self._camera_info_key, self.intrinsics, self._undistorter = key, intrinsics, undistorter

    def add_rgb(self, msg) -> None:
        self._add_image("rgb", msg)

    def add_depth(self, msg) -> None:
        self._add_image("depth", msg)

    def add_instance(self, msg) -> None:
        self._add_image("instance", msg)

    def _add_image(self, stream: str, msg) -> None:
        """Queue the message undecoded, after the checks that need no pixels."""
        stamp = stamp_of(msg)
        if not self._in_order(stream, stamp):
            return
        if too_large(msg.width, msg.height, self.config.frames.max_image_pixels):
            limit = self.config.frames.max_image_pixels
            message = f"{stream} image {msg.width}x{msg.height} exceeds frames.max_image_pixels={limit}; refused"
            self._refuse(stream, "oversized", message)
            return
        try:
            check_image(msg, stream)
        except ImageDecodeError as exc:
            self._refuse(stream, "bad", f"{KIND_NAMES[stream]} image refused: {exc}")
            return
        self._enqueue(stream, _Stamped(stamp, msg, msg.header.frame_id))

    def add_labels(self, text: str) -> None:
        try:
            labels = parse_labels(text, self.config.frames.max_instances, self.config.frames.max_label_length)
        except ValueError as exc:
            self.counters.count("bad_labels", f"labels message refused: {exc}")
            return
        self._labels.append(labels)

    def add_pose(self, msg) -> None:
        """geometry_msgs/PoseStamped of the camera optical frame in the map frame."""
        self._add_camera_pose(stamp_of(msg), pose_to_matrix(msg.pose))

    def add_odometry(self, msg) -> None:
        self._add_camera_pose(stamp_of(msg), pose_to_matrix(msg.pose.pose))

    def _add_camera_pose(self, stamp: float, T: np.ndarray) -> None:
        if not np.all(np.isfinite(T)):
            self.counters.count("bad_pose", "pose contains NaN/inf; ignored")
            return
        if not self._in_order("pose", stamp):
            return
        self.tf.add(self.config.topics.map_frame, CAMERA_POSE_FRAME, stamp, T)

    def add_tf(self, msg, static: bool = False) -> None:
        for t in msg.transforms:
            tr, q = t.transform.translation, t.transform.rotation
            try:
                T = make_transform(quat_to_matrix(q.x, q.y, q.z, q.w), [tr.x, tr.y, tr.z])
            except ValueError:
                self.counters.count("bad_pose", "transform with a zero quaternion ignored")
                continue
            self.tf.add(t.header.frame_id, t.child_frame_id, stamp_of(t), T, static=static)

    # --------------------------------------------------------------- matching
    def _nearest(self, stream: str, stamp: float) -> _Stamped | None:
        best = None
        for item in self._queues[stream]:
            if abs(item.stamp - stamp) <= self.config.sync.tolerance_s and (
                best is None or abs(item.stamp - stamp) < abs(best.stamp - stamp)
            ):
                best = item
        return best

    def _hopeless(self, stream: str, stamp: float) -> bool:
        """True when no message of `stream` can still arrive to match `stamp`."""
        last = self._last_stamp.get(stream)
        return last is not None and last > stamp + self.config.sync.tolerance_s + self.config.sync.reorder_window_s

    def _camera_pose(self, frame_id: str, stamp: float) -> np.ndarray:
        source = frame_id if self.config.topics.pose_source == "tf" else CAMERA_POSE_FRAME
        return self.tf.lookup(self.config.topics.map_frame, source, stamp)

    def pop_frames(self, flush: bool = False) -> list[Frame]:
        """Frames that are complete now; unmatched colour images that can never match are dropped.

        Labels travel on their own topic and may arrive after the images they describe, so a frame whose ids
        no labels message covers yet waits for up to `sync.labels_wait_s` of newer images, then is dropped.
        Before the first labels message, frames wait within the queue bound. Without a labels topic, or at
        the end of a bag that had none, every instance is 'object'. `flush` (end of a bag) releases waiting
        frames with the labels known so far and drops colour images that are still unmatched.
        """
        frames = self._release_labelled(flush)
        rgb_queue = self._queues["rgb"]
        while rgb_queue:
            rgb = rgb_queue[0]
            need = ["instance"] + (["depth"] if self.use_depth else [])
            matched = {s: self._nearest(s, rgb.stamp) for s in need}
            try:
                T = self._camera_pose(rgb.frame_id, rgb.stamp)
            except TransformLookupError as exc:
                T, pose_error = None, str(exc)
            missing = [s for s, m in matched.items() if m is None] + (["pose"] if T is None else [])
            if self._camera_info_key is None:
                missing.append("camera_info")  # CameraInfo may be delivered just after the first images
            if missing:
                window = self.config.sync.tolerance_s + self.config.sync.reorder_window_s
                pose_hopeless = T is None and (self.tf.latest_stamp() or -np.inf) > rgb.stamp + window
                # Reliable transports can deliver the first CameraInfo seconds late (a reader that matched late
                # is served at the writer's next heartbeat), so frames wait for it as long as the queue allows.
                info_hopeless = self._over_bound(len(rgb_queue), rgb_queue[-1].stamp - rgb.stamp)
                hopeless = [
                    s
                    for s in missing
                    if flush
                    or (s == "pose" and pose_hopeless)
                    or (s == "camera_info" and info_hopeless)
                    or (s not in ("pose", "camera_info") and self._hopeless(s, rgb.stamp))
                ]
                if not hopeless:
                    break
                rgb_queue.popleft()
                self._consumed_stamp = rgb.stamp
                if hopeless[0] == "camera_info":
                    self._lose("no_camera_info", f"no CameraInfo received for the colour frame at {rgb.stamp:.3f}; dropped")
                    continue
                detail = f" ({pose_error})" if "pose" in hopeless else ""
                self._lose(f"unmatched_{hopeless[0]}", f"colour frame at {rgb.stamp:.3f} has no matching {hopeless[0]}{detail}; dropped")
                continue
            rgb_queue.popleft()
            self._consumed_stamp = rgb.stamp
            for s, m in matched.items():
                while self._queues[s] and self._queues[s][0].stamp <= m.stamp:
                    self._queues[s].popleft()
            self.counters.count("synchronised", "", logging.DEBUG)
            try:  # whatever goes wrong with one set (a decoder out of memory) loses that set, counted
                if self._pose_jumped(rgb.stamp, T):
                    continue
                if self.wanted is not None and not self.wanted(T):
                    self.counters.count("redundant", "", logging.DEBUG)  # a keyframe was taken close by: no decoding
                    continue
                frame = self._build(rgb, matched.get("depth"), matched["instance"], T)
            except Exception as exc:
                self._lose("set_error", f"the frame at {rgb.stamp:.3f} failed: {exc!r}")
                continue
            if frame is not None:
                self._awaiting_labels.append(frame)
        return frames + self._release_labelled(flush)

    def _covering_labels(self, ids: list[int]) -> dict[int, str] | None:
        if not ids:
            return {}
        for labels in reversed(self._labels):
            if all(i in labels for i in ids):
                return {i: labels[i] for i in ids}
        return None

    def _release_labelled(self, flush: bool) -> list[Frame]:
        """Frames (in order) whose labels are known, or whose wait has expired."""
        out = []
        newest = max(self._last_stamp.values(), default=-np.inf)
        while self._awaiting_labels:
            frame = self._awaiting_labels[0]
            ids = frame.instance_ids()
            labels = self._covering_labels(ids)
            if labels is None:
                if not self.config.topics.labels:
                    labels = dict.fromkeys(ids, UNLABELLED)  # no labels topic: instances are unlabelled
                elif self._labels:
                    if not (flush or newest > frame.stamp + self.config.sync.labels_wait_s):
                        break
                    # Labels do arrive, but this frame's were lost: guessing would mint wrong objects.
                    self._awaiting_labels.popleft()
                    self._lose("missing_labels", f"no labels message covers the ids of the frame at {frame.stamp:.3f}; frame dropped")
                    continue
                elif flush:
                    self.counters.count(
                        "no_labels", f"no labels ever received; the instances of the frame at {frame.stamp:.3f} are labelled '{UNLABELLED}'"
                    )
                    labels = dict.fromkeys(ids, UNLABELLED)
                elif self._over_bound(len(self._awaiting_labels) - 1, self._awaiting_labels[-1].stamp - frame.stamp):
                    # The first labels can be seconds late (a subscription matched late): wait, within the queue bound.
                    self._awaiting_labels.popleft()
                    self._lose("no_labels", f"no labels received yet; the frame at {frame.stamp:.3f} was dropped")
                    continue
                else:
                    break
            self._awaiting_labels.popleft()
            frame.labels = labels
            out.append(frame)
        return out

    def _pose_jumped(self, stamp: float, T: np.ndarray) -> bool:
        """A pose faster than the configured speeds from the previous set's is a localisation glitch."""
        last, self._last_pose = self._last_pose, (stamp, T)
        if last is None:
            return False
        dt = max(stamp - last[0], 1e-3)
        d_m, d_rad = pose_distance(last[1], T)
        if d_m / dt > self.config.sync.max_linear_speed_mps or np.degrees(d_rad) / dt > self.config.sync.max_angular_speed_dps:
            self._lose("pose_jump", f"pose jumped {d_m:.2f} m / {np.degrees(d_rad):.0f} deg in {dt:.2f} s; frame dropped")
            return True
        return False

    def _decode(self, images: dict[str, _Stamped]) -> dict[str, np.ndarray] | None:
        try:
            return {stream: _DECODERS[stream](item.msg) for stream, item in images.items()}
        except ImageDecodeError as exc:  # checked on arrival, so only a decoder's own refusal lands here
            self._lose("bad_image", f"image of the frame refused: {exc}")
            return None

    def _build(self, rgb: _Stamped, depth: _Stamped | None, instance: _Stamped, T: np.ndarray) -> Frame | None:
        K = self.intrinsics
        if K is None:
            self._lose("no_camera_info", "no usable CameraInfo yet; frame dropped")
            return None
        decoded = self._decode({"rgb": rgb, "instance": instance} | ({"depth": depth} if depth is not None else {}))
        if decoded is None:
            return None
        shapes = {s: a.shape[:2] for s, a in decoded.items()} | {"camera_info": (K.height, K.width)}
        if len(set(shapes.values())) != 1:
            self._lose("size_mismatch", f"image sizes disagree {shapes}; frame dropped")
            return None
        image, mask, depth_m = decoded["rgb"], decoded["instance"], decoded.get("depth")
        if self._undistorter is not None:
            image = self._undistorter.apply(image)
            mask = self._undistorter.apply(mask)
            depth_m = self._undistorter.apply(depth_m, np.nan) if depth_m is not None else None
        if depth_m is not None:
            fc = self.config.frames
            depth_m = depth_m.copy()
            depth_m[(depth_m < fc.min_depth_m) | (depth_m > fc.max_depth_m)] = np.nan
            valid = float(np.isfinite(depth_m).mean())
            if valid < fc.min_valid_depth_ratio:
                self._lose("invalid_depth", f"only {valid:.1%} of depth pixels are valid; frame dropped")
                return None
        mask = self._drop_small_instances(mask)
        ids = [int(i) for i in np.unique(mask) if i != 0]
        if len(ids) > self.config.frames.max_instances:
            limit = self.config.frames.max_instances
            self._lose("too_many_instances", f"mask has {len(ids)} instance ids (frames.max_instances={limit}); frame dropped")
            return None
        if not ids:
            self.counters.count("empty_mask", "instance mask has no objects; frame kept for the background", logging.INFO)
        return Frame(rgb.stamp, image, depth_m, mask, {}, K, T)

    def _drop_small_instances(self, mask: np.ndarray) -> np.ndarray:
        ids, counts = np.unique(mask, return_counts=True)
        small = ids[(counts < self.config.frames.min_mask_pixels) & (ids != 0)]
        if small.size:
            mask = np.where(np.isin(mask, small), 0, mask)
        return mask

"""Camera-rate publisher for bench/bench_ingest.py: streams pre-rendered RGB-D sets into dprecon_node's inputs.

Each set is colour (rgb8), depth, instance mask, CameraInfo and PoseStamped (map frame) under one fresh
wall-clock stamp, plus the labels JSON (transient-local) whenever the visible id set changes; all reliable, as
dprecon_sim publishes. The camera sweeps an arc of views and comes back (ping-pong) at the same speed at every
rate: at 60 Hz each set is the next view, at 30 Hz every second one. Sets follow absolute deadlines; a set more
than one period late is dropped (counted as a missed deadline), as a camera that cannot keep up drops frames.

    .venv/bin/python bench/_ingest_publisher.py --render-only                               # fill the cache
    .venv/bin/python bench/_ingest_publisher.py --rate-hz 60 --seconds 10 --wait-s 0 --out /tmp/pub.json

Views are rendered once with pybullet (slow: ~0.1 s a view at 640x480 on 2 cores) and cached in bench/scenes/.
Messages are serialised once per view; only the stamps are patched in the CDR bytes before each set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dprecon_ros.core.geometry import pose_distance  # noqa: E402
from dprecon_ros.core.ingest.config import SyncConfig, TopicsConfig  # noqa: E402
from dprecon_ros.core.types import CameraIntrinsics, Frame  # noqa: E402
from dprecon_ros.io.frame_messages import (  # noqa: E402
    CAMERA_INFO,
    IMAGE,
    POSE_STAMPED,
    STRING,
    SensorFrames,
    T,
    camera_info_message,
    image_message,
    pose_message,
    serialize,
)
from dprecon_ros.sim.simulator import SimConfig  # noqa: E402

if TYPE_CHECKING:
    from dprecon_ros.ros.raw_publishing import RawPublishers

SCENES = ROOT / "bench" / "scenes"
MAX_RATE_HZ = 60.0
# builtin_interfaces/Time (int32 sec, uint32 nanosec) of a header-first message, after the 4-byte CDR
# encapsulation header (little-endian)
STAMP = struct.Struct("<iI")
STAMP_OFFSET = 4


def sim_config(args: argparse.Namespace) -> SimConfig:
    """The simulator's room on a smooth arc: no per-view height jitter, which would be a jump at camera rate."""
    return SimConfig(width=args.width, height=args.height, num_views=args.views, arc_deg=args.arc_deg, height_jitter_m=0.0)


def scene_path(cfg: SimConfig) -> Path:
    key = hashlib.sha1(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:10]
    return SCENES / f"views_{cfg.width}x{cfg.height}_{cfg.num_views}_{key}.npz"


def write_views(frames: list[Frame], K: CameraIntrinsics, path: Path) -> None:
    """Frames into one npz, written under a temporary name so that a cut run leaves none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.npz")
    np.savez_compressed(
        tmp,
        rgb=np.stack([f.rgb for f in frames]),
        depth_m=np.stack([f.depth_m for f in frames]),
        instance=np.stack([f.instance for f in frames]).astype(np.uint16),
        T_world_camera=np.stack([f.T_world_camera for f in frames]),
        stamps=np.array([f.stamp for f in frames]),
        labels=np.array([json.dumps({str(k): v for k, v in sorted(f.labels.items())}) for f in frames]),
        intrinsics=np.array([K.fx, K.fy, K.cx, K.cy]),
    )
    tmp.replace(path)


def cached_views(path: Path, render: Callable[[], tuple[list[Frame], CameraIntrinsics]]) -> dict[str, np.ndarray]:
    """The arrays of `path`, rendered and written first when it is not there yet."""
    if not path.exists():
        t0 = time.monotonic()
        frames, K = render()
        write_views(frames, K, path)
        print(f"rendered {len(frames)} views in {time.monotonic() - t0:.0f} s -> {path}", flush=True)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def render_arc(cfg: SimConfig) -> tuple[list[Frame], CameraIntrinsics]:
    """Every view of the arc, noise-free poses, stamps left to the publisher."""
    from dprecon_ros.sim.simulator import RoomSimulator

    with RoomSimulator(cfg) as sim:
        return [sim.frame(T_wc, 0.0)[0] for T_wc in sim.trajectory()], sim.intrinsics


def load_views(cfg: SimConfig) -> dict[str, np.ndarray]:
    return cached_views(scene_path(cfg), lambda: render_arc(cfg))


@dataclass
class ViewMessages:
    """One view's CDR bytes; the stamped ones are patched in place before each set."""

    stamped: dict[str, bytearray]
    labels: bytes
    labels_json: str


def depth_image(depth_m: np.ndarray, encoding: str) -> np.ndarray:
    """32FC1 in metres (0 = no reading), or 16UC1 in millimetres."""
    depth = np.nan_to_num(depth_m, nan=0.0)
    return depth if encoding == "32FC1" else np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)


def build_messages(views: dict[str, np.ndarray], cfg: SimConfig, depth_encoding: str) -> list[ViewMessages]:
    fx, fy, cx, cy = views["intrinsics"]
    K = CameraIntrinsics(float(fx), float(fy), float(cx), float(cy), cfg.width, cfg.height)
    frames = SensorFrames()
    out = []
    for i in range(len(views["rgb"])):
        f = Frame(0.0, views["rgb"][i], views["depth_m"][i], views["instance"][i], {}, K, views["T_world_camera"][i])
        msgs = {
            "camera_info": (camera_info_message(f, frames.camera), CAMERA_INFO),
            "pose": (pose_message(f, frames), POSE_STAMPED),
            "instance": (image_message(f.instance, "16UC1", 0.0, frames.camera), IMAGE),
            "depth": (image_message(depth_image(f.depth_m, depth_encoding), depth_encoding, 0.0, frames.camera), IMAGE),
            "rgb": (image_message(f.rgb, "rgb8", 0.0, frames.camera), IMAGE),
        }
        text = str(views["labels"][i])
        out.append(
            ViewMessages(
                stamped={name: bytearray(serialize(m, kind)) for name, (m, kind) in msgs.items()},
                labels=serialize(T[STRING](data=text), STRING),
                labels_json=text,
            )
        )
    return out


def view_index(k: int, rate_hz: float, views: int, sweep_s: float) -> int:
    """The view of set k: the camera crosses the arc in `sweep_s` and comes back (ping-pong)."""
    u = (k / rate_hz / sweep_s) % 2.0
    return round((2.0 - u if u > 1.0 else u) * (views - 1))


def max_speeds(poses: np.ndarray, schedule: list[int], rate_hz: float) -> tuple[float, float]:
    """Fastest (m/s, deg/s) between consecutive sets, to compare with the node's pose-jump limits."""
    steps = [pose_distance(poses[a], poses[b]) for a, b in zip(schedule[:-1], schedule[1:])]
    return max(d for d, _ in steps) * rate_hz, float(np.degrees(max(r for _, r in steps))) * rate_hz


def input_topics() -> dict[str, tuple[str, str]]:
    """stream -> (topic, type): the node's default inputs, as dprecon_sim publishes them (pose as PoseStamped)."""
    t = TopicsConfig()
    return {
        "camera_info": (t.camera_info, CAMERA_INFO),
        "pose": (t.pose, POSE_STAMPED),
        "labels": (t.labels, STRING),
        "instance": (t.instance, IMAGE),
        "depth": (t.depth, IMAGE),
        "rgb": (t.rgb, IMAGE),
    }


def stream(pubs: RawPublishers, topics: dict[str, tuple[str, str]], sets: list[ViewMessages], schedule: list[int], rate_hz: float) -> dict:
    """Publish one set per deadline; returns counts and timing (ms)."""
    period = 1.0 / rate_hz
    counts = dict.fromkeys(topics, 0)
    missed, starts, late_ms, publish_ms = 0, [], [], []
    last_labels = None
    cpu0, wall0 = time.process_time(), time.monotonic()
    t0 = wall0 + period
    for k, view in enumerate(schedule):
        deadline = t0 + k * period
        now = time.monotonic()
        if now < deadline:
            time.sleep(deadline - now)
        elif now >= deadline + period:
            missed += 1
            continue
        start = time.monotonic()
        starts.append(start)
        late_ms.append((start - deadline) * 1e3)
        sec, nsec = divmod(time.time_ns(), 1_000_000_000)
        msgs = sets[view]
        for name in ("camera_info", "pose", "labels", "instance", "depth", "rgb"):  # labels before the mask they describe
            if name == "labels":
                if msgs.labels_json == last_labels:
                    continue
                data, last_labels = msgs.labels, msgs.labels_json
            else:
                buf = msgs.stamped[name]
                STAMP.pack_into(buf, STAMP_OFFSET, sec, nsec)
                data = bytes(buf)
            pubs.publish(*topics[name], data)
            counts[name] += 1
        publish_ms.append((time.monotonic() - start) * 1e3)
    span = starts[-1] - starts[0] if len(starts) > 1 else 0.0
    return {
        "published": counts,
        "published_sets": len(starts),
        "missed_deadlines": missed,
        "achieved_hz": round((len(starts) - 1) / span, 3) if span > 0 else 0.0,
        "publisher_cpu_pct": round(100.0 * (time.process_time() - cpu0) / (time.monotonic() - wall0), 1),
        "lateness_ms": summary_ms(late_ms),
        "publish_ms": summary_ms(publish_ms),
    }


def summary_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"median": round(statistics.median(ordered), 3), "p99": round(p99, 3), "max": round(ordered[-1], 3)}


def run(args: argparse.Namespace) -> int:
    import rclpy

    from dprecon_ros.ros.raw_publishing import RawPublishers

    cfg = sim_config(args)
    views = load_views(cfg)
    sets = build_messages(views, cfg, args.depth_encoding)
    poses = views.pop("T_world_camera")
    del views  # the arrays live on as CDR bytes: keep one copy (about 0.5 GB for 181 views at 640x480)
    sweep_s = args.sweep_s or (args.views - 1) / MAX_RATE_HZ
    schedule = [view_index(k, args.rate_hz, len(sets), sweep_s) for k in range(round(args.seconds * args.rate_hz))]
    linear, angular = max_speeds(poses, schedule, args.rate_hz)
    limits = SyncConfig()
    print(
        f"{len(sets)} views, sweep {sweep_s:.2f} s; fastest step {linear:.2f} m/s, {angular:.1f} deg/s "
        f"(node rejects above {limits.max_linear_speed_mps:g} m/s, {limits.max_angular_speed_dps:g} deg/s)",
        flush=True,
    )
    topics = input_topics()
    rclpy.init()
    node = rclpy.create_node("dprecon_ingest_publisher")
    try:
        pubs = RawPublishers(node, latched_topics=(topics["labels"][0],))
        for topic, kind in topics.values():
            pubs.prepare(topic, kind)
        if args.wait_s > 0:
            missing = pubs.wait_for_subscribers([topic for topic, _ in topics.values()], args.wait_s)
            if missing:
                print(f"no subscriber on {', '.join(missing)}; publishing anyway", flush=True)
        time.sleep(args.start_delay_s)
        wall_start = time.time()
        result = stream(pubs, topics, sets, schedule, args.rate_hz)
        wall_end = time.time()
        acked = pubs.wait_for_acks(args.ack_timeout_s)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    result.update(
        rate_hz=args.rate_hz,
        seconds=args.seconds,
        scheduled_sets=len(schedule),
        acked=acked,
        stream_wall_s=[wall_start, wall_end],
        max_linear_speed_mps=round(linear, 3),
        max_angular_speed_dps=round(angular, 2),
        views=len(sets),
        sweep_s=sweep_s,
        width=args.width,
        height=args.height,
        depth_encoding=args.depth_encoding,
    )
    print(
        f"published {result['published_sets']}/{len(schedule)} sets at {result['achieved_hz']} Hz "
        f"({result['missed_deadlines']} missed deadlines, publish median {result['publish_ms'].get('median')} ms, "
        f"max {result['publish_ms'].get('max')} ms, lateness p99 {result['lateness_ms'].get('p99')} ms, "
        f"CPU {result['publisher_cpu_pct']} %){'' if acked else '; not all acknowledged'}",
        flush=True,
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate-hz", type=float, default=30.0, help="sets per second (15, 30, 60)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--depth-encoding", choices=("32FC1", "16UC1"), default="32FC1")
    p.add_argument("--views", type=int, default=181, help="views on the arc (at 60 Hz one view per set)")
    p.add_argument("--arc-deg", type=float, default=90.0)
    p.add_argument("--sweep-s", type=float, default=0.0, help="seconds to cross the arc once; 0 = views / 60 Hz")
    p.add_argument("--wait-s", type=float, default=60.0, help="wait this long for subscribers on every topic; 0 = do not")
    p.add_argument(
        "--start-delay-s", type=float, default=2.0, help="after the wait, as dprecon_sim: the node's side of each match can come later"
    )
    p.add_argument("--ack-timeout-s", type=float, default=30.0)
    p.add_argument("--out", default="", help="write the counts and timing here (JSON)")
    p.add_argument("--render-only", action="store_true", help="render (or find) the cached views and exit")
    args = p.parse_args()
    if args.render_only:
        load_views(sim_config(args))
        return 0
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

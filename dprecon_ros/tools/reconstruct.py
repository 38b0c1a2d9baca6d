"""dprecon-reconstruct: offline reconstruction of a rosbag2, straight into the core (no ROS graph).

dprecon-reconstruct --bag PATH --out DIR [--backend tsdf] [--config YAML]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ..config import ConfigError, load_config
from ..core.counters import EventCounters
from ..core.export import export_reconstruction
from ..core.ingest import FrameAssembler
from ..core.mapper import Mapper
from ..core.types import Reconstruction
from ..io.bags import read_frames
from .summary import reconstruction_summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dprecon-reconstruct", description=__doc__.splitlines()[0])
    p.add_argument("--bag", required=True, help="rosbag2 directory or file (mcap or sqlite3)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--backend", default=None, help="reconstruction backend (default from config: tsdf)")
    p.add_argument("--config", default=None, help="YAML config (plain or a ROS params file)")
    p.add_argument("--device", default=None, help="torch device: auto, cpu, cuda")
    for name in ("rgb", "depth", "instance", "labels", "camera_info", "pose"):
        p.add_argument(f"--{name.replace('_', '-')}-topic", dest=f"topic_{name}", default=None, help=f"override the {name} topic")
    p.add_argument("--pose-source", choices=("pose", "odometry", "tf"), default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> Reconstruction | None:
    overrides = {}
    if args.backend:
        overrides["reconstruction.backend"] = args.backend
    if args.device:
        overrides["tsdf.device"] = args.device
    if args.pose_source:
        overrides["topics.pose_source"] = args.pose_source
    for name in ("rgb", "depth", "instance", "labels", "camera_info", "pose"):
        value = getattr(args, f"topic_{name}")
        if value is not None:
            overrides[f"topics.{name}"] = value
    config = load_config(args.config, overrides)
    counters = EventCounters()
    mapper = Mapper(config, counters)
    assembler = FrameAssembler(config, counters)
    t0 = time.perf_counter()
    frames = read_frames(args.bag, config, assembler)
    if not args.quiet:
        from tqdm import tqdm

        frames = tqdm(frames, desc="frames", unit="frame")
    for frame in frames:
        mapper.add_frame(frame)
    ingest_s = time.perf_counter() - t0
    progress = None
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=100, desc="reconstruction", unit="%")

        def progress(stage: str, fraction: float) -> None:
            bar.set_description(stage)
            bar.n = int(100 * fraction)
            bar.refresh()

    recon = mapper.reconstruct(progress)
    if bar is not None:
        bar.n = 100
        bar.close()
    if recon is None:
        print(
            f"nothing reconstructed: {len(mapper.keyframes)} keyframes from {mapper.frames_seen} frames; counters {counters.snapshot()}",
            file=sys.stderr,
        )
        return None
    recon.timings_s["ingest"] = ingest_s
    files = export_reconstruction(recon, args.out, config.topics.map_frame)
    print(reconstruction_summary(recon, len(mapper.keyframes), mapper.frames_seen, counters.snapshot()))
    print(f"wrote {len(files)} files to {Path(args.out).resolve()}")
    return recon


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if not Path(args.bag).exists():
        print(f"dprecon-reconstruct: no bag at {args.bag}", file=sys.stderr)
        return 2
    try:
        return 0 if run(args) is not None else 1
    except ConfigError as exc:
        print(f"dprecon-reconstruct: config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

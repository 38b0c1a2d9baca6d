"""dprecon-reconstruct: offline reconstruction of a rosbag2, straight into the core (no ROS graph).

dprecon-reconstruct --bag PATH --out DIR [--backend tsdf|neural|full] [--stages fuse mesh] [--device cpu] [--config YAML]
dprecon-reconstruct --resume MAP_DIR [--bag PATH] --out DIR     (continue a saved map, with a bag's frames or none)
dprecon-reconstruct --resume MAP_DIR --edit 3="a teddy bear" --out DIR   (text-driven edit of object 3)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from dprecon_ros.config import ConfigError, DpreconConfig, load_config
from dprecon_ros.core.compute import DeviceUnavailable, resolve_device
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.ingest.assembler import FrameAssembler
from dprecon_ros.core.mapping.mapper import RECONSTRUCTED, Mapper
from dprecon_ros.core.stages.prior.config import id_and_prompt
from dprecon_ros.core.store.manifest import MapFormatError
from dprecon_ros.core.types import Reconstruction
from dprecon_ros.io.bags import read_frames
from dprecon_ros.io.export import export_reconstruction
from dprecon_ros.tools.summary import reconstruction_summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dprecon-reconstruct", description=__doc__.splitlines()[0])
    p.add_argument("--bag", default=None, help="rosbag2 directory or file (mcap or sqlite3)")
    p.add_argument("--resume", default=None, help="a saved map directory (~/save_map, or a node's persist_dir) to continue")
    p.add_argument("--out", required=True, help="output directory (meshes, scene graph, and the saved map in OUT/map)")
    p.add_argument("--backend", default=None, help="stage preset: tsdf, neural, full (default from config: tsdf)")
    p.add_argument(
        "--prior-model", default=None, help="diffusers checkpoint of the prior: a directory, or a Hugging Face id in the local cache"
    )
    p.add_argument(
        "--edit",
        action="append",
        default=[],
        metavar="ID=PROMPT",
        help="after the run, edit object ID with the prior towards PROMPT (repeatable)",
    )
    p.add_argument("--stages", nargs="+", default=None, help="stage list instead of the preset, e.g. fuse geometry mesh")
    p.add_argument("--force", action="store_true", help="refit every object even if a resumed map has it up to date")
    p.add_argument("--config", default=None, help="YAML config (plain or a ROS params file)")
    p.add_argument("--device", default=None, help="torch device of every stage: auto, cpu, cuda, cuda:N")
    for name in ("rgb", "depth", "instance", "labels", "camera_info", "pose"):
        p.add_argument(f"--{name.replace('_', '-')}-topic", dest=f"topic_{name}", default=None, help=f"override the {name} topic")
    p.add_argument("--pose-source", choices=("pose", "odometry", "tf"), default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> DpreconConfig:
    """The config file with the command line on top (`--device` is the one device of every stage)."""
    overrides = {}
    if args.backend:
        overrides["reconstruction.backend"] = args.backend
    if args.device:
        overrides["compute.device"] = args.device
    if args.prior_model:
        overrides["prior.model"] = args.prior_model
    if args.stages:
        overrides["reconstruction.stages"] = args.stages
    if args.pose_source:
        overrides["topics.pose_source"] = args.pose_source
    for name in ("rgb", "depth", "instance", "labels", "camera_info", "pose"):
        value = getattr(args, f"topic_{name}")
        if value is not None:
            overrides[f"topics.{name}"] = value
    return load_config(args.config, overrides)


class EditFailed(RuntimeError):
    """An --edit that could not run (no such object, no fitted field, no weights for the prior)."""


def parse_edits(entries: list[str]) -> dict[int, str]:
    """`ID=PROMPT` entries -> {id: prompt}; a malformed one is a usage error."""
    edits = {}
    for entry in entries:
        parsed = id_and_prompt(entry)
        if parsed is None:
            raise ValueError(f"--edit {entry!r}: expected ID=PROMPT, e.g. 3='a teddy bear'")
        edits[parsed[0]] = parsed[1]
    return edits


def run(args: argparse.Namespace) -> Reconstruction | None:
    config = config_from_args(args)
    resolve_device(config.compute.device)  # an unusable device is an error before any work
    counters = EventCounters()
    mapper = Mapper(config, counters)
    if args.resume:
        mapper.load_map(args.resume)
        print(f"resumed {len(mapper.keyframes)} keyframes and {len(mapper.model.objects)} objects from {args.resume}")
    t0 = time.perf_counter()
    if args.bag:
        assembler = FrameAssembler(config, counters)
        assembler.wanted = mapper.keyframes.is_novel_pose  # frames are taken one by one: skip decoding redundant ones
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

        def progress(stage: str, index: int, count: int, fraction: float) -> None:
            bar.set_description(f"{stage} ({index + 1}/{count})")
            bar.n = int(100 * (index + fraction) / max(1, count))
            bar.refresh()

    report = mapper.reconstruct(force=args.force, progress=progress)
    if bar is not None:
        bar.n = 100
        bar.close()
    edits = parse_edits(args.edit)
    if edits:
        report = mapper.reconstruct(progress=progress, edits=edits)
        if report.status != RECONSTRUCTED:  # refused, failed or cancelled: the unedited map is not the answer
            raise EditFailed(report.message)
    recon = report.reconstruction
    if recon is None:
        print(
            f"nothing reconstructed ({report.message}): {len(mapper.keyframes)} keyframes from {mapper.frames_seen} frames; "
            f"counters {counters.snapshot()}",
            file=sys.stderr,
        )
        return None
    if not report.changed:
        print(f"map unchanged: {report.message}")
    recon.timings_s["ingest"] = ingest_s
    files = export_reconstruction(recon, args.out, config.topics.map_frame)
    mapper.save_map(Path(args.out) / "map")
    print(reconstruction_summary(recon, len(mapper.keyframes), mapper.frames_seen, counters.snapshot()))
    print(f"wrote {len(files)} files and the map (resume with --resume {Path(args.out).resolve() / 'map'}) to {Path(args.out).resolve()}")
    return recon


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if not args.bag and not args.resume:
        print("dprecon-reconstruct: give --bag, --resume, or both", file=sys.stderr)
        return 2
    if args.bag and not Path(args.bag).exists():
        print(f"dprecon-reconstruct: no bag at {args.bag}", file=sys.stderr)
        return 2
    try:
        parse_edits(args.edit)
    except ValueError as exc:
        print(f"dprecon-reconstruct: {exc}", file=sys.stderr)
        return 2
    try:
        return 0 if run(args) is not None else 1
    except EditFailed as exc:
        print(f"dprecon-reconstruct: edit refused: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"dprecon-reconstruct: config error: {exc}", file=sys.stderr)
        return 2
    except MapFormatError as exc:
        print(f"dprecon-reconstruct: cannot resume: {exc}", file=sys.stderr)
        return 2
    except DeviceUnavailable as exc:
        print(f"dprecon-reconstruct: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

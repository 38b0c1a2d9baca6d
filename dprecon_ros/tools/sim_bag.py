"""dprecon-sim-bag: render the simulated room into a rosbag2 (mcap) with ground-truth meshes beside it.

    dprecon-sim-bag --out DIR [--views 15] [--shuffle-ids] [--depth-noise 0.01] ...
Writes DIR/bag (the input topics) and DIR/ground_truth/*.ply. Such a bag carries the sim to machines where
pybullet cannot be installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dprecon_ros.config import DpreconConfig
from dprecon_ros.io.bags import write_frames
from dprecon_ros.sim.simulator import RoomSimulator, SimConfig


def sim_config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        num_views=args.views,
        arc_deg=args.arc_deg,
        width=args.width,
        height=args.height,
        shuffle_ids=args.shuffle_ids,
        depth_noise_m=args.depth_noise,
        depth_dropout=args.depth_dropout,
        pose_noise_m=args.pose_noise_m,
        pose_noise_deg=args.pose_noise_deg,
        seed=args.seed,
    )


def add_sim_arguments(p: argparse.ArgumentParser) -> None:
    d = SimConfig()
    p.add_argument("--views", type=int, default=d.num_views)
    p.add_argument("--arc-deg", type=float, default=d.arc_deg, help="span of the camera arc (360 = all around)")
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--shuffle-ids", action="store_true", help="new random instance ids in every frame")
    p.add_argument("--depth-noise", type=float, default=d.depth_noise_m, help="depth sigma at 1 m (m)")
    p.add_argument("--depth-dropout", type=float, default=d.depth_dropout)
    p.add_argument("--pose-noise-m", type=float, default=d.pose_noise_m)
    p.add_argument("--pose-noise-deg", type=float, default=d.pose_noise_deg)
    p.add_argument("--seed", type=int, default=d.seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dprecon-sim-bag", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    add_sim_arguments(p)
    args = p.parse_args(argv)
    out = Path(args.out)
    if (out / "bag").exists():
        print(f"dprecon-sim-bag: {out / 'bag'} exists; choose another --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    with RoomSimulator(sim_config_from_args(args)) as sim:
        n = write_frames(out / "bag", (f for f, _ in sim.frames()), DpreconConfig(), args.storage)
        gt = sim.export_ground_truth(out / "ground_truth")
    print(f"wrote {n} messages to {out / 'bag'} and {len(gt)} ground-truth meshes to {out / 'ground_truth'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

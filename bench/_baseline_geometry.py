"""Geometry steps per second of one source tree, run as a subprocess by bench_backends.py --baseline-rev.

    PYTHONPATH=TREE .venv/bin/python bench/_baseline_geometry.py --tree TREE --frames FRAMES.npz \
        --config TREE/config/dprecon.yaml --overrides '{"geometry.iterations": 3}' --out RESULT.json

Imports only `dprecon_ros.config`, `dprecon_ros.core.mapping.mapper` and `dprecon_ros.core.types` of TREE (no
ROS messages), rebuilds the frames written by `save_frames` with that tree's classes, builds a Mapper from
`load_config(--config, --overrides)`, adds the frames, reconstructs --repeats times and writes one JSON object:
the geometry time of each repeat, the iterations that ran and their median steps/s. Keep this file free of
imports from the benchmark (it runs against other revisions) and of anything that differs between trees.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ARRAYS = ("rgb", "depth_m", "instance", "T_world_camera")


def save_frames(frames, path: Path) -> None:
    """Frames -> `path` (.npz of the arrays) and `path`.json (the scalar fields), readable by `load_frames`."""
    arrays, meta = {}, []
    for i, f in enumerate(frames):
        for name in ARRAYS:
            value = getattr(f, name)
            if value is not None:
                arrays[f"{i}_{name}"] = np.asarray(value)
        meta.append(
            {
                "stamp": float(f.stamp),
                "labels": {str(int(k)): v for k, v in f.labels.items()},
                "intrinsics": {k: (v.item() if hasattr(v, "item") else v) for k, v in dataclasses.asdict(f.intrinsics).items()},
            }
        )
    np.savez(path, **arrays)
    Path(f"{path}.json").write_text(json.dumps(meta))


def load_frames(path: Path) -> list:
    """The frames written by `save_frames`, as Frame objects of the dprecon_ros on sys.path."""
    from dprecon_ros.core.types import CameraIntrinsics, Frame

    meta = json.loads(Path(f"{path}.json").read_text())
    frames = []
    with np.load(path) as arrays:
        for i, m in enumerate(meta):
            fields = {name: (arrays[f"{i}_{name}"] if f"{i}_{name}" in arrays else None) for name in ARRAYS}
            frames.append(
                Frame(
                    stamp=m["stamp"],
                    labels={int(k): v for k, v in m["labels"].items()},
                    intrinsics=CameraIntrinsics(**m["intrinsics"]),
                    **fields,
                )
            )
    return frames


def iterations_run(recon, configured: int) -> int:
    """Steps the geometry stage took: from the optimisation log when it has step numbers, else the config."""
    steps = [h["step"] for h in recon.history if "step" in h]
    return int(max(steps)) + 1 if steps else int(configured)


def measure(config_path: Path, overrides: dict, frames_path: Path, repeats: int) -> dict:
    import dprecon_ros
    from dprecon_ros.config import load_config
    from dprecon_ros.core.mapping.mapper import Mapper

    frames = load_frames(frames_path)
    runs = []
    for _ in range(repeats):
        config = load_config(config_path, overrides)
        mapper = Mapper(config)
        for frame in frames:
            mapper.add_frame(frame)
        t0 = time.perf_counter()
        recon = mapper.reconstruct().reconstruction
        total = time.perf_counter() - t0
        if "geometry" not in recon.timings_s:
            raise RuntimeError(f"the geometry stage did not run (stages {recon.stages}, timings {sorted(recon.timings_s)})")
        seconds = recon.timings_s["geometry"]
        iterations = iterations_run(recon, config.geometry.iterations)
        runs.append({"geometry_s": seconds, "iterations": iterations, "steps_per_s": iterations / seconds, "reconstruct_s": total})
    return {
        "module": str(Path(dprecon_ros.__file__).resolve().parent),
        "keyframes": len(mapper.keyframes),
        "iterations": runs[-1]["iterations"],
        "geometry_s": statistics.median(r["geometry_s"] for r in runs),
        "steps_per_s": statistics.median(r["steps_per_s"] for r in runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, required=True, help="source tree whose dprecon_ros is measured")
    p.add_argument("--frames", type=Path, required=True)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--overrides", default="{}", help="JSON object of dotted config overrides")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    tree = args.tree.resolve()
    sys.path.insert(0, str(tree))
    import dprecon_ros

    module = Path(dprecon_ros.__file__).resolve().parent
    if module != tree / "dprecon_ros":
        raise RuntimeError(f"imported dprecon_ros from {module}, not from {tree}")
    result = measure(args.config, json.loads(args.overrides), args.frames, args.repeats)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

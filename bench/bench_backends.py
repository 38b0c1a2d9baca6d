"""Benchmark the reconstruction backends on the same simulated scenes: quality per object and scene, time per
stage, GPU memory.

    .venv/bin/python bench/bench_backends.py --size small            # CPU-sized, minutes on 2 cores
    .venv/bin/python bench/bench_backends.py --size full --device cuda   # the configured sizes, on a GPU

Scenes: 10 and 15 views, instance ids kept or shuffled per frame. Per object and backend: Chamfer distance
(cm), F-score at 5 cm, normal consistency, the F-score on what the views saw (ground truth the views saw;
predicted surface lying in observed space), the fraction of the object no view saw and the recall there
(completeness of the unseen parts). Per backend and scene: the means and the wall time of each stage
(medians over --repeats). Prints tables; writes one JSON file. No pybullet on the GPU machine? Pass
`--frames DIR` with the output of `dprecon-sim-bag` instead (bags and ground truth rendered elsewhere).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dprecon_ros.config import DpreconConfig, load_config  # noqa: E402
from dprecon_ros.core.mapping.mapper import Mapper  # noqa: E402
from dprecon_ros.eval.evaluation import evaluate, format_table, load_ground_truth, unseen_completeness  # noqa: E402
from dprecon_ros.io.export import to_trimesh  # noqa: E402

SMALL = {  # CPU-sized neural stage: same losses and sampling, fewer and smaller everything
    "geometry.iterations": 150,
    "geometry.rays_per_batch": 256,
    "geometry.object_resolution": 48,
    "geometry.background_resolution": 48,
    "geometry.feature_resolution": 32,
    "geometry.progress_every": 50,
}


def scene_frames(views: int, shuffle: bool, small: bool, frames_dir: Path | None):
    """(frames, ground-truth meshes) from the simulator, or from a `dprecon-sim-bag` directory."""
    if frames_dir is not None:
        from dprecon_ros.io.bags import read_frames

        bag = frames_dir / f"views{views}_{'shuffled' if shuffle else 'kept'}"
        return list(read_frames(bag / "bag", DpreconConfig())), load_ground_truth(bag / "ground_truth")
    from dprecon_ros.sim.simulator import RoomSimulator, SimConfig

    size = {"width": 160, "height": 120} if small else {}
    with RoomSimulator(SimConfig(num_views=views, shuffle_ids=shuffle, **size)) as sim:
        return [f for f, _ in sim.frames()], sim.ground_truth()


def run_backend(backend: str, frames, gt, args) -> dict:
    overrides = {"reconstruction.backend": backend, "compute.device": args.device}
    if args.size == "small":
        overrides.update(SMALL)
    timings, recon, mapper = [], None, None
    for _ in range(args.repeats):
        mapper = Mapper(load_config(args.config, overrides))
        t0 = time.perf_counter()
        for frame in frames:
            mapper.add_frame(frame)
        ingest = time.perf_counter() - t0
        recon = mapper.reconstruct().reconstruction
        timings.append({"ingest": ingest, **recon.timings_s})
    pred = {o.object_id: (o.label, to_trimesh(o)) for o in recon.objects}
    objects = []
    for s in evaluate(pred, gt, samples=args.samples):
        u = unseen_completeness(pred[s.object_id][1] if s.object_id is not None else None, gt[s.gt_name], frames, samples=args.samples)
        objects.append(
            {
                "object": s.gt_name,
                "label": s.label,
                "id": s.object_id,
                **s.metrics.as_dict(),
                "observed_fscore": u.observed_fscore,
                "unseen_fraction": u.unseen_fraction,
                "unseen_recall": u.unseen_recall,
            }
        )
    mean = {
        k: float(np.mean([o[k] for o in objects if np.isfinite(o[k])]))
        for k in ("chamfer_cm", "fscore", "normal_consistency", "observed_fscore", "unseen_recall")
    }
    mean["found"] = sum(o["id"] is not None for o in objects)
    keys = sorted({k for t in timings for k in t})
    return {
        "backend": backend,
        "keyframes": len(mapper.keyframes),
        "objects": objects,
        "scene": mean,
        "median": {k: statistics.median(t[k] for t in timings if k in t) for k in keys},
        "all_timings": timings,
        "loss_history": recon.history,
    }


def object_table(results: list[dict]) -> str:
    by_backend = {r["backend"]: {o["object"]: o for o in r["objects"]} for r in results}
    names = list(next(iter(by_backend.values())))
    headers = ["object"]
    for b in by_backend:
        headers += [f"{b} CD", f"{b} F", f"{b} NC", f"{b} F obs", f"{b} unseen rec"]
    rows = []
    for name in names:
        row = [name.split("_", 1)[-1]]
        for b in by_backend:
            o = by_backend[b][name]
            row += [o["chamfer_cm"], o["fscore"], o["normal_consistency"], o["observed_fscore"], o["unseen_recall"]]
        rows.append(row)
    row = ["scene"]
    for r in results:
        m = r["scene"]
        row += [m["chamfer_cm"], m["fscore"], m["normal_consistency"], m["observed_fscore"], m["unseen_recall"]]
    rows.append(row)
    return format_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", nargs="+", default=["tsdf", "neural"])
    p.add_argument("--views", type=int, nargs="+", default=[10, 15])
    p.add_argument("--ids", nargs="+", default=["kept", "shuffled"], choices=["kept", "shuffled"])
    p.add_argument("--size", choices=["small", "full"], default="small")
    p.add_argument("--repeats", type=int, default=1, help="runs per backend and scene; times are medians")
    p.add_argument("--device", default="auto")
    p.add_argument("--config", type=Path, default=ROOT / "config" / "dprecon.yaml")
    p.add_argument("--frames", type=Path, default=None, help="directory of dprecon-sim-bag outputs instead of the simulator")
    p.add_argument("--samples", type=int, default=10000, help="surface samples per mesh for the metrics")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)

    scenes = []
    for views in args.views:
        for ids in args.ids:
            frames, gt = scene_frames(views, ids == "shuffled", args.size == "small", args.frames)
            results = [run_backend(b, frames, gt, args) for b in args.backends]
            scenes.append({"views": views, "ids": ids, "results": results})
            print(f"\n## {views} views, ids {ids} ({results[0]['keyframes']} keyframes)")
            print(object_table(results))
            for r in results:
                print(f"{r['backend']} median s: " + ", ".join(f"{k} {v:.3g}" for k, v in r["median"].items()))
    print("\n## summary (means over objects)")
    print(
        format_table(
            ["views", "ids", "backend", "found", "CD cm", "F@5cm", "NC", "F observed", "unseen recall", "total s"],
            [
                [
                    s["views"],
                    s["ids"],
                    r["backend"],
                    r["scene"]["found"],
                    r["scene"]["chamfer_cm"],
                    r["scene"]["fscore"],
                    r["scene"]["normal_consistency"],
                    r["scene"]["observed_fscore"],
                    r["scene"]["unseen_recall"],
                    r["median"]["total"],
                ]
                for s in scenes
                for r in s["results"]
            ],
        )
    )
    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"backends_{args.size}_{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "size": args.size,
                "device": str(device),
                "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
                "torch": torch.__version__,
                "machine": platform.platform(),
                "cpu_threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "scenes": scenes,
            },
            indent=2,
        )
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the prior stage: geometry only (the `neural` preset) against geometry + prior (`full`) with the
reference guidance, which knows the true meshes. It shows what the stage does with a prior that is right, on
scenes whose far sides no view saw, without any diffusion weights. The reference guidance is evaluation
tooling: the node never uses it.

    .venv/bin/python bench/bench_prior.py                                   # the hard sim scene, 10 views, CPU sizes
    .venv/bin/python bench/bench_prior.py --bag BAG --ground-truth DIR      # recorded frames, <id>_<label>.ply meshes
    .venv/bin/python bench/bench_prior.py --views 10 15 --size full --device cuda

Per object and run: unseen fraction (of the true surface no view saw), unseen-part recall at 5 cm, F-score at
5 cm, Chamfer distance (cm), observed-surface F-score, and each object's completeness as the node reports it
(the observed share of its mesh); per run the means and wall times (median of --repeats). Prints tables and
writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_backends import SCENES, parse_set, write_record  # noqa: E402

from dprecon_ros.config import DpreconConfig, load_config  # noqa: E402
from dprecon_ros.core.mapping.mapper import Mapper  # noqa: E402
from dprecon_ros.core.types import TriangleMesh  # noqa: E402
from dprecon_ros.eval.evaluation import evaluate, format_table, load_ground_truth, match_objects, unseen_completeness  # noqa: E402
from dprecon_ros.eval.reference_guidance import register_reference_guidance  # noqa: E402
from dprecon_ros.io.export import to_trimesh  # noqa: E402

SMALL = {  # CPU sizes: the geometry of bench_backends' small runs, the prior's CPU preset with more steps
    "geometry.iterations": 150,
    "geometry.rays_per_batch": 256,
    "geometry.object_resolution": 48,
    "geometry.background_resolution": 48,
    "geometry.feature_resolution": 32,
    "geometry.progress_every": 50,
    "prior.cpu.iterations": 1800,  # ~200 steps per field: what moving an unseen side ~0.3 m takes at lr 0.2 cells a step
}
PRIOR_STAGES = ["fuse", "geometry", "prior", "mesh"]  # the full preset without its texture stage: geometry is scored
METRICS = ("unseen_recall", "fscore", "chamfer_cm", "observed_fscore", "completeness")


def scene_inputs(args) -> list[tuple[str, list, dict]]:
    """(name, frames, ground truth) per scene: a bag with its meshes, or the simulator at each --views."""
    if args.bag:
        from dprecon_ros.io.bags import read_frames

        frames = list(read_frames(args.bag, DpreconConfig()))
        return [(f"bag {args.bag}", frames, load_ground_truth(args.ground_truth))]
    from dprecon_ros.sim.simulator import RoomSimulator, SimConfig

    out = []
    size = {"width": 160, "height": 120} if args.size == "small" else {}
    for views in args.views:
        scene = {**SCENES[args.scene], **({"arc_deg": args.arc_deg} if args.arc_deg is not None else {})}
        config = SimConfig(num_views=views, **size, **scene)
        with RoomSimulator(config) as sim:
            out.append(
                (f"{args.scene} scene, {views} views (arc {config.arc_deg:g} deg)", [f for f, _ in sim.frames()], sim.ground_truth())
            )
    return out


def run(frames, gt, overrides: dict, args) -> tuple[dict, object]:
    """One reconstruction per repeat; the scores of the last, the median wall times of all."""
    timings, recon = [], None
    for _ in range(args.repeats):
        mapper = Mapper(load_config(args.config, overrides))
        for frame in frames:
            mapper.add_frame(frame)
        t0 = time.perf_counter()
        report = mapper.reconstruct()
        timings.append({"total": time.perf_counter() - t0, **report.reconstruction.timings_s})
        recon = report.reconstruction
    pred = {o.object_id: (o.label, to_trimesh(o)) for o in recon.objects}
    completeness = {o.object_id: o.completeness for o in recon.objects}
    objects = []
    for s in evaluate(pred, gt, samples=args.samples):
        mesh = pred[s.object_id][1] if s.object_id is not None else None
        u = unseen_completeness(mesh, gt[s.gt_name], frames, samples=args.samples)
        objects.append(
            {
                "object": s.gt_name,
                "id": s.object_id,
                "unseen_fraction": u.unseen_fraction,
                "unseen_area_m2": float(gt[s.gt_name].area) * u.unseen_fraction,
                "unseen_recall": u.unseen_recall,
                "fscore": s.metrics.fscore,
                "chamfer_cm": s.metrics.chamfer_cm,
                "observed_fscore": u.observed_fscore,
                "completeness": completeness.get(s.object_id, 0.0),
            }
        )
    keys = sorted({k for t in timings for k in t})
    result = {
        "overrides": overrides,
        "objects": objects,
        "mean": {k: float(np.mean([o[k] for o in objects if np.isfinite(o[k])])) for k in METRICS},
        "pooled_unseen_recall": pooled_unseen_recall(objects),
        "median_s": {k: statistics.median(t[k] for t in timings if k in t) for k in keys},
        "prior_status": recon.prior_status,
    }
    return result, recon


def pooled_unseen_recall(objects: list[dict]) -> float:
    """Recall of the scene's unseen surface as a whole: each object's unseen-part recall weighted by its
    unseen area (the per-object mean weighs a mug's unseen base like a box's three hidden sides)."""
    area = np.array([o["unseen_area_m2"] for o in objects])
    recall = np.array([o["unseen_recall"] if np.isfinite(o["unseen_recall"]) else 0.0 for o in objects])
    return float((area * recall).sum() / area.sum()) if area.sum() > 0 else float("nan")


def reference_meshes(recon, gt) -> dict[int, TriangleMesh]:
    pairs = match_objects({o.object_id: (o.label, to_trimesh(o)) for o in recon.objects}, gt)
    return {
        oid: TriangleMesh(np.asarray(gt[name].vertices), np.asarray(gt[name].faces), np.zeros((0, 4), np.uint8))
        for name, oid in pairs.items()
        if oid is not None
    }


def table(geometry: dict, prior: dict) -> str:
    headers = ["object", "unseen"] + [f"{r} {m}" for m in ("unseen rec", "F@5cm", "CD cm", "F obs", "complete") for r in ("geo", "+prior")]
    rows = []
    by_name = {o["object"]: o for o in prior["objects"]}
    for g in geometry["objects"]:
        p = by_name[g["object"]]
        row = [g["object"].split("_", 1)[-1], g["unseen_fraction"]]
        for m in METRICS:
            row += [g[m], p[m]]
        rows.append(row)
    row = ["mean", ""]
    for m in METRICS:
        row += [geometry["mean"][m], prior["mean"][m]]
    rows.append(row)
    return format_table(headers, rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bag", type=Path, help="a bag of frames (dprecon-sim-bag or a recording); needs --ground-truth")
    p.add_argument("--ground-truth", type=Path, help="directory of <id>_<label>.ply meshes in the map frame")
    p.add_argument("--scene", choices=sorted(SCENES), default="hard")
    p.add_argument("--views", type=int, nargs="+", default=[10])
    p.add_argument("--arc-deg", type=float, default=None, help="the camera arc instead of the scene's (narrower: more left unseen)")
    p.add_argument("--size", choices=("small", "full"), default="small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--strength", type=float, default=10.0, help="reference guidance: gradient per latent element per unit of difference")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--set", type=parse_set, action="append", default=[], help="KEY=VALUE config override for both runs")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    if args.bag and not args.ground_truth:
        p.error("--bag needs --ground-truth")
    args.set = dict(args.set)
    base = {"compute.device": args.device, **(SMALL if args.size == "small" else {}), **args.set}
    results = []
    for name, frames, gt in scene_inputs(args):
        geometry, recon = run(frames, gt, {**base, "reconstruction.backend": "neural"}, args)
        register_reference_guidance(reference_meshes(recon, gt), args.strength)
        prior, recon_prior = run(
            frames,
            gt,
            {**base, "reconstruction.backend": "full", "reconstruction.stages": PRIOR_STAGES, "prior.guidance": "reference"},
            args,
        )
        ids = {(o.object_id, o.label) for o in recon.objects}
        if ids != {(o.object_id, o.label) for o in recon_prior.objects}:  # the reference meshes are keyed by the first run's ids
            raise SystemExit(f"{name}: the two runs associated different objects; the reference meshes would not match")
        gain = prior["mean"]["unseen_recall"] - geometry["mean"]["unseen_recall"]
        drift = prior["mean"]["observed_fscore"] - geometry["mean"]["observed_fscore"]
        pooled_gain = prior["pooled_unseen_recall"] - geometry["pooled_unseen_recall"]
        print(f"\n{name}: {len(frames)} frames; prior {prior['prior_status']}")
        print(table(geometry, prior))
        print(
            f"unseen-part recall {geometry['mean']['unseen_recall']:.3f} -> {prior['mean']['unseen_recall']:.3f} ({gain:+.3f}); "
            f"pooled over the unseen area {geometry['pooled_unseen_recall']:.3f} -> {prior['pooled_unseen_recall']:.3f} ({pooled_gain:+.3f}); "
            f"observed-surface F-score {drift:+.3f}; time {geometry['median_s']['total']:.1f} s -> {prior['median_s']['total']:.1f} s "
            f"(prior stage {prior['median_s'].get('prior', 0.0):.1f} s)"
        )
        results.append(
            {
                "scene": name,
                "frames": len(frames),
                "geometry": geometry,
                "prior": prior,
                "unseen_recall_gain": gain,
                "pooled_unseen_recall_gain": pooled_gain,
                "observed_fscore_change": drift,
            }
        )
    write_record(args.out, "prior", args, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

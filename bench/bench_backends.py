"""Benchmark the reconstruction backends on the same simulated scenes: quality per object and scene, scene-graph
relations, time per stage, geometry steps per second, GPU memory; optionally the geometry speed of an older
revision at the same sizes, in the same run.

    .venv/bin/python bench/bench_backends.py --size small            # CPU-sized, minutes on 2 cores
    .venv/bin/python bench/bench_backends.py --size full --device cuda   # the configured sizes, on a GPU
    .venv/bin/python bench/bench_backends.py --size small --scene hard --views 10 15 --ids shuffled --baseline-rev 1e555b3

Scenes (--scene, one or more): `hard` (default) = a partial camera arc of 120 degrees and depth noise of 5 mm at
1 m growing with z^2, fixed seed; `demo` = the simulator defaults. Each at --views 10 and 15, instance ids
--ids kept or shuffled per frame (a 2D detector's per-frame ids). Per object and backend: Chamfer distance (cm),
F-score at 5 cm, normal consistency, the F-score on what the views saw (ground truth the views saw; predicted
surface lying in observed space), the fraction of the object no view saw and the recall there (completeness of
the unseen parts). Per backend and scene: the means, the number of scene-graph relations, the wall time of each
stage and, where the geometry stage ran, its steps/s (iterations that ran / geometry seconds); medians over
--repeats. `--set KEY=VALUE` (repeatable, YAML values) adds a config override to every run, e.g.
`--set geometry.cpu.iterations=3` for a smoke run on a CPU (there geometry.cpu_preset replaces the geometry.*
sizes by geometry.cpu.*; the JSON records the sizes each run used).

`--baseline-rev REV` checks REV out into a temporary git worktree and measures the geometry steps/s of that
revision and of this tree on the same frames at exactly the same sizes (the --size values of
geometry.iterations, rays_per_batch, object/background/feature_resolution, plus --set; a tree whose config has
geometry.cpu_preset runs with it off), each in a subprocess running bench/_baseline_geometry.py with
PYTHONPATH=<tree>; on the first scene (--baseline-scenes first, default) or every scene (all). Prints tables;
writes one JSON file. No pybullet on the GPU machine? Pass `--frames DIR` with the output of
`dprecon-sim-bag` instead (bags and ground truth rendered elsewhere; --scene is then ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from _baseline_geometry import iterations_run, save_frames  # noqa: E402

from dprecon_ros.config import DpreconConfig, load_config  # noqa: E402
from dprecon_ros.core.compute import resolve_device  # noqa: E402
from dprecon_ros.core.mapping.mapper import Mapper  # noqa: E402
from dprecon_ros.eval.evaluation import evaluate, format_table, load_ground_truth, unseen_completeness  # noqa: E402
from dprecon_ros.io.export import to_trimesh  # noqa: E402

SIZE_KEYS = (
    "geometry.iterations",
    "geometry.rays_per_batch",
    "geometry.object_resolution",
    "geometry.background_resolution",
    "geometry.feature_resolution",
)
SMALL = {  # CPU-sized neural stage: same losses and sampling, fewer and smaller everything
    "geometry.iterations": 150,
    "geometry.rays_per_batch": 256,
    "geometry.object_resolution": 48,
    "geometry.background_resolution": 48,
    "geometry.feature_resolution": 32,
}
SMALL_PROGRESS = {"geometry.progress_every": 50}  # logging only; both trees of a comparison get it too
SCENES = {  # SimConfig fields on top of the simulator defaults
    "hard": {"arc_deg": 120.0, "depth_noise_m": 0.005, "seed": 0},
    "demo": {},
}
HELPER = BENCH / "_baseline_geometry.py"


def scene_frames(scene: str, views: int, shuffle: bool, small: bool, frames_dir: Path | None):
    """(frames, ground-truth meshes, scene settings) from the simulator, or from a `dprecon-sim-bag` directory."""
    if frames_dir is not None:
        from dprecon_ros.io.bags import read_frames

        bag = frames_dir / f"views{views}_{'shuffled' if shuffle else 'kept'}"
        frames = list(read_frames(bag / "bag", DpreconConfig()))
        return frames, load_ground_truth(bag / "ground_truth"), {"scene": "frames", "frames_dir": str(bag)}
    from dprecon_ros.sim.simulator import RoomSimulator, SimConfig

    size = {"width": 160, "height": 120} if small else {}
    config = SimConfig(num_views=views, shuffle_ids=shuffle, **size, **SCENES[scene])
    with RoomSimulator(config) as sim:
        frames, gt = [f for f, _ in sim.frames()], sim.ground_truth()
    return frames, gt, {"scene": scene, **dataclasses.asdict(config)}


def describe(settings: dict) -> str:
    if settings["scene"] == "frames":
        return f"frames {settings['frames_dir']}"
    s = settings
    return (
        f"{s['scene']} scene (arc {s['arc_deg']:g} deg, depth noise {s['depth_noise_m']:g} m at 1 m, "
        f"{s['width']}x{s['height']} px, seed {s['seed']})"
    )


def parse_set(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def run_overrides(backend: str, args) -> dict:
    overrides = {"reconstruction.backend": backend, "compute.device": args.device}
    if args.size == "small":
        overrides.update(SMALL)
        overrides.update(SMALL_PROGRESS)
    overrides.update(args.set)
    return overrides


def relations(recon) -> list[dict]:
    graph = recon.scene_graph
    labels = {o.object_id: o.label for o in graph.objects}
    labels[graph.background_id] = graph.background_label
    return [
        {
            "subject": int(r.subject),
            "relation": r.relation,
            "object": int(r.object),
            "confidence": float(r.confidence),
            "text": f"{labels.get(r.subject, '?')}#{r.subject} {r.relation} {labels.get(r.object, '?')}#{r.object}",
        }
        for r in graph.relations
    ]


def effective_geometry_sizes(config) -> dict:
    """The geometry sizes a run really used: on a CPU with geometry.cpu_preset, geometry.cpu.* replace the
    geometry.* sizes (and any override of them)."""
    g = config.geometry
    sizes = g.cpu if resolve_device(config.compute.device).type == "cpu" and g.cpu_preset else g
    return {f.name: getattr(sizes, f.name) for f in dataclasses.fields(g.cpu)}


def write_record(out: Path, prefix: str, args, **payload) -> Path:
    """bench/results/<prefix>_<UTC time>.json with the arguments, the source revision and the payload."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{prefix}_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "revision": source_revision(), **payload}
    path.write_text(json.dumps(record, indent=1, default=float))
    print(f"wrote {path}")
    return path


def package_version(name: str, missing: str | None = None) -> str | None:
    """The installed version of a distribution, or `missing` where it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return missing


def source_revision() -> dict:
    """The commit the bench ran on and whether the tree had uncommitted changes (results name their code)."""
    if "BENCH_COMMIT" in os.environ:  # a copy of the tree on another machine (the GPU's): the caller names it
        return {"commit": os.environ["BENCH_COMMIT"], "dirty": os.environ.get("BENCH_DIRTY", "unknown")}
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def run_backend(backend: str, frames, gt, args) -> dict:
    overrides = run_overrides(backend, args)
    timings, steps, peaks_mb, recon, mapper, config = [], [], [], None, None, None
    for _ in range(args.repeats):
        config = load_config(args.config, overrides)
        mapper = Mapper(config)
        cuda = resolve_device(config.compute.device).type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for frame in frames:
            mapper.add_frame(frame)
        ingest = time.perf_counter() - t0
        recon = mapper.reconstruct().reconstruction
        timings.append({"ingest": ingest, **recon.timings_s})
        if cuda:
            peaks_mb.append(torch.cuda.max_memory_allocated() / 2**20)
        if recon.timings_s.get("geometry", 0.0) > 0:
            iterations = iterations_run(recon, config.geometry.iterations)
            steps.append({"iterations": iterations, "steps_per_s": iterations / recon.timings_s["geometry"]})
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
    rel = relations(recon)
    mean["relations"] = len(rel)
    keys = sorted({k for t in timings for k in t})
    return {
        "backend": backend,
        "overrides": overrides,
        "geometry_sizes": effective_geometry_sizes(config) if backend != "tsdf" else None,
        "keyframes": len(mapper.keyframes),
        "objects": objects,
        "scene": mean,
        "relations": rel,
        "relation_counts": dict(Counter(r["relation"] for r in rel)),
        "geometry_iterations": steps[-1]["iterations"] if steps else None,
        "geometry_steps_per_s": statistics.median(s["steps_per_s"] for s in steps) if steps else None,
        "median": {k: statistics.median(t[k] for t in timings if k in t) for k in keys},
        "gpu_peak_mb": max(peaks_mb) if peaks_mb else None,
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


def fmt(x: float | None, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


# --- the baseline revision: same frames, same sizes, one subprocess per tree ---------------------------------


def resolve_rev(rev: str) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"--baseline-rev {rev!r}: not a commit of {ROOT}: {out.stderr.strip()}")
    return out.stdout.strip()


@contextlib.contextmanager
def worktree(commit: str):
    """A detached temporary `git worktree` of `commit`, removed afterwards (also on errors and Ctrl-C)."""
    tmp = Path(tempfile.mkdtemp(prefix="dprecon_baseline_"))
    path = tmp / "tree"
    try:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True, capture_output=True, text=True
        )
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)


def comparison_overrides(args) -> dict:
    """The overrides both trees run with: neural backend, device, explicit sizes, --set. The sizes are SMALL for
    --size small and this tree's configured values (CPU preset off) for --size full, so neither tree's
    defaults nor presets decide them."""
    if args.size == "small":
        sizes = {**SMALL, **SMALL_PROGRESS}
    else:
        probe = {**args.set}
        if hasattr(DpreconConfig().geometry, "cpu_preset"):
            probe["geometry.cpu_preset"] = False
        config = load_config(args.config, probe)
        sizes = {}
        for key in SIZE_KEYS:
            value = config
            for part in key.split("."):
                value = getattr(value, part)
            sizes[key] = value
    return {"reconstruction.backend": "neural", "compute.device": args.device, **sizes, **args.set}


def tree_config(tree: Path, config: Path) -> Path:
    """`config` of this tree, at the same place in `tree` (a config outside this tree is used as it is)."""
    try:
        return tree / config.resolve().relative_to(ROOT)
    except ValueError:
        return config


def measure_tree(tree: Path, config: Path, overrides: dict, frames_path: Path, repeats: int) -> dict:
    """Geometry steps/s of `tree`'s dprecon_ros, in a subprocess; {"error": ...} when it fails."""
    out = frames_path.with_name(f"result_{time.monotonic_ns()}.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, str(HELPER), "--tree", str(tree), "--frames", str(frames_path), "--config", str(config)]
    cmd += ["--overrides", json.dumps(overrides), "--repeats", str(repeats), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        print(f"geometry measurement of {tree} failed (exit {proc.returncode}):\n{tail}", file=sys.stderr)
        return {"error": tail, "overrides": overrides}
    return {**json.loads(out.read_text()), "overrides": overrides}


def compare_geometry(baseline_tree: Path, rev: str, commit: str, frames, args) -> dict:
    """Steps/s of the baseline revision and of this tree on `frames`, at the same sizes."""
    overrides = comparison_overrides(args)
    current = dict(overrides)
    geometry = DpreconConfig().geometry
    if hasattr(geometry, "cpu_preset"):  # the CPU preset would change this tree's sizes
        current["geometry.cpu_preset"] = False
        # rays and grids as the baseline's; per-ray samples and auxiliary point counts as this tree runs them
        # on the device: the CPU preset's on a CPU, the configured (GPU) ones elsewhere
        sizes = geometry.cpu if resolve_device(args.device).type == "cpu" else geometry
        for f in dataclasses.fields(geometry.cpu):
            key = f"geometry.{f.name}"
            if key not in current:
                current[key] = getattr(sizes, f.name)
    with tempfile.TemporaryDirectory(prefix="dprecon_frames_") as tmp:
        frames_path = Path(tmp) / "frames.npz"
        save_frames(frames, frames_path)
        base = measure_tree(baseline_tree, tree_config(baseline_tree, args.config), overrides, frames_path, args.repeats)
        cur = measure_tree(ROOT, args.config, current, frames_path, args.repeats)
        # the loop alone: the same run with a third of the steps, the difference is steps only
        short = max(1, int(overrides["geometry.iterations"]) // 3)
        base_short = measure_tree(
            baseline_tree, tree_config(baseline_tree, args.config), {**overrides, "geometry.iterations": short}, frames_path, args.repeats
        )
        cur_short = measure_tree(ROOT, args.config, {**current, "geometry.iterations": short}, frames_path, args.repeats)
    b, c = base.get("steps_per_s"), cur.get("steps_per_s")
    b_loop, c_loop = loop_rate(base, base_short), loop_rate(cur, cur_short)
    return {
        "rev": rev,
        "commit": commit,
        "baseline": {**base, "loop_steps_per_s": b_loop},
        "current": {**cur, "loop_steps_per_s": c_loop},
        "speedup": c / b if b and c else None,
        "loop_speedup": c_loop / b_loop if b_loop and c_loop else None,
    }


def loop_rate(full: dict, short: dict) -> float | None:
    """Optimisation steps per second without the stage's set-up: (steps difference) / (time difference)."""
    if "error" in full or "error" in short or full["geometry_s"] <= short["geometry_s"]:
        return None
    return (full["iterations"] - short["iterations"]) / (full["geometry_s"] - short["geometry_s"])


def comparison_table(rows: list[dict]) -> str:
    return format_table(
        [
            "scene",
            "views",
            "ids",
            "rev",
            "iterations",
            "steps/s baseline",
            "steps/s current (same sizes)",
            "speed-up",
            "loop steps/s baseline",
            "loop steps/s current",
            "loop speed-up",
        ],
        [
            [
                r["scene"]["scene"],
                r["views"],
                r["ids"],
                f"{r['rev']} ({r['commit'][:10]})",
                f"{r['baseline'].get('iterations', '-')}/{r['current'].get('iterations', '-')}",
                "failed" if "error" in r["baseline"] else fmt(r["baseline"]["steps_per_s"]),
                "failed" if "error" in r["current"] else fmt(r["current"]["steps_per_s"]),
                "-" if r["speedup"] is None else f"{r['speedup']:.2f}x",
                fmt(r["baseline"].get("loop_steps_per_s")) if r["baseline"].get("loop_steps_per_s") else "-",
                fmt(r["current"].get("loop_steps_per_s")) if r["current"].get("loop_steps_per_s") else "-",
                "-" if r.get("loop_speedup") is None else f"{r['loop_speedup']:.2f}x",
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", nargs="+", default=["tsdf", "neural"])
    p.add_argument("--scene", nargs="+", default=["hard"], choices=list(SCENES), help="simulated scenes (ignored with --frames)")
    p.add_argument("--views", type=int, nargs="+", default=[10, 15])
    p.add_argument("--ids", nargs="+", default=["kept", "shuffled"], choices=["kept", "shuffled"])
    p.add_argument("--size", choices=["small", "full"], default="small")
    p.add_argument(
        "--set",
        dest="set",
        action="append",
        type=parse_set,
        default=[],
        metavar="KEY=VALUE",
        help="config override for every run (repeatable)",
    )
    p.add_argument("--repeats", type=int, default=1, help="runs per backend and scene; times are medians")
    p.add_argument("--device", default="auto")
    p.add_argument("--config", type=Path, default=ROOT / "config" / "dprecon.yaml")
    p.add_argument("--frames", type=Path, default=None, help="directory of dprecon-sim-bag outputs instead of the simulator")
    p.add_argument("--samples", type=int, default=10000, help="surface samples per mesh for the metrics")
    p.add_argument("--baseline-rev", default=None, metavar="REV", help="also measure the geometry steps/s of REV at the same sizes")
    p.add_argument("--baseline-scenes", choices=["first", "all"], default="first", help="scenes the baseline comparison runs on")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    args.set = dict(args.set)
    scene_names = ["frames"] if args.frames is not None else args.scene
    commit = resolve_rev(args.baseline_rev) if args.baseline_rev else None

    scenes, comparisons = [], []
    with contextlib.ExitStack() as stack:
        baseline_tree = stack.enter_context(worktree(commit)) if commit else None
        for scene in scene_names:
            for views in args.views:
                for ids in args.ids:
                    frames, gt, settings = scene_frames(scene, views, ids == "shuffled", args.size == "small", args.frames)
                    results = [run_backend(b, frames, gt, args) for b in args.backends]
                    entry = {"scene": settings, "views": views, "ids": ids, "results": results}
                    print(f"\n## {describe(settings)}, {views} views, ids {ids} ({results[0]['keyframes']} keyframes)")
                    print(object_table(results))
                    for r in results:
                        print(f"{r['backend']} median s: " + ", ".join(f"{k} {v:.3g}" for k, v in r["median"].items()))
                        if r.get("geometry_sizes"):
                            print(f"{r['backend']} geometry sizes: " + ", ".join(f"{k} {v}" for k, v in r["geometry_sizes"].items()))
                        print(f"{r['backend']} relations ({len(r['relations'])}): " + "; ".join(x["text"] for x in r["relations"]))
                    if baseline_tree is not None and (args.baseline_scenes == "all" or not comparisons):
                        c = compare_geometry(baseline_tree, args.baseline_rev, commit, frames, args)
                        entry["baseline_comparison"] = c
                        comparisons.append({"scene": settings, "views": views, "ids": ids, **c})
                        print(f"\ngeometry steps/s vs {args.baseline_rev} at the same sizes")
                        print(comparison_table(comparisons[-1:]))
                    scenes.append(entry)

    print("\n## summary (means over objects)")
    print(
        format_table(
            [
                "scene",
                "views",
                "ids",
                "backend",
                "found",
                "CD cm",
                "F@5cm",
                "NC",
                "F observed",
                "unseen recall",
                "relations",
                "geom steps/s",
                "GPU peak MB",
                "total s",
            ],
            [
                [
                    s["scene"]["scene"],
                    s["views"],
                    s["ids"],
                    r["backend"],
                    r["scene"]["found"],
                    r["scene"]["chamfer_cm"],
                    r["scene"]["fscore"],
                    r["scene"]["normal_consistency"],
                    r["scene"]["observed_fscore"],
                    r["scene"]["unseen_recall"],
                    r["scene"]["relations"],
                    fmt(r["geometry_steps_per_s"]),
                    fmt(r["gpu_peak_mb"]),
                    r["median"]["total"],
                ]
                for s in scenes
                for r in s["results"]
            ],
        )
    )
    for name in dict.fromkeys(s["scene"]["scene"] for s in scenes):
        print(f"{name}: {describe(next(s['scene'] for s in scenes if s['scene']['scene'] == name))}")
    if comparisons:
        sizes = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in comparisons[0]["current"]["overrides"].items() if k in SIZE_KEYS)
        print(f"\n## geometry steps/s, {args.baseline_rev} vs this tree, same frames and sizes ({sizes})")
        print(comparison_table(comparisons))
    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"backends_{args.size}_{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "size": args.size,
                "source": source_revision(),
                "set": args.set,
                "scene_settings": {name: SCENES[name] for name in args.scene} if args.frames is None else {"frames": str(args.frames)},
                "device": str(device),
                "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
                "torch": torch.__version__,
                "machine": platform.platform(),
                "cpu_threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "scenes": scenes,
                "baseline": {"rev": args.baseline_rev, "commit": commit, "comparisons": comparisons} if commit else None,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the tsdf backend on simulated scenes: quality per object and scene, and time per stage.

    .venv/bin/python bench/bench_tsdf.py [--views 10 15] [--repeats 3] [--device cpu|cuda] [--out bench/results]

For every scene (views x ids kept/shuffled) it renders the room, runs the Mapper (keyframes, association,
fusion, meshing, scene graph) `--repeats` times, and reports per object: Chamfer distance (cm), F-score at
5 cm, precision, recall, normal consistency, the fraction of the object no view saw and the recall there;
per scene: the means, the number of objects found, and the median wall time of each stage. Writes one JSON
file per run. Quality is deterministic; times are medians over the repeats.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dprecon_ros.config import load_config  # noqa: E402
from dprecon_ros.core.evaluation import evaluate, format_table, mean_metrics, unseen_completeness  # noqa: E402
from dprecon_ros.core.export import to_trimesh  # noqa: E402
from dprecon_ros.core.mapper import Mapper  # noqa: E402
from dprecon_ros.sim.simulator import RoomSimulator, SimConfig  # noqa: E402


def run_scene(views: int, shuffle: bool, repeats: int, device: str, config_path: Path | None, samples: int) -> dict:
    with RoomSimulator(SimConfig(num_views=views, shuffle_ids=shuffle)) as sim:
        frames = [f for f, _ in sim.frames()]
        gt = sim.ground_truth()
    timings: list[dict[str, float]] = []
    recon = mapper = None
    for _ in range(repeats):
        config = load_config(config_path, {"tsdf.device": device})
        mapper = Mapper(config)
        t0 = time.perf_counter()
        for frame in frames:
            mapper.add_frame(frame)
        ingest = time.perf_counter() - t0
        recon = mapper.reconstruct()
        timings.append({"ingest": ingest, **recon.timings_s})
    pred = {o.object_id: (o.label, to_trimesh(o)) for o in recon.objects}
    scores = evaluate(pred, gt, samples=samples)
    objects = []
    for s in scores:
        unseen = unseen_completeness(pred[s.object_id][1] if s.object_id is not None else None, gt[s.gt_name], frames, samples=samples)
        objects.append(
            {
                "object": s.gt_name,
                "label": s.label,
                "id": s.object_id,
                **s.metrics.as_dict(),
                "unseen_fraction": unseen.unseen_fraction,
                "unseen_recall": unseen.unseen_recall,
            }
        )
    mean = mean_metrics(scores)
    mean["unseen_recall"] = statistics.fmean(o["unseen_recall"] for o in objects)
    stages = sorted({k for t in timings for k in t})
    return {
        "views": views,
        "shuffled_ids": shuffle,
        "keyframes": len(mapper.keyframes),
        "objects": objects,
        "scene": mean,
        "time_s_median": {k: statistics.median(t[k] for t in timings if k in t) for k in stages},
        "time_s_all": timings,
    }


def object_table(result: dict) -> str:
    rows = [
        [
            o["label"],
            o["id"] if o["id"] is not None else "-",
            o["chamfer_cm"],
            o["fscore"],
            o["precision"],
            o["recall"],
            o["normal_consistency"],
            o["unseen_fraction"],
            o["unseen_recall"],
        ]
        for o in result["objects"]
    ]
    m = result["scene"]
    rows.append(
        ["scene", f"{m['found']}/{m['total']}", m["chamfer_cm"], m["fscore"], "", "", m["normal_consistency"], "", m["unseen_recall"]]
    )
    return format_table(["object", "id", "CD cm", "F@5cm", "prec", "recall", "NC", "unseen", "unseen rec"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--views", type=int, nargs="+", default=[10, 15])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--config", type=Path, default=ROOT / "config" / "dprecon.yaml")
    p.add_argument("--samples", type=int, default=20000, help="surface samples per mesh for the metrics")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)

    results = []
    for views in args.views:
        for shuffle in (False, True):
            r = run_scene(views, shuffle, args.repeats, args.device, args.config, args.samples)
            results.append(r)
            print(f"\n## {views} views, ids {'shuffled per frame' if shuffle else 'kept'} ({r['keyframes']} keyframes)")
            print(object_table(r))
            print("median time (s): " + ", ".join(f"{k} {v:.2f}" for k, v in r["time_s_median"].items()))
    print("\n## summary")
    print(
        format_table(
            ["views", "ids", "found", "CD cm", "F@5cm", "NC", "unseen rec", "total s (median)"],
            [
                [
                    r["views"],
                    "shuffled" if r["shuffled_ids"] else "kept",
                    f"{r['scene']['found']}/{r['scene']['total']}",
                    r["scene"]["chamfer_cm"],
                    r["scene"]["fscore"],
                    r["scene"]["normal_consistency"],
                    r["scene"]["unseen_recall"],
                    r["time_s_median"]["total"],
                ]
                for r in results
            ],
        )
    )
    args.out.mkdir(parents=True, exist_ok=True)
    device = str(Mapper(load_config(args.config, {"tsdf.device": args.device})).backend.device)
    path = args.out / f"tsdf_{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(
        json.dumps(
            {
                "backend": "tsdf",
                "device": device,
                "torch": torch.__version__,
                "machine": platform.platform(),
                "cpu_threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

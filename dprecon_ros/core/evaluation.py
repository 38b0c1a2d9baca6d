"""Evaluate a reconstruction against ground-truth meshes: match objects, compute metrics, format tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from .metrics import SurfaceMetrics, compare_meshes


@dataclass
class ObjectScore:
    gt_name: str
    label: str
    object_id: int | None
    metrics: SurfaceMetrics


def load_ground_truth(directory: str | Path) -> dict[str, trimesh.Trimesh]:
    """`<instance>_<label>.ply` files -> {name: mesh}."""
    out = {}
    for path in sorted(Path(directory).glob("*.ply")):
        out[path.stem] = trimesh.load(path, force="mesh", process=False)
    return out


def gt_label(name: str) -> str:
    return name.split("_", 1)[1] if "_" in name else name


def match_objects(pred: dict[int, tuple[str, trimesh.Trimesh]], gt: dict[str, trimesh.Trimesh]) -> dict[str, int | None]:
    """Greedy one-to-one match of GT objects to predictions of the same label, nearest centroids first."""
    pairs = []
    for name, g in gt.items():
        for oid, (label, mesh) in pred.items():
            if label == gt_label(name) and len(mesh.faces):
                pairs.append((float(np.linalg.norm(mesh.vertices.mean(axis=0) - g.vertices.mean(axis=0))), name, oid))
    matched: dict[str, int | None] = {name: None for name in gt}
    used: set[int] = set()
    for _, name, oid in sorted(pairs):
        if matched[name] is None and oid not in used:
            matched[name] = oid
            used.add(oid)
    return matched


def evaluate(pred: dict[int, tuple[str, trimesh.Trimesh]], gt: dict[str, trimesh.Trimesh], threshold_m: float = 0.05,
             samples: int = 20000) -> list[ObjectScore]:
    """Per-GT-object metrics; an unmatched GT object scores as missing (F = 0)."""
    matched = match_objects(pred, gt)
    scores = []
    for name, mesh in gt.items():
        oid = matched[name]
        pm = pred[oid][1] if oid is not None else None
        scores.append(ObjectScore(name, gt_label(name), oid, compare_meshes(pm, mesh, threshold_m, samples)))
    return scores


def mean_metrics(scores: list[ObjectScore]) -> dict[str, float]:
    finite = [s.metrics for s in scores if np.isfinite(s.metrics.chamfer_cm)]
    return {
        "chamfer_cm": float(np.mean([m.chamfer_cm for m in finite])) if finite else float("inf"),
        "fscore": float(np.mean([s.metrics.fscore for s in scores])) if scores else 0.0,
        "normal_consistency": float(np.mean([m.normal_consistency for m in finite])) if finite else 0.0,
        "found": sum(s.object_id is not None for s in scores), "total": len(scores),
    }


def format_table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line, sep] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells])


def score_table(scores: list[ObjectScore]) -> str:
    rows = [[s.label, s.object_id if s.object_id is not None else "-", s.metrics.chamfer_cm, s.metrics.fscore,
             s.metrics.precision, s.metrics.recall, s.metrics.normal_consistency] for s in scores]
    mean = mean_metrics(scores)
    rows.append(["mean", f"{mean['found']}/{mean['total']}", mean["chamfer_cm"], mean["fscore"], "", "", mean["normal_consistency"]])
    return format_table(["object", "id", "CD cm", "F@5cm", "prec", "recall", "NC"], rows)

"""Evaluate a reconstruction against ground-truth meshes: match objects, compute metrics, format tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from dprecon_ros.core.geometry import invert
from dprecon_ros.core.types import Frame
from dprecon_ros.eval.metrics import SurfaceMetrics, compare_meshes, fscore, sample_surface

VISIBILITY_TOLERANCE_M = 0.02


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


def evaluate(
    pred: dict[int, tuple[str, trimesh.Trimesh]], gt: dict[str, trimesh.Trimesh], threshold_m: float = 0.05, samples: int = 20000
) -> list[ObjectScore]:
    """Per-GT-object metrics; an unmatched GT object scores as missing (F = 0)."""
    matched = match_objects(pred, gt)
    scores = []
    for name, mesh in gt.items():
        oid = matched[name]
        pm = pred[oid][1] if oid is not None else None
        scores.append(ObjectScore(name, gt_label(name), oid, compare_meshes(pm, mesh, threshold_m, samples)))
    return scores


def visible_in_any(points: np.ndarray, frames: list[Frame], tolerance_m: float = VISIBILITY_TOLERANCE_M) -> np.ndarray:
    """True for points some frame saw: inside its image, in front, and not behind its depth reading.

    Uses each frame's depth as the occlusion test, so frames should carry true (noise-free) depth and poses.
    """
    seen = np.zeros(len(points), dtype=bool)
    for f in frames:
        if f.depth_m is None:
            continue
        K = f.intrinsics
        T_cw = invert(f.T_world_camera)
        p = points @ T_cw[:3, :3].T + T_cw[:3, 3]
        z = p[:, 2]
        front = z > 1e-6
        u = np.full(len(points), -1)
        v = np.full(len(points), -1)
        u[front] = np.round(p[front, 0] / z[front] * K.fx + K.cx).astype(int)
        v[front] = np.round(p[front, 1] / z[front] * K.fy + K.cy).astype(int)
        inside = front & (u >= 0) & (u < K.width) & (v >= 0) & (v < K.height)
        idx = np.nonzero(inside)[0]
        d = f.depth_m[v[idx], u[idx]]
        seen[idx[np.isfinite(d) & (z[idx] <= d + tolerance_m)]] = True
    return seen


@dataclass
class UnseenScore:
    """How much of an object no view saw, how much of that part the reconstruction covers, and the F-score
    on what was seen (ground truth the views saw; predicted surface lying in observed space)."""

    unseen_fraction: float
    unseen_recall: float
    observed_fscore: float = 0.0


def unseen_completeness(
    pred: trimesh.Trimesh | None, gt: trimesh.Trimesh, frames: list[Frame], threshold_m: float = 0.05, samples: int = 20000
) -> UnseenScore:
    gt_points, _ = sample_surface(gt, samples, seed=1)
    seen = visible_in_any(gt_points, frames)
    unseen_fraction = float((~seen).mean())
    if pred is None or len(pred.faces) == 0:
        return UnseenScore(unseen_fraction, 0.0 if unseen_fraction else 1.0, 0.0)
    pred_points, _ = sample_surface(pred, samples, seed=2)
    d_gt, _ = cKDTree(pred_points).query(gt_points)
    unseen_recall = float((d_gt[~seen] < threshold_m).mean()) if unseen_fraction else 1.0
    pred_seen = visible_in_any(pred_points, frames)
    if not seen.any() or not pred_seen.any():
        return UnseenScore(unseen_fraction, unseen_recall, 0.0)
    d_pred, _ = cKDTree(gt_points).query(pred_points[pred_seen])
    precision = float((d_pred < threshold_m).mean())
    recall = float((d_gt[seen] < threshold_m).mean())
    return UnseenScore(unseen_fraction, unseen_recall, fscore(precision, recall))


def mean_metrics(scores: list[ObjectScore]) -> dict[str, float]:
    finite = [s.metrics for s in scores if np.isfinite(s.metrics.chamfer_cm)]
    return {
        "chamfer_cm": float(np.mean([m.chamfer_cm for m in finite])) if finite else float("inf"),
        "fscore": float(np.mean([s.metrics.fscore for s in scores])) if scores else 0.0,
        "normal_consistency": float(np.mean([m.normal_consistency for m in finite])) if finite else 0.0,
        "found": sum(s.object_id is not None for s in scores),
        "total": len(scores),
    }


def format_table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line, sep] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells])


def score_table(scores: list[ObjectScore]) -> str:
    rows = [
        [
            s.label,
            s.object_id if s.object_id is not None else "-",
            s.metrics.chamfer_cm,
            s.metrics.fscore,
            s.metrics.precision,
            s.metrics.recall,
            s.metrics.normal_consistency,
        ]
        for s in scores
    ]
    mean = mean_metrics(scores)
    rows.append(["mean", f"{mean['found']}/{mean['total']}", mean["chamfer_cm"], mean["fscore"], "", "", mean["normal_consistency"]])
    return format_table(["object", "id", "CD cm", "F@5cm", "prec", "recall", "NC"], rows)

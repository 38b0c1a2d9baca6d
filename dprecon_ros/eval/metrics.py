"""Reconstruction metrics as the paper reports them: Chamfer distance (cm), F-score at a threshold, normal
consistency, computed on points sampled uniformly from predicted and ground-truth surfaces."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree

DEFAULT_SAMPLES = 20000


@dataclass
class SurfaceMetrics:
    chamfer_cm: float
    accuracy_cm: float
    completeness_cm: float
    precision: float
    recall: float
    fscore: float
    normal_consistency: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def sample_surface(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform points and their face normals."""
    points, face_idx = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points), np.asarray(mesh.face_normals[face_idx])


def fscore(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall (0 when both are 0)."""
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def compare_surfaces(
    pred_points: np.ndarray, pred_normals: np.ndarray, gt_points: np.ndarray, gt_normals: np.ndarray, threshold_m: float = 0.05
) -> SurfaceMetrics:
    if len(pred_points) == 0:
        return SurfaceMetrics(float("inf"), float("inf"), float("inf"), 0.0, 0.0, 0.0, 0.0)
    d_pred, i_pred = cKDTree(gt_points).query(pred_points)  # accuracy: prediction -> GT
    d_gt, i_gt = cKDTree(pred_points).query(gt_points)  # completeness: GT -> prediction
    precision = float((d_pred < threshold_m).mean())
    recall = float((d_gt < threshold_m).mean())
    f = fscore(precision, recall)
    nc_pred = np.abs(np.sum(pred_normals * gt_normals[i_pred], axis=1)).mean()
    nc_gt = np.abs(np.sum(gt_normals * pred_normals[i_gt], axis=1)).mean()
    acc, comp = float(d_pred.mean()), float(d_gt.mean())
    return SurfaceMetrics(
        chamfer_cm=100 * (acc + comp) / 2,
        accuracy_cm=100 * acc,
        completeness_cm=100 * comp,
        precision=precision,
        recall=recall,
        fscore=f,
        normal_consistency=float((nc_pred + nc_gt) / 2),
    )


def compare_meshes(
    pred: trimesh.Trimesh | None, gt: trimesh.Trimesh, threshold_m: float = 0.05, samples: int = DEFAULT_SAMPLES
) -> SurfaceMetrics:
    gt_p, gt_n = sample_surface(gt, samples, seed=1)
    if pred is None or len(pred.faces) == 0:
        return compare_surfaces(np.zeros((0, 3)), np.zeros((0, 3)), gt_p, gt_n, threshold_m)
    pred_p, pred_n = sample_surface(pred, samples, seed=2)
    return compare_surfaces(pred_p, pred_n, gt_p, gt_n, threshold_m)

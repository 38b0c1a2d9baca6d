"""Provenance: which parts of a mesh the keyframes saw, and which the prior (or the hull) supplied.

A vertex's observedness is the visibility grid read just outside the surface, along its normal: the free
space in front of a surface a keyframe saw holds the transmittance that reached it (about 1), in front of a
surface no keyframe saw it holds about 0. An object's completeness is the observed share of its surface
area; the rest was generated.
"""

from __future__ import annotations

import numpy as np
import torch

from dprecon_ros.core.scene_model import VoxelGrid
from dprecon_ros.core.visibility import read_grid


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (faces wound counter-clockwise seen from outside)."""
    v = vertices[faces]
    face_n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    normals = np.zeros_like(vertices, dtype=np.float64)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_n)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def vertex_observedness(grid: VoxelGrid, vertices: np.ndarray, faces: np.ndarray, offset_cells: float) -> np.ndarray:
    """(N,) float32 in [0, 1]: the visibility grid `offset_cells` cells outside each vertex, along its normal."""
    if len(vertices) == 0:
        return np.zeros(0, np.float32)
    probe = vertices + vertex_normals(vertices, faces) * offset_cells * grid.voxel
    with torch.no_grad():
        values = read_grid(grid, torch.as_tensor(probe, dtype=torch.float32))
    return values.clamp(0.0, 1.0).numpy().astype(np.float32)


def observed_share(vertices: np.ndarray, faces: np.ndarray, observed: np.ndarray, threshold: float) -> float:
    """Share of the surface area whose vertices are, on average, observed at `threshold` or more."""
    if len(faces) == 0:
        return 0.0
    v = vertices[faces]
    area = np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1) / 2
    seen = observed[faces].mean(axis=1) >= threshold
    total = float(area.sum())
    return float(area[seen].sum() / total) if total > 0 else 0.0

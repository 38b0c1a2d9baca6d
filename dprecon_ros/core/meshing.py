"""Surface extraction and clean-up: marching cubes on observed voxels, largest component, simplification."""

from __future__ import annotations

import logging

import numpy as np
import trimesh
from skimage import measure

from dprecon_ros.core.fusion.tsdf import VolumeSpec

log = logging.getLogger("dprecon_ros")


def marching_cubes(tsdf: np.ndarray, weight: np.ndarray, spec: VolumeSpec, min_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of the TSDF over voxels observed with at least `min_weight` (vertices in metres)."""
    observed = weight >= max(min_weight, 1e-6)
    if observed.sum() < 8 or tsdf[observed].min() >= 0 or tsdf[observed].max() <= 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    try:
        verts, faces, _, _ = measure.marching_cubes(tsdf, level=0.0, mask=observed, allow_degenerate=False)
    except (ValueError, RuntimeError):
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    faces = faces[_observed_edges(verts, observed)[faces].all(axis=1)]
    used, inverse = np.unique(faces, return_inverse=True)
    verts, faces = verts[used], inverse.reshape(-1, 3)
    # With the default gradient_direction ("descent") skimage winds faces so that normals point towards
    # increasing values: out of the object for a signed distance that is negative inside.
    verts = spec.origin + (verts + 0.5) * spec.voxel_size
    return verts, faces.astype(np.int64)


def _observed_edges(verts_ijk: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """True for vertices whose grid edge joins two observed voxels.

    A zero crossing between the observed band (negative just below the surface) and an unobserved voxel
    (weight 0, TSDF +1) is not a surface: it would form an inner shell one truncation distance down.
    skimage's `mask` does not prevent this (it gates cubes, not edges), so such vertices are found here.
    """
    lo = np.clip(np.floor(verts_ijk).astype(np.int64), 0, np.array(observed.shape) - 1)
    hi = np.clip(np.ceil(verts_ijk).astype(np.int64), 0, np.array(observed.shape) - 1)
    return observed[lo[:, 0], lo[:, 1], lo[:, 2]] & observed[hi[:, 0], hi[:, 1], hi[:, 2]]


def drop_small_components(vertices: np.ndarray, faces: np.ndarray, min_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep connected components with at least `min_fraction` of the largest one's faces (1.0 = largest only).

    A fraction below one keeps parts that sparse views leave disconnected (table legs under an unseen
    table-top underside) while still removing floaters.
    """
    if len(faces) == 0:
        return vertices, faces
    labels = trimesh.graph.connected_component_labels(trimesh.graph.face_adjacency(faces), node_count=len(faces))
    sizes = np.bincount(labels)
    keep_faces = faces[sizes[labels] >= min_fraction * sizes.max()]
    used, inverse = np.unique(keep_faces, return_inverse=True)
    return vertices[used], inverse.reshape(-1, 3)


def simplify(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about `target_faces`; fast-simplification, else open3d, else unchanged."""
    if len(faces) <= target_faces:
        return vertices, faces
    try:
        import fast_simplification

        v, f = fast_simplification.simplify(vertices.astype(np.float32), faces.astype(np.int32), 1.0 - target_faces / len(faces))
        return v.astype(np.float64), f.astype(np.int64)
    except ImportError:
        pass
    try:
        import open3d as o3d

        mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(faces))
        mesh = mesh.simplify_quadric_decimation(target_faces)
        return np.asarray(mesh.vertices), np.asarray(mesh.triangles, dtype=np.int64)
    except ImportError:
        log.warning("no mesh simplifier installed (fast-simplification or open3d); mesh left at %d faces", len(faces))
        return vertices, faces


def clean_mesh(
    vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray, target_faces: int, min_component_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small components dropped and the rest simplified; each remaining vertex keeps the colour of the
    nearest input vertex (simplification moves vertices)."""
    if min_component_fraction > 0:
        v, f = drop_small_components(vertices, faces, min_component_fraction)
    else:
        v, f = vertices, faces
    v, f = simplify(v, f, target_faces)
    if len(v) == 0 or len(vertices) == 0:
        return v, f, np.zeros((len(v), 4), dtype=np.uint8)
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(vertices).query(v, workers=-1)
    return v, f, colours[nearest]


def sdf_grid_surface(values: np.ndarray, origin: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of a dense SDF grid (vertices in the grid's units); a positive border closes surfaces
    that the grid's faces cut."""
    padded = np.pad(values, 1, constant_values=voxel)
    if padded.min() >= 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    verts, faces, _, _ = measure.marching_cubes(padded, level=0.0, allow_degenerate=False)
    return origin + (verts - 1) * voxel, faces.astype(np.int64)

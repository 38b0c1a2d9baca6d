"""TSDF fusion of analytic depth maps of a sphere, and mesh extraction from it."""

import numpy as np
import pytest
import torch

from dprecon_ros.core.fusion.tsdf import TsdfVolume, VolumeSpec
from dprecon_ros.core.geometry import look_at
from dprecon_ros.core.meshing import drop_small_components, marching_cubes, simplify
from dprecon_ros.core.types import CameraIntrinsics

RADIUS = 0.2
# pixels (4 mm at 1 m) finer than voxels, as with a real RGB-D camera
K = CameraIntrinsics(240.0, 240.0, 159.5, 119.5, 320, 240)


def sphere_depth(T_world_camera: np.ndarray) -> np.ndarray:
    """Ray-cast z-depth of a sphere at the origin."""
    v, u = np.mgrid[0 : K.height, 0 : K.width].astype(np.float64)
    dirs = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1)
    d_world = dirs @ T_world_camera[:3, :3].T
    o = T_world_camera[:3, 3]
    a = (d_world**2).sum(-1)
    b = 2 * d_world @ o
    c = o @ o - RADIUS**2
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    return np.where(disc > 0, t, np.nan).astype(np.float32)  # t is z-depth since dirs have z = 1


def views(n: int = 8) -> list[np.ndarray]:
    out = []
    for k in range(n):
        a = 2 * np.pi * k / n
        out.append(look_at(np.array([np.cos(a), np.sin(a), 0.3]), np.zeros(3)))
    return out


@pytest.fixture(scope="module")
def fused():
    spec = VolumeSpec.around(np.full(3, -0.3), np.full(3, 0.3), 0.01, 10**6)
    vol = TsdfVolume(spec, truncation_voxels=4.0, device=torch.device("cpu"))
    for T in views():
        depth = sphere_depth(T)
        vol.integrate(depth, np.full((K.height, K.width, 3), 200, np.uint8), K, T, np.isfinite(depth), free_space_weight=0.5)
    return spec, vol


def test_fused_sdf_matches_the_sphere(fused):
    spec, vol = fused
    tsdf, weight, _ = vol.grids()
    centres = vol.voxel_centers(0, spec.num_voxels).numpy().reshape(*tsdf.shape, 3)
    true = np.linalg.norm(centres, axis=-1) - RADIUS
    near = (weight > 0) & (np.abs(true) < 0.02)
    assert near.sum() > 1000
    err = np.abs(tsdf[near] * vol.trunc - true[near])
    # projective distances overestimate off the surface ray, so allow a voxel; the sign must be right
    assert np.median(err) < spec.voxel_size
    assert (np.sign(tsdf[near & (np.abs(true) > 0.005)]) == np.sign(true[near & (np.abs(true) > 0.005)])).mean() > 0.95


def test_mesh_lies_on_the_sphere_with_outward_normals(fused):
    spec, vol = fused
    tsdf, weight, _ = vol.grids()
    verts, faces = marching_cubes(tsdf, weight, spec, min_weight=0.5)
    assert len(faces) > 500
    r = np.linalg.norm(verts, axis=1)
    assert np.median(np.abs(r - RADIUS)) < 0.005 and np.percentile(np.abs(r - RADIUS), 95) < 0.01
    tri = verts[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = (normals * tri.mean(axis=1)).sum(axis=1) > 0
    assert outward.mean() > 0.99


def test_small_components_are_dropped_and_simplify_keeps_shape(fused):
    spec, vol = fused
    tsdf, weight, _ = vol.grids()
    verts, faces = marching_cubes(tsdf, weight, spec, min_weight=0.5)
    speck_v = np.array([[1.0, 1, 1], [1.01, 1, 1], [1, 1.01, 1]])
    all_v = np.vstack([verts, speck_v])
    all_f = np.vstack([faces, np.array([[0, 1, 2]]) + len(verts)])
    v2, f2 = drop_small_components(all_v, all_f, min_fraction=0.05)
    assert len(f2) >= 0.9 * len(faces) and np.linalg.norm(v2, axis=1).max() < 0.5
    v3, f3 = simplify(v2, f2, target_faces=300)
    assert len(f3) <= 400
    assert np.percentile(np.abs(np.linalg.norm(v3, axis=1) - RADIUS), 95) < 0.015

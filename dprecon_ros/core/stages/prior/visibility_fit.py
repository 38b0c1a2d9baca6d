"""The visibility grid of a fitted scene, and the object boxes it grows.

Keyframe rays (every n-th pixel) are rendered through the fitted composite scene; the transmittance along each
ray, resampled every half cell, raises the grid (core/visibility.py); the grid is then smoothed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dprecon_ros.core.fields.composite import CompositeScene, laplace_cdf_density
from dprecon_ros.core.render.rays import build_ray_pool
from dprecon_ros.core.render.sampling import composite_weights, first_surface, guided_samples
from dprecon_ros.core.render.volume import RayBatch, sdf_along, sphere_bounds
from dprecon_ros.core.scene_model import VoxelGrid
from dprecon_ros.core.types import Keyframe, SceneNormalisation
from dprecon_ros.core.visibility import dense_transmittance, empty_grid, gaussian_smooth, splat_max

RAYS_PER_CHUNK = 4096
SURFACE_BAND_CELLS = 2.0  # fine samples within this many grid cells of a measured or traced surface


@torch.no_grad()
def fit_visibility_grid(
    scene: CompositeScene,
    keyframes: list[Keyframe],
    object_ids: list[int],
    norm: SceneNormalisation,
    bounds: tuple[np.ndarray, np.ndarray],
    resolution: int,
    rays_per_image: int,
    samples: int,
    sigma_cells: float,
    kernel: int,
    min_depth_m: float,
    device: torch.device,
    check_cancelled: Callable[[], None] = lambda: None,
) -> VoxelGrid:
    grid = empty_grid(bounds[0], bounds[1], resolution)
    values = torch.zeros(grid.values.shape, device=device)
    origin = torch.as_tensor(grid.origin, dtype=torch.float32, device=device)
    center = torch.as_tensor(norm.center, dtype=torch.float32, device=device)
    step = grid.voxel / 2 / norm.scale  # half a cell, scene units
    generator = torch.Generator(device=device).manual_seed(0)
    for kf in keyframes:
        check_cancelled()
        h, w = kf.frame.instance.shape
        stride = max(1, int(np.sqrt(h * w / rays_per_image)))
        pool = build_ray_pool([kf], object_ids, norm, device, min_depth_m, stride)
        for start in range(0, len(pool), RAYS_PER_CHUNK):
            o, d = pool.origins[start : start + RAYS_PER_CHUNK], pool.directions[start : start + RAYS_PER_CHUNK]
            dist = pool.distance[start : start + RAYS_PER_CHUNK]
            near, far = sphere_bounds(o, d, min_near=pool.near)
            rays = RayBatch(o, d, near, far)
            traced = first_surface(sdf_along(scene, rays), near, far, samples)
            guide = torch.where(torch.isfinite(dist), torch.nan_to_num(dist), traced)
            t = guided_samples(near, far, guide, samples // 2, samples - samples // 2, SURFACE_BAND_CELLS * 2 * step, generator)
            sdf = scene.scene_sdf(rays.at(t).reshape(-1, 3))[0].reshape(t.shape)
            delta = torch.cat([t[:, 1:] - t[:, :-1], torch.zeros_like(t[:, :1])], dim=1)
            _, trans = composite_weights(laplace_cdf_density(sdf, scene.density.beta), delta)
            fine_t, fine_T = dense_transmittance(t, trans, step)
            points = (o[:, None] + d[:, None] * fine_t[..., None]).reshape(-1, 3) * norm.scale + center
            splat_max(values, origin, grid.voxel, points, fine_T.reshape(-1))
    grid.values = gaussian_smooth(values, sigma_cells, kernel).cpu().numpy()
    return grid


def grow_box(
    lo: np.ndarray,
    hi: np.ndarray,
    grid: VoxelGrid,
    threshold: float,
    max_m: float,
    may_grow: Callable[[int, int], bool] = lambda axis, sign: True,
) -> tuple[np.ndarray, np.ndarray]:
    """The box grown, a cell at a time, into neighbouring slabs the keyframes never saw (mean visibility below
    `threshold`), at most `max_m` per side, on the faces `may_grow(axis, sign)` allows. Downwards too: a box on
    the floor seen only from above over a table has its sides hidden, while a floor seen around an object stops
    the growth by being seen."""
    lo, hi = np.array(lo, float), np.array(hi, float)
    cell = grid.voxel
    for axis in range(3):
        for sign in (-1, 1):
            if not may_grow(axis, sign):
                continue
            grown = 0.0
            while grown + cell <= max_m + 1e-9:
                slab_lo, slab_hi = lo.copy(), hi.copy()
                if sign < 0:
                    slab_lo[axis], slab_hi[axis] = lo[axis] - cell, lo[axis]
                else:
                    slab_lo[axis], slab_hi[axis] = hi[axis], hi[axis] + cell
                if mean_in_box(grid, slab_lo, slab_hi) >= threshold:
                    break
                if sign < 0:
                    lo[axis] -= cell
                else:
                    hi[axis] += cell
                grown += cell
    return lo, hi


def mean_in_box(grid: VoxelGrid, lo: np.ndarray, hi: np.ndarray) -> float:
    """Mean grid value over the nodes inside lo..hi (the nearest node where the box is thinner than a cell);
    outside the grid counts as unseen (0)."""
    shape = np.array(grid.values.shape)
    a = np.floor((lo - grid.origin) / grid.voxel + 0.5).astype(int)
    b = np.maximum(np.floor((hi - grid.origin) / grid.voxel + 0.5).astype(int), a)
    if np.any(b < 0) or np.any(a >= shape):
        return 0.0
    a, b = np.clip(a, 0, shape - 1), np.clip(b, 0, shape - 1)
    return float(grid.values[a[0] : b[0] + 1, a[1] : b[1] + 1, a[2] : b[2] + 1].mean())

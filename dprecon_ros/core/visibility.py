"""The visibility grid: how much of each point of the scene the keyframes saw (DP-Recon, "Visibility grid").

Each cell holds at least the transmittance that any keyframe ray reached there, rendered through the fitted
scene: the free space in front of an observed surface reads 1, the inside and the hidden back of an object
read 0. The paper fits the grid by minimising mean(max(T - v, 0)) from zero; here the least grid that meets
that constraint under trilinear reads is written directly (every sample raises its cell's eight nodes to its
T), then smoothed with a small Gaussian as the paper does. Rendered along a ray it gives the per-pixel w_vis
that splits the loss: L = L_SDS * (1 - w_vis) + L_obs * w_vis.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dprecon_ros.core.scene_model import VoxelGrid

CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def empty_grid(lo: np.ndarray, hi: np.ndarray, resolution: int) -> VoxelGrid:
    """Zeros over the box lo..hi (map frame), `resolution` cells along its longest side."""
    size = np.maximum(np.asarray(hi, float) - np.asarray(lo, float), 1e-6)
    voxel = float(size.max()) / resolution
    shape = tuple(int(n) for n in np.ceil(size / voxel).astype(int) + 1)
    return VoxelGrid(np.asarray(lo, float).copy(), voxel, np.zeros(shape, np.float32))


def splat_max(values: torch.Tensor, origin: torch.Tensor, voxel: float, points: torch.Tensor, transmittance: torch.Tensor) -> None:
    """Raise the eight nodes around each point (N, 3, map frame) to at least its transmittance (N,), in place:
    the least grid whose trilinear read at every point is at least the point's T."""
    shape = torch.tensor(values.shape, device=points.device)
    base = torch.floor((points - origin) / voxel).long()
    inside = ((base >= 0) & (base < shape - 1)).all(dim=1)
    base, t = base[inside], transmittance[inside].to(values.dtype)
    strides = torch.tensor([values.shape[1] * values.shape[2], values.shape[2], 1], device=points.device)
    flat = values.view(-1)
    for corner in CORNERS.to(points.device):
        flat.scatter_reduce_(0, ((base + corner) * strides).sum(dim=1), t, reduce="amax")


def gaussian_smooth(values: torch.Tensor, sigma_cells: float, kernel: int) -> torch.Tensor:
    """Separable Gaussian blur of a (X, Y, Z) grid, borders replicated."""
    if sigma_cells <= 0 or kernel <= 1:
        return values
    r = kernel // 2
    x = torch.arange(-r, r + 1, device=values.device, dtype=values.dtype)
    w = torch.exp(-(x**2) / (2 * sigma_cells**2))
    w = w / w.sum()
    out = values[None, None]
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = len(w)
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        out = F.conv3d(F.pad(out, pad, mode="replicate"), w.view(shape))
    return out[0, 0]


def read_grid(grid: VoxelGrid, points: torch.Tensor) -> torch.Tensor:
    """Trilinear read of the grid at points (N, 3, map frame); 0 outside it (nothing there was seen)."""
    key = str(points.device)
    copied = grid.device_copies.get(key)
    if copied is None or copied[0] is not grid.values:  # one copy per device, redone when the values are replaced
        copied = grid.device_copies[key] = (grid.values, torch.as_tensor(grid.values, device=points.device, dtype=torch.float32))
    values = copied[1]
    origin = torch.as_tensor(grid.origin, device=points.device, dtype=torch.float32)
    u = (points.float() - origin) / grid.voxel
    shape = torch.tensor(values.shape, device=points.device, dtype=torch.float32)
    # grid_sample wants (x, y, z) = (last, middle, first) axis, normalised to [-1, 1] over node centres
    g = (u / (shape - 1) * 2 - 1).flip(-1).view(1, -1, 1, 1, 3)
    return F.grid_sample(values[None, None], g, mode="bilinear", padding_mode="zeros", align_corners=True).view(-1)


def ray_visibility(weights: torch.Tensor, sample_visibility: torch.Tensor, final_transmittance: torch.Tensor) -> torch.Tensor:
    """w_vis of rays (R,): the grid volume-rendered along each ray (weights (R, S) times the grid at the samples),
    and for the light that passes through, the mean visibility of the space it crossed: empty space the
    keyframes saw as empty reads as seen, so the prior cannot grow surfaces there."""
    crossed = sample_visibility.mean(dim=1)
    return ((weights * sample_visibility).sum(dim=1) + final_transmittance * crossed).clamp(0.0, 1.0)


def dense_transmittance(t: torch.Tensor, trans: torch.Tensor, step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Transmittance (R, S) at sorted sample distances t, resampled every `step` along each ray (piecewise
    linear in t): free space between coarse samples must reach the grid as well. Returns (t', T'), (R, S')."""
    span = (t[:, -1] - t[:, 0]).max().clamp(min=step)
    count = int(torch.ceil(span / step).item()) + 1
    fine = t[:, :1] + torch.arange(count, device=t.device, dtype=t.dtype)[None] * step
    fine = torch.minimum(fine, t[:, -1:])
    idx = torch.searchsorted(t.contiguous(), fine.contiguous()).clamp(1, t.shape[1] - 1)
    t0, t1 = t.gather(1, idx - 1), t.gather(1, idx)
    T0, T1 = trans.gather(1, idx - 1), trans.gather(1, idx)
    a = ((fine - t0) / (t1 - t0).clamp(min=1e-12)).clamp(0, 1)
    return fine, T0 + a * (T1 - T0)

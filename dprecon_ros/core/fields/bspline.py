"""Quadratic B-spline interpolation of dense grids, with its analytic spatial gradient.

Trilinear interpolation has a gradient that jumps at every cell face, so rendered normals show the grid and an
SDS gradient on a normal map turns into per-cell speckle. The quadratic B-spline is C1: values and gradients
are continuous everywhere, it reproduces linear functions exactly (a plane's SDF keeps |grad| = 1), and it
reads 27 nodes instead of 8. The gradient is linear in the grid values, so normals and the eikonal loss need
no double backward.

Node i sits at voxel coordinate i. A point u reads nodes round(u)-1 .. round(u)+1 per axis, so it must lie in
[0.5, n - 1.5] along an axis of n nodes; callers clamp to that domain.
"""

from __future__ import annotations

import torch

_OFFSETS = torch.tensor([-1, 0, 1], dtype=torch.long)


def domain(shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The voxel-coordinate range (lo, hi) a grid of `shape` can be read on."""
    hi = torch.tensor(shape, dtype=torch.float32, device=device) - 1.5
    return torch.full_like(hi, 0.5), hi


def _axis_weights(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per axis: node indices (N, 3, 3), weights (N, 3, 3) and their derivatives (N, 3, 3) [point, axis, node]."""
    center = torch.floor(u + 0.5)
    t = (u - center)[..., None]  # in [-0.5, 0.5]
    w = torch.cat([0.5 * (0.5 - t) ** 2, 0.75 - t**2, 0.5 * (0.5 + t) ** 2], dim=-1)
    dw = torch.cat([t - 0.5, -2 * t, t + 0.5], dim=-1)
    idx = center.long()[..., None] + _OFFSETS.to(u.device)
    return idx, w, dw


def bspline(grids: torch.Tensor, which: torch.Tensor | None, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Read scalar grids `grids` (G, X, Y, Z) at voxel coordinates `u` (N, 3) inside the domain, point n from
    grid `which[n]` (all from grid 0 when None). Returns values (N,) and d value / d u (N, 3)."""
    G, X, Y, Z = grids.shape
    idx, w, dw = _axis_weights(u)
    # on the domain's upper edge the third node has weight zero: keep its index in the grid
    idx = torch.minimum(idx, torch.tensor([X - 1, Y - 1, Z - 1], device=u.device)[None, :, None])
    base = 0 if which is None else which[:, None, None, None] * (X * Y * Z)
    flat = base + (idx[:, 0, :, None, None] * Y + idx[:, 1, None, :, None]) * Z + idx[:, 2, None, None, :]  # (N, 3, 3, 3)
    nodes = grids.reshape(-1)[flat.reshape(len(u), 27)].reshape(-1, 3, 3, 3)
    wx, wy, wz = w[:, 0, :, None, None], w[:, 1, None, :, None], w[:, 2, None, None, :]
    dx, dy, dz = dw[:, 0, :, None, None], dw[:, 1, None, :, None], dw[:, 2, None, None, :]
    value = (nodes * (wx * wy * wz)).sum((1, 2, 3))
    grad = torch.stack(
        [(nodes * (dx * wy * wz)).sum((1, 2, 3)), (nodes * (wx * dy * wz)).sum((1, 2, 3)), (nodes * (wx * wy * dz)).sum((1, 2, 3))],
        dim=-1,
    )
    return value, grad

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

import functools

import torch

_OFFSETS = torch.tensor([-1, 0, 1], dtype=torch.long)


@functools.lru_cache(maxsize=256)
def domain(shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The voxel-coordinate range (lo, hi) a grid of `shape` can be read on (cached: no host-to-device copy
    per call)."""
    hi = torch.tensor(shape, dtype=torch.float32, device=device) - 1.5
    return torch.full_like(hi, 0.5), hi


@functools.lru_cache(maxsize=256)
def _constants(shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stencil offsets and the last node index per axis, on `device`."""
    return _OFFSETS.to(device), torch.tensor([n - 1 for n in shape], device=device)[None, :, None]


def _axis_weights(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per axis: the middle node (N, 3, 1), weights (N, 3, 3) and their derivatives (N, 3, 3) [point, axis, node]."""
    center = torch.floor(u + 0.5)
    t = (u - center)[..., None]  # in [-0.5, 0.5]
    w = torch.cat([0.5 * (0.5 - t) ** 2, 0.75 - t**2, 0.5 * (0.5 + t) ** 2], dim=-1)
    dw = torch.cat([t - 0.5, -2 * t, t + 0.5], dim=-1)
    return center.long()[..., None], w, dw


class _StencilRead(torch.autograd.Function):
    """nodes (N, 27) read from a flat grid, contracted with per-node weights (N, 27, C). Backward scatters
    into the grid only: read positions are constants (samples are drawn without gradient), so autograd
    keeps no per-node temporaries and the backward is one index_add."""

    @staticmethod
    def forward(ctx, flat_grid: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index, weights)
        ctx.size = flat_grid.numel()
        return torch.bmm(flat_grid[index][:, None, :], weights)[:, 0]

    @staticmethod
    def backward(ctx, upstream: torch.Tensor):
        index, weights = ctx.saved_tensors
        contributions = torch.bmm(weights, upstream[:, :, None])[..., 0]
        grid = torch.zeros(ctx.size, dtype=contributions.dtype, device=contributions.device)
        return grid.index_add_(0, index.reshape(-1), contributions.reshape(-1)), None, None


def bspline(grids: torch.Tensor, which: torch.Tensor | None, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Read scalar grids `grids` (G, X, Y, Z) at voxel coordinates `u` (N, 3) inside the domain, point n from
    grid `which[n]` (all from grid 0 when None). Returns values (N,) and d value / d u (N, 3); gradients flow
    to the grid values, not to `u`."""
    G, X, Y, Z = grids.shape
    with torch.no_grad():
        center, w, dw = _axis_weights(u.detach())
        offsets, last = _constants((X, Y, Z), u.device)
        # on the domain's upper edge the third node has weight zero: keep its index in the grid
        idx = torch.minimum(center + offsets, last)
        base = 0 if which is None else which[:, None, None, None] * (X * Y * Z)
        flat = base + (idx[:, 0, :, None, None] * Y + idx[:, 1, None, :, None]) * Z + idx[:, 2, None, None, :]  # (N, 3, 3, 3)
        wx, wy, wz = w[:, 0, :, None, None], w[:, 1, None, :, None], w[:, 2, None, None, :]
        dx, dy, dz = dw[:, 0, :, None, None], dw[:, 1, None, :, None], dw[:, 2, None, None, :]
        wyz = wy * wz
        weights = torch.stack([wx * wyz, dx * wyz, wx * dy * wz, wx * wy * dz], dim=-1).reshape(len(u), 27, 4)
    out = _StencilRead.apply(grids.reshape(-1), flat.reshape(len(u), 27), weights.to(grids.dtype))
    return out[:, 0], out[:, 1:]

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


# which factor (0: weight, 1: its derivative) each axis contributes to [value, d/dx, d/dy, d/dz]
_KINDS = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])


def _stencil_weights(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The middle node per axis (N, 3, 1) and the weights (N, 4, 27) of the 27 nodes for the value and the
    three derivatives, built as one outer product (few, large kernels rather than many small ones)."""
    center = torch.floor(u + 0.5)
    t = (u - center)[..., None]  # (N, 3, 1), in [-0.5, 0.5]
    factors = torch.stack(
        [torch.cat([0.5 * (0.5 - t) ** 2, 0.75 - t**2, 0.5 * (0.5 + t) ** 2], dim=-1), torch.cat([t - 0.5, -2 * t, t + 0.5], dim=-1)],
        dim=1,
    )  # (N, kind, axis, node)
    kinds = _KINDS.to(u.device)
    x = factors[:, kinds[:, 0], 0]  # (N, 4, 3)
    y = factors[:, kinds[:, 1], 1]
    z = factors[:, kinds[:, 2], 2]
    weights = (x[..., :, None, None] * y[..., None, :, None] * z[..., None, None, :]).reshape(len(u), 4, 27)
    return center.long()[..., None], weights


class _StencilRead(torch.autograd.Function):
    """nodes (N, 27) read from a flat grid, contracted with per-node weights (N, C, 27). Backward scatters
    into the grid only: read positions are constants (samples are drawn without gradient), so autograd
    keeps no per-node temporaries and the backward is one index_add."""

    @staticmethod
    def forward(ctx, flat_grid: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index, weights)
        ctx.size = flat_grid.numel()
        return torch.bmm(weights, flat_grid[index][:, :, None])[..., 0]  # (N, 4)

    @staticmethod
    def backward(ctx, upstream: torch.Tensor):
        index, weights = ctx.saved_tensors
        contributions = torch.bmm(upstream[:, None, :], weights)[:, 0]  # (N, 27)
        grid = torch.zeros(ctx.size, dtype=contributions.dtype, device=contributions.device)
        return grid.index_add_(0, index.reshape(-1), contributions.reshape(-1)), None, None


def bspline(grids: torch.Tensor, which: torch.Tensor | None, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Read scalar grids `grids` (G, X, Y, Z) at voxel coordinates `u` (N, 3) inside the domain, point n from
    grid `which[n]` (all from grid 0 when None). Returns values (N,) and d value / d u (N, 3); gradients flow
    to the grid values, not to `u`."""
    G, X, Y, Z = grids.shape
    with torch.no_grad():
        center, weights = _stencil_weights(u.detach())
        offsets, last = _constants((X, Y, Z), u.device)
        # on the domain's upper edge the third node has weight zero: keep its index in the grid
        idx = torch.minimum(center + offsets, last)
        base = 0 if which is None else which[:, None, None, None] * (X * Y * Z)
        flat = base + (idx[:, 0, :, None, None] * Y + idx[:, 1, None, :, None]) * Z + idx[:, 2, None, None, :]  # (N, 3, 3, 3)
    out = _StencilRead.apply(grids.reshape(-1), flat.reshape(len(u), 27), weights.to(grids.dtype))
    return out[:, 0], out[:, 1:]

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


@functools.lru_cache(maxsize=256)
def domain(shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The voxel-coordinate range (lo, hi) a grid of `shape` can be read on (cached: no host-to-device copy
    per call)."""
    hi = torch.tensor(shape, dtype=torch.float32, device=device) - 1.5
    return torch.full_like(hi, 0.5), hi


@functools.lru_cache(maxsize=256)
def _constants(shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a grid of `shape`: flat-index offsets of the 27 stencil nodes from the middle one (x-major, as the
    grid is stored), the highest middle node per axis, and each axis' stride in the flat grid."""
    X, Y, Z = shape
    strides = torch.tensor([Y * Z, Z, 1], device=device)
    step = torch.arange(-1, 2, device=device)
    offsets = (step[:, None, None] * strides[0] + step[None, :, None] * strides[1] + step[None, None, :]).reshape(27)
    return offsets, torch.tensor([n - 2 for n in shape], dtype=torch.float32, device=device), strides


def _axis_factors(u: torch.Tensor, top: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The middle node per axis (N, 3) and the per-axis factors (N, 2, 3, 3) [weight or derivative, axis,
    node]. The weights of a point are their outer products, so neither forward nor backward ever builds
    the 4 x 27 weights of a point.

    At the domain's upper edge u = n - 1.5 the middle node n - 1 would read a node past the grid with
    weight zero; the middle node n - 2 with t = 0.5 gives the same value and slope, so the middle node is
    capped there."""
    center = torch.minimum(torch.floor(u + 0.5), top)
    t = (u - center)[..., None]  # (N, 3, 1), in [-0.5, 0.5]
    weight = torch.cat([0.5 * (0.5 - t) ** 2, 0.75 - t * t, 0.5 * (0.5 + t) ** 2], dim=-1)
    slope = torch.cat([t - 0.5, -2 * t, t + 0.5], dim=-1)
    return center.long(), torch.stack([weight, slope], dim=1)


class _StencilRead(torch.autograd.Function):
    """Value and gradient [v, dv/dx, dv/dy, dv/dz] (N, 4) of a flat grid read at stencil nodes (N, 27) with
    separable per-axis factors (N, 2, 3, 3), contracted one axis at a time. Backward scatters into the grid
    only: read positions are constants (samples are drawn without gradient), so autograd keeps no per-node
    temporaries and the backward is one index_add."""

    @staticmethod
    def forward(ctx, flat_grid: torch.Tensor, index: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index, factors)
        ctx.size = flat_grid.numel()
        n = len(index)
        nodes = flat_grid[index].view(n, 9, 3)  # [(x, y), z]
        along_z = torch.bmm(nodes, factors[:, :, 2].transpose(1, 2))  # (N, 9, 2): [(x, y), z weight/slope]
        along_y = torch.bmm(along_z.view(n, 3, 3, 2).transpose(2, 3).reshape(n, 6, 3), factors[:, :, 1].transpose(1, 2))
        along_x = torch.bmm(factors[:, :, 0], along_y.view(n, 3, 4))  # (N, x kind, (z kind, y kind))
        return torch.stack([along_x[:, 0, 0], along_x[:, 1, 0], along_x[:, 0, 1], along_x[:, 0, 2]], dim=1)

    @staticmethod
    def backward(ctx, upstream: torch.Tensor):
        index, factors = ctx.saved_tensors
        n = len(index)
        (wx, wy, wz), (sx, sy, sz) = factors[:, 0].unbind(1), factors[:, 1].unbind(1)
        g = upstream
        # d out / d node = (g_v wx + g_x sx) (wy wz) + wx (g_y sy wz + g_z wy sz): two outer products
        x_weighted = g[:, 0:1] * wx + g[:, 1:2] * sx
        yz = (wy[:, :, None] * wz[:, None, :]).view(n, 1, 9)
        yz_slopes = ((g[:, 2:3] * sy)[:, :, None] * wz[:, None, :] + (g[:, 3:4] * wy)[:, :, None] * sz[:, None, :]).view(n, 1, 9)
        contributions = (x_weighted[:, :, None] * yz + wx[:, :, None] * yz_slopes).view(n, 27)
        grid = torch.zeros(ctx.size, dtype=contributions.dtype, device=contributions.device)
        return grid.index_add_(0, index.reshape(-1), contributions.reshape(-1)), None, None


def bspline(grids: torch.Tensor, which: torch.Tensor | None, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Read scalar grids `grids` (G, X, Y, Z) at voxel coordinates `u` (N, 3) inside the domain, point n from
    grid `which[n]` (all from grid 0 when None). Returns values (N,) and d value / d u (N, 3); gradients flow
    to the grid values, not to `u`."""
    G, X, Y, Z = grids.shape
    with torch.no_grad():
        offsets, top, strides = _constants((X, Y, Z), u.device)
        center, factors = _axis_factors(u.detach(), top)
        middle = (center * strides).sum(dim=1)
        if which is not None:
            middle = middle + which * (X * Y * Z)
        index = middle[:, None] + offsets
    out = _StencilRead.apply(grids.reshape(-1), index, factors.to(grids.dtype))
    return out[:, 0], out[:, 1:]

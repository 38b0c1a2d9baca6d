"""Trilinear interpolation of a dense grid with its analytic spatial gradient.

The gradient of trilinear interpolation is linear in the grid values, so normals and the eikonal loss need
no double backward (grid_sample offers none for its coordinates) and no finite differences.
"""

from __future__ import annotations

import torch

# corner offsets (8, 3) in the order the weights below are built
_CORNERS = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=torch.long)


def trilinear(grid: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `grid` (C, X, Y, Z) at continuous voxel coordinates `u` (N, 3), clamped to the grid.

    Returns values (N, C) and d value / d u (N, C, 3). Points outside the grid read the nearest face value
    with a zero gradient along the clamped axes.
    """
    C = grid.shape[0]
    size = torch.tensor(grid.shape[1:], device=u.device)
    lo = torch.clamp(torch.floor(u).long(), min=0)
    lo = torch.minimum(lo, size - 2)
    f = u - lo.to(u.dtype)
    inside = (f >= 0) & (f <= 1)
    f = f.clamp(0.0, 1.0)
    idx = lo[:, None, :] + _CORNERS.to(u.device)[None]  # (N, 8, 3)
    flat = (idx[..., 0] * size[1] + idx[..., 1]) * size[2] + idx[..., 2]
    corners = grid.reshape(C, -1)[:, flat.reshape(-1)].reshape(C, -1, 8).permute(1, 0, 2)  # (N, C, 8)
    c = _CORNERS.to(u.device).to(u.dtype)  # (8, 3)
    fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    wx = c[None, :, 0] * fx + (1 - c[None, :, 0]) * (1 - fx)  # (N, 8)
    wy = c[None, :, 1] * fy + (1 - c[None, :, 1]) * (1 - fy)
    wz = c[None, :, 2] * fz + (1 - c[None, :, 2]) * (1 - fz)
    sx = (2 * c[None, :, 0] - 1) * inside[:, 0:1]
    sy = (2 * c[None, :, 1] - 1) * inside[:, 1:2]
    sz = (2 * c[None, :, 2] - 1) * inside[:, 2:3]
    value = (corners * (wx * wy * wz)[:, None, :]).sum(-1)
    grad = torch.stack(
        [
            (corners * (sx * wy * wz)[:, None, :]).sum(-1),
            (corners * (wx * sy * wz)[:, None, :]).sum(-1),
            (corners * (wx * wy * sz)[:, None, :]).sum(-1),
        ],
        dim=-1,
    )
    return value, grad

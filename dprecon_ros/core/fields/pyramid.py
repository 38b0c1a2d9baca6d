"""Multi-resolution SDF grids: a field is the sum of quadratic-B-spline grids from coarse to fine.

Why a pyramid: an update at one point moves the coarse levels too, so sparse gradients (the prior's normal
maps of unseen sides, a few rays a step) change the shape smoothly instead of cell by cell, while the finest
level keeps the detail the TSDF measured. With B-spline reads the normals are continuous across cells.
Level l has cells 2^l times the finest cell, one coarse node beyond the finest level's origin and extent on
every side (so it covers the finest level's whole domain); the finest level is level 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dprecon_ros.core.fields.box import BoxedModule, GridBox
from dprecon_ros.core.fields.bspline import bspline, domain

MIN_LEVEL_NODES = 4  # a coarser level than this holds no shape


def level_shapes(shape: tuple[int, int, int], levels: int) -> list[tuple[int, int, int]]:
    """Node counts of each level, finest first; stops early where a level would be smaller than useful."""
    shapes = [tuple(shape)]
    for level in range(1, levels):
        coarse = tuple(int(math.ceil((n - 1) / 2**level)) + 3 for n in shape)
        if min(coarse) < MIN_LEVEL_NODES:
            break
        shapes.append(coarse)
    return shapes


def pyramid_read(levels: list[torch.Tensor], which: torch.Tensor | None, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the levels (each (G, X_l, Y_l, Z_l)) at finest-level voxel coordinates `u` (N, 3), which must lie
    in the finest level's domain. Returns values (N,) and d value / d u (N, 3)."""
    value = torch.zeros(len(u), device=u.device, dtype=u.dtype)
    grad = torch.zeros_like(u)
    for level, grid in enumerate(levels):
        factor = 2.0**level
        lo, hi = domain(tuple(grid.shape[1:]), u.device)
        ul = u / factor + (1.0 if level else 0.0)  # coarse nodes start one coarse cell before the finest origin
        clamped = torch.minimum(torch.maximum(ul, lo), hi)
        v, g = bspline(grid, which, clamped)
        value = value + v
        grad = grad + g * (clamped == ul) / factor
    return value, grad


def read_in_domain(
    levels: list[torch.Tensor], which: torch.Tensor | None, u: torch.Tensor, shape: tuple[int, int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pyramid at finest-level voxel coordinates `u` clamped to the readable domain of a grid of `shape`:
    values (N,), d value / d u (N, 3) with no slope along clamped axes, and how far each point lies outside
    the domain (N, 3, voxel units), for the caller's distance extension."""
    lo, hi = domain(shape, u.device)
    clamped = torch.minimum(torch.maximum(u, lo), hi)
    value, grad = pyramid_read(levels, which, clamped)
    return value, grad * (clamped == u), u - clamped


def away_from(offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Length of offset vectors (N, 3) and their direction (zero where the offset is zero)."""
    dist = offset.norm(dim=-1)
    direction = torch.where(dist[:, None] > 0, offset / dist.clamp(min=1e-12)[:, None], torch.zeros_like(offset))
    return dist, direction


class PyramidSdf(BoxedModule):
    """One field over a GridBox (its finest level). Outside the readable domain a field reads its border value
    plus the distance to the domain, so it stays positive and grows away from the grid."""

    def __init__(self, box: GridBox, levels: list[torch.Tensor]) -> None:
        super().__init__()
        if tuple(levels[0].shape) != tuple(box.shape):
            raise ValueError(f"finest level {tuple(levels[0].shape)} does not match the box {box.shape}")
        self.box = box
        self.levels = nn.ParameterList([nn.Parameter(level.detach().float().clone()) for level in levels])

    @classmethod
    def from_values(cls, box: GridBox, values: torch.Tensor, levels: int) -> PyramidSdf:
        """The finest level holds `values` (the initial SDF at the nodes); coarser levels start at zero."""
        shapes = level_shapes(box.shape, levels)
        grids = [values.reshape(box.shape).float()] + [torch.zeros(s, device=values.device) for s in shapes[1:]]
        return cls(box, grids)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SDF (N,) and its gradient (N, 3) at points x (N, 3)."""
        value, grad, outside = read_in_domain([p[None] for p in self.levels], None, self.box.to_voxel(x), self.box.shape)
        dist, away = away_from(outside * self.box.voxel)
        return value + dist, grad / self.box.voxel + away

    @torch.no_grad()
    def node_values(self) -> torch.Tensor:
        """The field at the finest level's nodes (X, Y, Z), for marching cubes."""
        return self.forward(self.box.centers().reshape(-1, 3))[0].reshape(self.box.shape)


class PackedObjects(nn.Module):
    """Every object's field in one tensor per level (objects share one cube shape, their canonical cube), read
    with one lookup per level. Only points inside an object's cube read its grids; outside, an object's SDF is
    its distance to the cube plus the cube's clearance around the object, with no parameters to learn.

    Grid values are stored in finest cells of their own cube, so one learning rate moves a mug's field and a
    table's by the same fraction of their cells. Fields not in `trainable` take part in rendering but get
    zero gradients (so Adam never moves them)."""

    def __init__(self, fields: list[PyramidSdf], trainable: list[bool]) -> None:
        super().__init__()
        shapes = {tuple(tuple(p.shape) for p in f.levels) for f in fields}
        if len(shapes) != 1:
            raise ValueError(f"object fields must share one grid shape to be packed, got {sorted(shapes)}")
        self.shape = fields[0].box.shape
        self.levels = nn.ParameterList(
            [nn.Parameter(torch.stack([f.levels[level].detach() / f.box.voxel for f in fields])) for level in range(len(fields[0].levels))]
        )
        self.register_buffer("origins", torch.stack([f.box.origin for f in fields]))
        self.register_buffer("voxels", torch.tensor([f.box.voxel for f in fields], device=fields[0].box.origin.device))
        self.register_buffer("trainable", torch.tensor(trainable, dtype=torch.float32, device=fields[0].box.origin.device))
        self.register_buffer("nodes", torch.tensor(self.shape, dtype=torch.float32, device=fields[0].box.origin.device))
        for p in self.levels:
            p.register_hook(lambda g: g * self.trainable.view(-1, 1, 1, 1))

    def __len__(self) -> int:
        return len(self.origins)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-object SDF (N, K) and gradients (N, K, 3)."""
        n = self.nodes
        voxels = self.voxels[None, :, None]
        u = (x[:, None] - self.origins[None]) / voxels  # (N, K, 3)
        in_cube = u.clamp(torch.zeros_like(n), n - 1)
        cube_dist, cube_away = away_from(((u - in_cube) * voxels).reshape(-1, 3))
        clearance = CUBE_CLEARANCE * (n.max() - 1) * self.voxels
        values = cube_dist.reshape(u.shape[:2]) + clearance
        grads = cube_away.reshape(u.shape)
        point, obj = torch.nonzero(cube_dist.reshape(u.shape[:2]) == 0, as_tuple=True)
        if len(point):  # on CUDA the compaction above is this evaluation's one host sync
            v, g = self.read_own(x[point], obj)
            values, grads = values.index_put((point, obj), v), grads.index_put((point, obj), g)
        return values, grads

    def read_own(self, x: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Object `which[n]`'s SDF (N,) and gradient (N, 3) at x[n]: one read per point, for points that
        belong to one object (its eikonal points), instead of every cube's test."""
        voxel = self.voxels[which][:, None]
        value, grad, outside = read_in_domain(list(self.levels), which, (x - self.origins[which]) / voxel, self.shape)
        dist, away = away_from(outside * voxel)
        return value * voxel[:, 0] + dist, grad + away

    def unpack(self, k: int) -> PyramidSdf:
        box = GridBox(self.origins[k].clone(), float(self.voxels[k]), self.shape)
        return PyramidSdf(box, [p[k].detach() * box.voxel for p in self.levels])


# the canonical cube puts the object's box at 0.8 of the cube's side: 0.1 of the side is left on either side
CANONICAL_FILL = 0.8
CUBE_CLEARANCE = (1 - CANONICAL_FILL) / 2

"""Marching cubes over the blocks of a sparse TSDF volume, in torch, and a mesher that re-marches only the
blocks that changed.

A cube spans a voxel and its +x/+y/+z neighbours, so the cubes of a block read that block and up to seven
neighbours. Each block's cubes are marched together: the block's values and its neighbours' borders are
gathered into one (B+1)^3 array, the configuration of every cube comes from eight shifted slices, and the
triangles of the crossing cubes come from the generated lookup table. Every vertex lies on a grid edge and
is keyed by that edge, so pieces marched at different times weld into one indexed mesh exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dprecon_ros.core.fusion import cube_table
from dprecon_ros.core.fusion.blocks import pack
from dprecon_ros.core.fusion.sparse_tsdf import EMPTY_WEIGHT, SparseTsdfVolume

BLOCKS_PER_BATCH = 512  # blocks marched together: bounds the (blocks x 8 x voxels) gathers
MAX_CHANNEL = 255.0


@dataclass
class MeshPieces:
    """Triangles as a soup, each vertex keyed by its grid edge; `block` is the row each triangle came from."""

    block: torch.Tensor  # (T,) int64
    keys: torch.Tensor  # (T, 3) int64
    positions: torch.Tensor  # (T, 3, 3) float32, map frame (m)
    colours: torch.Tensor  # (T, 3, 3) float32, 0-255

    @classmethod
    def empty(cls, device: torch.device) -> MeshPieces:
        return cls(
            torch.zeros(0, dtype=torch.int64, device=device),
            torch.zeros((0, 3), dtype=torch.int64, device=device),
            torch.zeros((0, 3, 3), dtype=torch.float32, device=device),
            torch.zeros((0, 3, 3), dtype=torch.float32, device=device),
        )

    def __len__(self) -> int:
        return int(self.block.numel())

    def without(self, rows: torch.Tensor) -> MeshPieces:
        keep = ~torch.isin(self.block, rows)
        return MeshPieces(self.block[keep], self.keys[keep], self.positions[keep], self.colours[keep])

    @staticmethod
    def cat(parts: list[MeshPieces]) -> MeshPieces:
        return MeshPieces(*(torch.cat([getattr(p, name) for p in parts]) for name in ("block", "keys", "positions", "colours")))


class _Tables:
    """Index tables of one block size on one device."""

    def __init__(self, block_voxels: int, device: torch.device) -> None:
        b, p = block_voxels, block_voxels + 1
        q = torch.stack(torch.meshgrid(*(torch.arange(p, device=device),) * 3, indexing="ij"), dim=-1).reshape(-1, 3)
        at_far_side = (q == b).to(torch.int64)
        self.pad_neighbour = at_far_side[:, 0] | (at_far_side[:, 1] << 1) | (at_far_side[:, 2] << 2)  # corner bit order
        self.pad_xyz = q
        r = q % b
        self.pad_local = (r[:, 0] * b + r[:, 1]) * b + r[:, 2]
        self.corners = torch.as_tensor(cube_table.CORNERS, device=device)
        self.edge_origin = torch.as_tensor(cube_table.EDGE_ORIGIN, device=device)
        self.edge_axis = torch.as_tensor(cube_table.EDGE_AXIS, device=device)
        self.triangles = torch.as_tensor(cube_table.TRIANGLES, device=device)
        self.triangle_count = torch.as_tensor(cube_table.TRIANGLE_COUNT, device=device)
        start = self.corners[self.edge_origin]  # (12, 3) the lower corner of each edge
        self.edge_pad_start = (start[:, 0] * p + start[:, 1]) * p + start[:, 2]
        self.edge_pad_step = torch.tensor([p * p, p, 1], device=device)[self.edge_axis]
        self.edge_start = start.to(torch.float32)
        self.edge_direction = torch.eye(3, device=device)[self.edge_axis]
        self.edge_start_packed = pack(start) - pack(torch.zeros(3, dtype=torch.int64, device=device))


_TABLES: dict[tuple[int, str], _Tables] = {}


def _tables(block_voxels: int, device: torch.device) -> _Tables:
    key = (block_voxels, str(device))
    if key not in _TABLES:
        _TABLES[key] = _Tables(block_voxels, device)
    return _TABLES[key]


def neighbour_rows(volume: SparseTsdfVolume, rows: torch.Tensor) -> torch.Tensor:
    """(K, 8): the rows of each block's +x/+y/+z neighbours in corner order (itself first); -1 where none."""
    t = _tables(volume.block_voxels, volume.device)
    coords = volume.coords.index_select(0, rows)[:, None, :] + t.corners[None]
    return volume.index.lookup(pack(coords))


Bounds = tuple[np.ndarray, np.ndarray]  # (lo, hi) corners of a box in the map frame (m)


def voxel_box(volume: SparseTsdfVolume, bounds: Bounds) -> torch.Tensor:
    """(2, 3) int64: the first and last voxel whose centre lies in the box."""
    lo = np.ceil(np.asarray(bounds[0], float) / volume.voxel_size - 0.5)
    hi = np.floor(np.asarray(bounds[1], float) / volume.voxel_size - 0.5)
    return torch.as_tensor(np.stack([lo, hi]), dtype=torch.int64, device=volume.device)


def rows_in_box(volume: SparseTsdfVolume, rows: torch.Tensor, bounds: Bounds | None) -> torch.Tensor:
    """The rows of `rows` whose cubes may reach into the box (a cube also reads its +1 neighbours)."""
    if bounds is None or rows.numel() == 0:
        return rows
    box = voxel_box(volume, bounds)
    first = volume.coords.index_select(0, rows) * volume.block_voxels
    last = first + volume.block_voxels
    return rows[((last >= box[0]) & (first <= box[1])).all(dim=1)]


def march_blocks(volume: SparseTsdfVolume, rows: torch.Tensor, min_weight: float, bounds: Bounds | None = None) -> MeshPieces:
    """The triangles of the cubes whose origin voxel lies in `rows`, over voxels observed with at least
    `min_weight` at all eight corners (and, with `bounds`, centred inside that box)."""
    rows = rows_in_box(volume, rows, bounds)
    if rows.numel() == 0:
        return MeshPieces.empty(volume.device)
    box = voxel_box(volume, bounds) if bounds is not None else None
    parts = [_march(volume, batch, min_weight, box) for batch in rows.split(BLOCKS_PER_BATCH)]
    return MeshPieces.cat(parts) if parts else MeshPieces.empty(volume.device)


def _march(volume: SparseTsdfVolume, rows: torch.Tensor, min_weight: float, box: torch.Tensor | None) -> MeshPieces:
    t = _tables(volume.block_voxels, volume.device)
    b, p, n = volume.block_voxels, volume.block_voxels + 1, volume.block_voxels**3
    k = rows.numel()
    slot = neighbour_rows(volume, rows)[:, t.pad_neighbour]  # (k, p^3) row holding each padded position
    flat = (slot.clamp(min=0) * n + t.pad_local).view(-1)  # into the flattened storage
    weight = volume.weight.view(-1).index_select(0, flat).view(k, p**3)
    weight.masked_fill_(slot < 0, 0.0)
    observed = weight >= max(min_weight, EMPTY_WEIGHT)
    if box is not None:
        voxel = volume.coords.index_select(0, rows)[:, None, :] * b + t.pad_xyz[None]
        observed &= ((voxel >= box[0]) & (voxel <= box[1])).all(dim=-1)
    values = volume.tsdf_sum.view(-1).index_select(0, flat).div_(weight.clamp(min=EMPTY_WEIGHT).view(-1))
    grid_neg = (values < 0).view(k, p, p, p).to(torch.uint8)
    grid_obs = observed.view(k, p, p, p)
    config = torch.zeros((k, b, b, b), dtype=torch.uint8, device=volume.device)
    complete = torch.ones((k, b, b, b), dtype=torch.bool, device=volume.device)
    for c, (cx, cy, cz) in enumerate(cube_table.CORNERS.tolist()):
        config |= grid_neg[:, cx : cx + b, cy : cy + b, cz : cz + b] << c
        complete &= grid_obs[:, cx : cx + b, cy : cy + b, cz : cz + b]
    active = complete & (config != 0) & (config != cube_table.N_CONFIGS - 1)
    kk, x, y, z = torch.nonzero(active, as_tuple=True)
    if kk.numel() == 0:
        return MeshPieces.empty(volume.device)
    cfg = config[kk, x, y, z].to(torch.int64)
    count = t.triangle_count[cfg]
    cube = torch.repeat_interleave(torch.arange(cfg.numel(), device=volume.device), count)
    first = torch.cumsum(count, 0) - count
    which = torch.arange(cube.numel(), device=volume.device) - first[cube]
    edges = t.triangles[cfg[cube], which]  # (T, 3) the edge of each triangle vertex
    # per cube: its padded linear index, its global voxel coordinates (packed) and position; per vertex, the
    # edge's offsets from its cube
    cube_pad = (kk * p**3 + (x * p + y) * p + z)[cube][:, None]
    i0 = cube_pad + t.edge_pad_start[edges]
    i1 = i0 + t.edge_pad_step[edges]
    v0, v1 = values.index_select(0, i0.view(-1)).view(i0.shape), values.index_select(0, i1.view(-1)).view(i1.shape)
    frac = (v0 / (v0 - v1)).clamp_(0.0, 1.0)
    cube_voxel = volume.coords.index_select(0, rows.index_select(0, kk)) * b + torch.stack([x, y, z], dim=-1)
    base = cube_voxel.to(torch.float32).add_(0.5)[cube][:, None, :]
    positions = (base + t.edge_start[edges] + frac[..., None] * t.edge_direction[edges]).mul_(volume.voxel_size)
    keys = (pack(cube_voxel)[cube][:, None] + t.edge_start_packed[edges]) * cube_table.N_AXES + t.edge_axis[edges]
    c0, has0 = _colour_at(volume, flat.index_select(0, i0.view(-1)))
    c1, has1 = _colour_at(volume, flat.index_select(0, i1.view(-1)))
    # an end without a colour reading (seen only from beyond the band) takes the other end's colour
    c0 = torch.where(has0[:, None], c0, c1).view(*i0.shape, 3)
    c1 = torch.where(has1[:, None], c1, c0.view(-1, 3)).view(*i1.shape, 3)
    colours = c0 + frac[..., None] * (c1 - c0)
    return MeshPieces(rows.index_select(0, kk)[cube], keys, positions, colours)


def _colour_at(volume: SparseTsdfVolume, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean colour, whether any reading coloured it) of voxels by flat index."""
    count = volume.colour_count.view(-1).index_select(0, flat)
    total = volume.colour_sum.view(-1, 3).index_select(0, flat)
    has = count > EMPTY_WEIGHT
    return torch.where(has[..., None], total / count.clamp(min=EMPTY_WEIGHT)[..., None], torch.zeros_like(total)), has


def weld(pieces: MeshPieces) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (V, 3) float64, faces (F, 3) int64, RGBA (V, 4) uint8): vertices on the same grid edge become
    one vertex."""
    if len(pieces) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), np.zeros((0, 4), dtype=np.uint8)
    keys, inverse = torch.unique(pieces.keys.reshape(-1), return_inverse=True)
    vertices = torch.empty((keys.numel(), 3), dtype=torch.float32, device=keys.device)
    vertices[inverse] = pieces.positions.reshape(-1, 3)
    rgb = torch.empty((keys.numel(), 3), dtype=torch.float32, device=keys.device)
    rgb[inverse] = pieces.colours.reshape(-1, 3)
    rgba = torch.cat([rgb.round().clamp(0, MAX_CHANNEL), torch.full_like(rgb[:, :1], MAX_CHANNEL)], dim=1).to(torch.uint8)
    faces = inverse.view(-1, 3)
    return vertices.cpu().numpy().astype(np.float64), faces.cpu().numpy().astype(np.int64), rgba.cpu().numpy()


def extract_block_mesh(
    volume: SparseTsdfVolume, min_weight: float, bounds: Bounds | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The volume's surface (inside `bounds` if given), marched in one go."""
    rows = torch.arange(volume.num_blocks, device=volume.device)
    return weld(march_blocks(volume, rows, min_weight, bounds))


class BlockMesher:
    """The mesh of one volume, kept per block: `mesh()` re-marches only blocks whose cubes read a voxel that
    changed since the previous call (a block, or one of its +x/+y/+z neighbours, updated)."""

    def __init__(self, volume: SparseTsdfVolume, min_weight: float) -> None:
        self.volume = volume
        self.min_weight = min_weight
        self.pieces = MeshPieces.empty(volume.device)
        self.meshed_revision = -1
        self.marched_blocks = 0  # blocks marched by the last call (what the incremental path saves)
        self._mesh: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def stale_rows(self) -> torch.Tensor:
        vol = self.volume
        rows = torch.arange(vol.num_blocks, device=vol.device)
        if self.meshed_revision < 0 or rows.numel() == 0:
            return rows
        nb = neighbour_rows(vol, rows)
        revision = torch.where(nb >= 0, vol.block_revision[nb.clamp(min=0)], torch.full_like(nb, -1))
        return rows[(revision > self.meshed_revision).any(dim=1)]

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._mesh is not None and self.meshed_revision == self.volume.revision:
            self.marched_blocks = 0
            return self._mesh
        stale = self.stale_rows()
        self.marched_blocks = int(stale.numel())
        self.pieces = MeshPieces.cat([self.pieces.without(stale), march_blocks(self.volume, stale, self.min_weight)])
        self.meshed_revision = self.volume.revision
        self._mesh = weld(self.pieces)
        return self._mesh

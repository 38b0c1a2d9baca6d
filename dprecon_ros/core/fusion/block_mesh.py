"""Marching cubes over the blocks of a sparse TSDF volume, in torch, and a mesher that re-marches only the
blocks that changed.

A cube spans a voxel and its +x/+y/+z neighbours, so the cubes of a block read that block and up to seven
neighbours. Each block's cubes are marched together: the block's values and its neighbours' borders are
gathered into one (B+1)^3 array, the configuration of every cube comes from eight shifted slices, and the
triangles of the crossing cubes come from the generated lookup table. Every vertex lies on a grid edge, and
each edge belongs to the block holding its lower end: a block makes the vertices of its own crossing edges
once, and its triangles name their corners by edge (storage index of the lower end * 3 + axis). Pieces
marched at different times therefore join into one indexed mesh through a table lookup, with no sort.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch

from dprecon_ros.core.fusion import cube_table
from dprecon_ros.core.fusion.blocks import pack
from dprecon_ros.core.fusion.sparse_tsdf import COUNT, EMPTY_WEIGHT, SparseTsdfVolume

BLOCKS_PER_BATCH = 512  # blocks marched together: bounds the (blocks x 8 x voxels) gathers
MAX_CHANNEL = 255.0


@dataclass
class MeshPieces:
    """Vertices (one per crossing grid edge a block owns) and triangles (corners named by edge), each with the
    block row it came from, so a block's share can be replaced when it is marched again."""

    vertex_block: torch.Tensor  # (V,) int32 (int64 for a volume too large for it: `index_dtype`)
    vertex_edge: torch.Tensor  # (V,) as vertex_block: storage index of the edge's lower voxel * 3 + axis
    positions: torch.Tensor  # (V, 3) float32, map frame (m)
    colours: torch.Tensor  # (V, 3) uint8
    face_block: torch.Tensor  # (F,) as vertex_block
    face_edges: torch.Tensor  # (F, 3) as vertex_block, named as vertex_edge

    FIELDS = ("vertex_block", "vertex_edge", "positions", "colours", "face_block", "face_edges")

    @classmethod
    def empty(cls, device: torch.device) -> MeshPieces:
        i32, f32 = torch.int32, torch.float32  # torch.cat widens these where a volume's pieces are int64
        return cls(
            torch.zeros(0, dtype=i32, device=device),
            torch.zeros(0, dtype=i32, device=device),
            torch.zeros((0, 3), dtype=f32, device=device),
            torch.zeros((0, 3), dtype=torch.uint8, device=device),
            torch.zeros(0, dtype=i32, device=device),
            torch.zeros((0, 3), dtype=i32, device=device),
        )

    def faces(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.face_block, self.face_edges

    @property
    def num_faces(self) -> int:
        return int(self.face_block.numel())

    def without(self, rows: torch.Tensor) -> MeshPieces:
        """The pieces of every block but `rows` (a mask over the rows: a sort of all pieces costs more than
        re-marching the blocks)."""
        if rows.numel() == 0 or self.vertex_block.numel() + self.face_block.numel() == 0:
            return self
        size = int(
            max(rows.max(), self.vertex_block.max() if self.vertex_block.numel() else 0, self.face_block.max() if self.num_faces else 0)
        )
        dropped = torch.zeros(size + 1, dtype=torch.bool, device=rows.device)
        dropped[rows] = True
        keep_v = ~dropped.index_select(0, self.vertex_block)
        keep_f = ~dropped.index_select(0, self.face_block)
        return MeshPieces(
            self.vertex_block[keep_v],
            self.vertex_edge[keep_v],
            self.positions[keep_v],
            self.colours[keep_v],
            self.face_block[keep_f],
            self.face_edges[keep_f],
        )

    @staticmethod
    def cat(parts: list[MeshPieces]) -> MeshPieces:
        return MeshPieces(*(torch.cat([getattr(p, name) for p in parts]) for name in MeshPieces.FIELDS))


class _Tables:
    """Index tables of one block size on one device."""

    def __init__(self, block_voxels: int, device: torch.device) -> None:
        b, p = block_voxels, block_voxels + 1
        q = torch.stack(torch.meshgrid(*(torch.arange(p, device=device),) * 3, indexing="ij"), dim=-1).reshape(-1, 3)
        at_far_side = (q == b).to(torch.int64)
        self.pad_neighbour = at_far_side[:, 0] | (at_far_side[:, 1] << 1) | (at_far_side[:, 2] << 2)  # corner bit order
        self.pad_xyz = q
        self.pad_own = (q < b).all(dim=1)  # padded positions inside the block itself
        self.pad_strides = (p * p, p, 1)  # flat padded index step along x, y, z
        r = q % b
        self.pad_local = (r[:, 0] * b + r[:, 1]) * b + r[:, 2]
        self.corners = torch.as_tensor(cube_table.CORNERS, device=device)
        self.edge_origin = torch.as_tensor(cube_table.EDGE_ORIGIN, device=device)
        self.edge_axis = torch.as_tensor(cube_table.EDGE_AXIS, device=device)
        self.triangles = torch.as_tensor(cube_table.TRIANGLES, device=device)
        self.triangle_count = torch.as_tensor(cube_table.TRIANGLE_COUNT, device=device)
        start = self.corners[self.edge_origin]  # (12, 3) the lower corner of each edge
        self.edge_pad_start = (start[:, 0] * p + start[:, 1]) * p + start[:, 2]
        # a cube is named by the padded index of its lower corner; its corners lie at fixed steps from it, so
        # the eight corner values of every cube are eight contiguous slices of the flat padded arrays
        self.corner_steps = ((self.corners[:, 0] * p + self.corners[:, 1]) * p + self.corners[:, 2]).tolist()
        self.cube_span = p**3 - max(self.corner_steps)  # lower corners that have all eight corners in the padding
        self.cube_own = self.pad_own[: self.cube_span]  # of these, the cubes of the block itself


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


def may_cross(volume: SparseTsdfVolume, rows: torch.Tensor, min_weight: float) -> torch.Tensor:
    """Per row, whether its cubes can hold a surface: an observed negative and an observed positive voxel among
    the block and its +x/+y/+z neighbours (the voxels its cubes read). About half the blocks of a scene have
    none, and skipping them costs one pass over the voxels of these rows and their neighbours."""
    if rows.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=volume.device)
    nb = neighbour_rows(volume, rows)
    present = nb >= 0
    if nb.numel() >= volume.num_blocks:  # most of the map: every block's flags, read in place
        n, slot = volume.num_blocks, nb.clamp(min=0)
        weight, tsdf = volume.weight[:n], volume.tsdf_sum[:n]
    else:
        read, slot = torch.unique(nb.clamp(min=0), return_inverse=True)
        weight, tsdf = volume.weight.index_select(0, read), volume.tsdf_sum.index_select(0, read)
    observed = weight >= max(min_weight, EMPTY_WEIGHT)
    negative = tsdf < 0
    has_neg = (observed & negative).any(dim=1)[slot] & present
    has_pos = (observed & ~negative).any(dim=1)[slot] & present
    return has_neg.any(dim=1) & has_pos.any(dim=1)


def march_blocks(volume: SparseTsdfVolume, rows: torch.Tensor, min_weight: float, bounds: Bounds | None = None) -> MeshPieces:
    """The triangles of the cubes whose origin voxel lies in `rows`, over voxels observed with at least
    `min_weight` at all eight corners (and, with `bounds`, centred inside that box)."""
    rows = rows_in_box(volume, rows, bounds)
    rows = rows[may_cross(volume, rows, min_weight)]
    if rows.numel() == 0:
        return MeshPieces.empty(volume.device)
    box = voxel_box(volume, bounds) if bounds is not None else None
    return MeshPieces.cat([_march(volume, batch, min_weight, box) for batch in rows.split(BLOCKS_PER_BATCH)])


def index_dtype(volume: SparseTsdfVolume) -> torch.dtype:
    """int32 for the pieces' block rows and edge names where every edge of the storage fits it (a map of up to
    1.4 million blocks of 8^3): half the memory of int64 in meshes of millions of faces."""
    edges = volume.coords.shape[0] * volume.block_voxels**3 * cube_table.N_AXES
    return torch.int32 if edges < torch.iinfo(torch.int32).max else torch.int64


def _march(volume: SparseTsdfVolume, rows: torch.Tensor, min_weight: float, box: torch.Tensor | None) -> MeshPieces:
    t = _tables(volume.block_voxels, volume.device)
    b, p, n = volume.block_voxels, volume.block_voxels + 1, volume.block_voxels**3
    k, index = rows.numel(), index_dtype(volume)
    slot = neighbour_rows(volume, rows)[:, t.pad_neighbour]  # (k, p^3) row holding each padded position
    flat = (slot.clamp(min=0) * n + t.pad_local).view(-1).to(index)  # into the flattened storage, (k * p^3,)
    weight = volume.weight.view(-1).index_select(0, flat).view(k, p**3)
    weight.masked_fill_(slot < 0, 0.0)
    observed = weight >= max(min_weight, EMPTY_WEIGHT)
    if box is not None:
        voxel = volume.coords.index_select(0, rows)[:, None, :] * b + t.pad_xyz[None]
        observed &= ((voxel >= box[0]) & (voxel <= box[1])).all(dim=-1)
    values = volume.tsdf_sum.view(-1).index_select(0, flat).div_(weight.clamp(min=EMPTY_WEIGHT).view(-1))
    negative, span = (values < 0).view(k, p**3).to(torch.uint8), t.cube_span
    observed = observed.view(k, p**3)
    config = torch.zeros((k, span), dtype=torch.uint8, device=volume.device)
    complete = t.cube_own.expand(k, span).clone()
    for c, step in enumerate(t.corner_steps):
        config |= negative[:, step : step + span] << c
        complete &= observed[:, step : step + span]
    hit = torch.nonzero((complete & (config != 0) & (config != cube_table.N_CONFIGS - 1)).view(-1)).squeeze(1)
    vertices = _edge_vertices(volume, rows, flat, values, observed, index)
    if hit.numel() == 0:
        return MeshPieces(*vertices, *MeshPieces.empty(volume.device).faces())
    kk = hit // span
    cfg = config.view(-1).index_select(0, hit).to(torch.int64)
    count = t.triangle_count.index_select(0, cfg)
    cube = torch.repeat_interleave(torch.arange(cfg.numel(), device=volume.device), count)
    first = torch.cumsum(count, 0) - count
    which = torch.arange(cube.numel(), device=volume.device) - first.index_select(0, cube)
    row = cfg.index_select(0, cube) * cube_table.MAX_TRIANGLES + which
    edges = t.triangles.view(-1, 3).index_select(0, row)  # (T, 3) the cube edge of each triangle corner
    start = t.edge_pad_start.index_select(0, edges.view(-1)).view(edges.shape)
    corner = (hit + kk * (p**3 - span)).index_select(0, cube)[:, None] + start  # padded index of its lower end
    axis = t.edge_axis.index_select(0, edges.view(-1)).view(edges.shape).to(index)
    face_edges = flat.index_select(0, corner.view(-1)).view(corner.shape).mul_(cube_table.N_AXES).add_(axis)
    return MeshPieces(*vertices, rows.to(index).index_select(0, kk.index_select(0, cube)), face_edges)


def _edge_vertices(
    volume: SparseTsdfVolume, rows: torch.Tensor, flat: torch.Tensor, values: torch.Tensor, observed: torch.Tensor, index: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(block, edge, position, colour) of every crossing edge the blocks own: from one of their voxels to its
    +x, +y or +z neighbour, both observed, the TSDF changing sign along it. Works on the flat padded arrays
    (k, p^3): an edge along an axis joins positions one stride apart."""
    t = _tables(volume.block_voxels, volume.device)
    k, size = rows.numel(), t.pad_xyz.shape[0]
    values, observed, flat = values.view(k, size), observed.view(k, size), flat.view(k, size)
    negative = values < 0
    out = []
    for axis, stride in enumerate(t.pad_strides):
        reach = size - stride
        crossing = observed[:, :reach] & observed[:, stride:] & (negative[:, :reach] != negative[:, stride:]) & t.pad_own[:reach]
        hit = torch.nonzero(crossing.reshape(-1)).squeeze(1)
        kk, pos = hit // reach, hit % reach
        i0 = kk * size + pos
        a0, a1 = values.view(-1).index_select(0, i0), values.view(-1).index_select(0, i0 + stride)
        frac = (a0 / (a0 - a1)).clamp_(0.0, 1.0)
        block_rows = rows.index_select(0, kk)
        voxel = volume.coords.index_select(0, block_rows) * volume.block_voxels + t.pad_xyz.index_select(0, pos)
        position = voxel.to(torch.float32).add_(0.5)
        position[:, axis] += frac
        f0, f1 = flat.view(-1).index_select(0, i0), flat.view(-1).index_select(0, i0 + stride)
        c0, has0 = _colour_at(volume, f0)
        c1, has1 = _colour_at(volume, f1)
        # an end without a colour reading (seen only from beyond the band) takes the other end's colour
        c0, c1 = torch.where(has0[:, None], c0, c1), torch.where(has1[:, None], c1, c0)
        colour = (c1 - c0).mul_(frac[:, None]).add_(c0).add_(0.5).clamp_(0.0, MAX_CHANNEL).to(torch.uint8)  # rounded
        out.append((block_rows.to(index), f0 * cube_table.N_AXES + axis, position.mul_(volume.voxel_size), colour))
    return tuple(torch.cat(parts) for parts in zip(*out, strict=True))


def _colour_at(volume: SparseTsdfVolume, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean colour, whether any reading coloured it) of voxels by flat index."""
    sums = volume.colour.view(-1, 4).index_select(0, flat)
    count = sums[:, COUNT]
    has = count > EMPTY_WEIGHT
    return torch.where(has[:, None], sums[:, :COUNT] / count.clamp(min=EMPTY_WEIGHT)[:, None], torch.zeros_like(sums[:, :COUNT])), has


_EDGE_TABLES: weakref.WeakKeyDictionary[SparseTsdfVolume, torch.Tensor] = weakref.WeakKeyDictionary()


def edge_table(volume: SparseTsdfVolume, size: int) -> torch.Tensor:
    """A scratch int32 table of at least `size` entries, kept per volume: a table over every edge of a large
    map is hundreds of MB, and filling fresh memory costs its page faults at every mesh. It holds one entry per
    edge of the volume's storage (6 KB per block of 8^3, half the voxels' 12 KB) and grows with the storage."""
    table = _EDGE_TABLES.get(volume)
    storage = volume.weight  # its device is the full one ("cuda:0", where volume.device may say "cuda")
    if table is None or table.numel() < size or table.device != storage.device:
        table = torch.empty(max(size, storage.numel() * cube_table.N_AXES), dtype=torch.int32, device=storage.device)
        _EDGE_TABLES[volume] = table
    return table[:size]


def weld(pieces: MeshPieces, volume: SparseTsdfVolume | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (V, 3) float32, faces (F, 3) int64, RGBA (V, 4) uint8): each triangle corner looked up by its
    edge in a table over the edges, then the vertices no triangle uses dropped (linear time, no sort). A corner
    whose edge has no vertex drops its face, a guard that never fires when the pieces are consistent. Vertices
    stay float32, the precision they were computed in (as open3d's meshes). `volume`: the pieces' volume, whose
    kept table (`edge_table`) is used; without it a table is allocated here."""
    if pieces.num_faces == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), dtype=np.int64), np.zeros((0, 4), dtype=np.uint8)
    device, count = pieces.positions.device, pieces.vertex_edge.numel()
    size = edge_count(pieces)
    table = torch.empty(size, dtype=torch.int32, device=device) if volume is None else edge_table(volume, size)
    table.fill_(-1)
    table[pieces.vertex_edge] = torch.arange(count, dtype=torch.int32, device=device)
    faces = table.index_select(0, pieces.face_edges.view(-1)).view(-1, 3)
    complete = (faces >= 0).all(dim=1)
    if not bool(complete.all()):
        faces = faces[complete]
    faces = faces.to(torch.int64)  # the output's type, converted once
    used = torch.zeros(count, dtype=torch.bool, device=device)
    used[faces.view(-1)] = True
    kept = torch.nonzero(used).squeeze(1)
    positions, colours = pieces.positions, pieces.colours
    if kept.numel() < count:  # vertices on edges of no complete cube: dropped, the rest renumbered
        renumber = torch.cumsum(used, 0) - 1
        faces = renumber.index_select(0, faces.view(-1)).view(-1, 3)
        positions, colours = positions.index_select(0, kept), colours.index_select(0, kept)
    rgba = torch.full((kept.numel(), 4), int(MAX_CHANNEL), dtype=torch.uint8, device=device)
    rgba[:, :3] = colours
    return positions.cpu().numpy(), faces.cpu().numpy(), rgba.cpu().numpy()


def edge_count(pieces: MeshPieces) -> int:
    """Entries of the table `weld` looks edges up in: one past the largest edge named."""
    if pieces.num_faces == 0:
        return 0
    return int(max(pieces.vertex_edge.max() if pieces.vertex_edge.numel() else 0, pieces.face_edges.max())) + 1


def extract_block_mesh(
    volume: SparseTsdfVolume, min_weight: float, bounds: Bounds | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The volume's surface (inside `bounds` if given), marched in one go."""
    rows = torch.arange(volume.num_blocks, device=volume.device)
    pieces = march_blocks(volume, rows, min_weight, bounds)
    return weld(pieces, volume)


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
        """The blocks changed since the last mesh and those whose +x/+y/+z neighbour changed (their cubes read
        it): found from the changed blocks alone, so a small update costs little on a large map."""
        vol = self.volume
        rows = torch.arange(vol.num_blocks, device=vol.device)
        if self.meshed_revision < 0 or rows.numel() == 0:
            return rows
        changed = rows[vol.block_revision[: vol.num_blocks] > self.meshed_revision]
        if changed.numel() == 0:
            return changed
        t = _tables(vol.block_voxels, vol.device)
        readers = vol.index.lookup(pack(vol.coords.index_select(0, changed)[:, None, :] - t.corners[None]))
        return torch.unique(readers[readers >= 0])

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._mesh is not None and self.meshed_revision == self.volume.revision:
            self.marched_blocks = 0
            return self._mesh
        stale = self.stale_rows()
        self.marched_blocks = int(stale.numel())
        self.pieces = MeshPieces.cat([self.pieces.without(stale), march_blocks(self.volume, stale, self.min_weight)])
        self.meshed_revision = self.volume.revision
        mesh = weld(self.pieces, self.volume)
        for array in mesh:  # may share memory with the kept pieces, and is handed out again while nothing changes
            array.flags.writeable = False
        self._mesh = mesh
        return self._mesh

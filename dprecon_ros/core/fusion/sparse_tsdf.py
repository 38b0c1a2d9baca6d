"""A sparse TSDF volume: voxel blocks allocated around back-projected depth, updated one keyframe at a time.

The dense volume computed the centre of every voxel of its box for every frame, though about 1.5% of them lie
in the truncation band. Here blocks of `block_voxels`^3 voxels are allocated where depth puts a surface, and
each frame updates only the blocks it concerns, with voxel centres built by broadcasting a block's origin
against one table of in-block offsets, all in float32. The same code runs on the CPU and on CUDA.

Integration is a weighted mean, so a keyframe can also be taken out again (`sign=-1`), exactly, when it
leaves the buffer. A volume that carves free space (an object's: every other reading seen through it lowers
it) keeps an invariant that makes the result independent of the order of keyframes: every allocated block
holds the observations of every integrated keyframe. Blocks allocated later are first brought up to date
from the keyframes integrated before them (`history`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from dprecon_ros.core.fusion.blocks import KEY_BIAS, BlockIndex, pack, unique_keys, unpack
from dprecon_ros.core.fusion.tsdf import TsdfVolume, VolumeSpec
from dprecon_ros.core.types import CameraIntrinsics, Frame

MIN_DEPTH_M = 1e-6  # depths are clamped to this when dividing by them (1/z at most 1e6)
EMPTY_WEIGHT = 1e-4  # a voxel whose weight falls below this after taking keyframes out is unobserved again (float32
# sums of weights like 0.3 leave residues near 1e-5)
INITIAL_BLOCKS = 1024
GROWTH = 1.5  # storage grows by this factor when blocks run out (a copy: old and new are held at once)
MAX_ALLOCATION_STRIDE = 4  # pixels between samples at most (a power of two): a mask narrower than this could be missed
_GRIDS: dict[tuple[int, int, int, str], torch.Tensor] = {}  # sampling grids by image size, stride and device
VOXELS_PER_CHUNK = 1 << 18  # voxels updated per batch: bounds the temporaries
STORAGE = ("coords", "tsdf_sum", "weight", "colour", "block_revision")  # per-block tensors
COUNT = 3  # `colour`'s last channel: how many readings its R, G, B sums hold


History = Callable[[], Iterable[tuple["DepthView", torch.Tensor]]]


@dataclass
class DepthView:
    """One keyframe's depth, colour and pose on the volume's device, shared by every volume it is fused into."""

    depth: torch.Tensor  # (H, W) metres, 0 = no reading
    colour: torch.Tensor  # (H*W, 3) uint8
    intrinsics: CameraIntrinsics
    R_cw: torch.Tensor  # (3, 3) float32, world -> camera
    t_cw: torch.Tensor  # (3,)
    R_wc: torch.Tensor
    t_wc: torch.Tensor
    index: int = -1  # the keyframe's index, for bookkeeping
    _padded_colour: torch.Tensor | None = None
    _max_depth: float | None = None

    def sampling_grid(self, stride: int) -> torch.Tensor:
        """(H, W) bool: the pixels whose row and column are multiples of `stride`."""
        H, W = self.depth.shape
        key = (H, W, stride, str(self.depth.device))
        if key not in _GRIDS:
            grid = torch.zeros((H, W), dtype=torch.bool, device=self.depth.device)
            grid[::stride, ::stride] = True
            _GRIDS[key] = grid
        return _GRIDS[key]

    def max_depth(self) -> float:
        """The farthest reading (0 without any)."""
        if self._max_depth is None:
            self._max_depth = float(self.depth.max()) if self.depth.numel() else 0.0
        return self._max_depth

    def world_rays(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3): the rays of flat pixel indices in the map frame, scaled to unit z-depth."""
        K = self.intrinsics
        W = self.depth.shape[1]
        u, v = (pixels % W).to(torch.float32), (pixels // W).to(torch.float32)
        cam = torch.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, torch.ones_like(u)], dim=-1)
        return cam @ self.R_wc.T

    def padded_signed_depth(self, surface: torch.Tensor, max_depth_m: float) -> torch.Tensor:
        """Depth with a one-pixel border of 0 (no reading), flattened: + on `surface` pixels, - elsewhere; 0
        beyond `max_depth_m`."""
        H, W = self.depth.shape
        padded = torch.zeros((H + 2, W + 2), dtype=self.depth.dtype, device=self.depth.device)
        inner = padded[1:-1, 1:-1]
        torch.where(surface, self.depth, -self.depth, out=inner)
        if max_depth_m < self.max_depth():
            inner.masked_fill_(self.depth > max_depth_m, 0.0)
        return padded.view(-1)

    def padded_colour(self) -> torch.Tensor:
        """The colour image with the same border as `padded_signed_depth`, one int32 per pixel holding the bytes
        R, G, B, 1 (the border's: 0, 0, 0, 0): one 4-byte gather gives a voxel its colour and its count."""
        if self._padded_colour is None:
            H, W = self.depth.shape
            padded = torch.zeros((H + 2, W + 2, 4), dtype=torch.uint8, device=self.depth.device)
            padded[1:-1, 1:-1, :3] = self.colour.reshape(H, W, 3)
            padded[1:-1, 1:-1, 3] = 1
            self._padded_colour = padded.view(torch.int32).reshape(-1)
        return self._padded_colour

    @classmethod
    def of(cls, frame: Frame, device: torch.device, index: int = -1) -> DepthView:
        depth = torch.as_tensor(frame.depth_m, dtype=torch.float32, device=device)
        depth = torch.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0).clamp_(min=0.0)  # no reading: 0
        colour = torch.as_tensor(np.asarray(frame.rgb, dtype=np.uint8), device=device).reshape(-1, 3)
        T_wc = np.asarray(frame.T_world_camera, dtype=np.float64)
        T_cw = np.linalg.inv(T_wc)

        def f32(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=torch.float32, device=device)

        return cls(depth, colour, frame.intrinsics, f32(T_cw[:3, :3]), f32(T_cw[:3, 3]), f32(T_wc[:3, :3]), f32(T_wc[:3, 3]), index)


class SparseTsdfVolume:
    """TSDF, weight and colour per voxel, in blocks; voxel (i, j, k) of the map frame has its centre at
    ((i, j, k) + 0.5) * voxel_size."""

    def __init__(
        self,
        voxel_size: float,
        truncation_voxels: float,
        block_voxels: int,
        device: torch.device,
        free_space_weight: float = 0.0,
        carve_in_frustum: bool = False,
        max_depth_m: float = math.inf,
        allocation_samples_per_block: float = 3.0,
        initial_blocks: int = INITIAL_BLOCKS,
    ) -> None:
        if block_voxels < 1 or block_voxels & (block_voxels - 1):
            raise ValueError(f"block_voxels must be a power of two, not {block_voxels}")
        self.voxel_size = float(voxel_size)
        self.trunc = float(truncation_voxels) * self.voxel_size
        self.block_voxels = int(block_voxels)
        self.block_size = self.block_voxels * self.voxel_size
        self.device = device
        self.free_space_weight = float(free_space_weight)
        self.carve_in_frustum = carve_in_frustum
        self.max_depth_m = float(max_depth_m)
        self.allocation_samples_per_block = float(allocation_samples_per_block)
        self.rows_per_chunk = max(1, VOXELS_PER_CHUNK // self.block_voxels**3)
        self.index = BlockIndex(device)
        self.revision = 0  # bumped by each integration; blocks record the revision that last changed them
        self._integrated = False
        b = self.block_voxels
        ijk = torch.stack(torch.meshgrid(*(torch.arange(b, device=device),) * 3, indexing="ij"), dim=-1).reshape(-1, 3)
        self.local_ijk = ijk  # in-block voxel (x, y, z) of linear index x*b*b + y*b + z
        self._offsets = (ijk.to(torch.float32) + 0.5) * self.voxel_size
        self._allocate_storage(max(1, int(initial_blocks)))  # a size known ahead saves the copies of growing

    # ------------------------------------------------------------ storage
    def _allocate_storage(self, capacity: int) -> None:
        """Per voxel the sums of weighted observations and their weights: integrating is two additions and
        taking a keyframe out two subtractions; the means are formed when read."""
        n, dev = self.block_voxels**3, self.device
        self.coords = torch.zeros((capacity, 3), dtype=torch.int64, device=dev)
        self.tsdf_sum = torch.zeros((capacity, n), dtype=torch.float32, device=dev)
        self.weight = torch.zeros((capacity, n), dtype=torch.float32, device=dev)
        # R, G, B sums and their count (channel COUNT) side by side: a pixel's colour and a count of 1 arrive
        # as the four bytes of one gather and are added in one pass
        self.colour = torch.zeros((capacity, n, 4), dtype=torch.float32, device=dev)
        self.block_revision = torch.zeros(capacity, dtype=torch.int64, device=dev)

    def _grow(self, needed: int) -> None:
        capacity = self.coords.shape[0]
        if needed <= capacity:
            return
        old = [getattr(self, name) for name in STORAGE]
        self._allocate_storage(max(needed, int(GROWTH * capacity)))
        for name, kept in zip(STORAGE, old, strict=True):
            getattr(self, name)[:capacity] = kept

    @property
    def num_blocks(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        rows = self.num_blocks
        per_voxel = (1 + 1 + 4) * 4  # tsdf_sum, weight, colour (R, G, B, count)
        return rows * (self.block_voxels**3 * per_voxel + 4 * 8)

    # -------------------------------------------------------- integration
    def integrate(self, view: DepthView, surface: torch.Tensor, sign: int = 1, history: History | None = None) -> int:
        """Fuse one view (`sign` -1 takes a fused one out again). `surface` (H, W) bool: the pixels whose depth
        is this volume's surface; the others with a reading carve free space in front of them at
        `free_space_weight`. `history`: the (view, surface) pairs integrated before, for blocks allocated now
        in a carving volume (called only then). Returns the number of blocks updated."""
        self.revision += 1
        surface = self._with_reading(view, surface)
        if sign > 0:
            rows, new = self._allocate(self._band_keys(view, surface))
            if new.any() and self.carve_in_frustum and history is None and self._integrated:
                raise ValueError("a carving volume allocating blocks after its first integration needs the history")
        else:
            rows = self.index.lookup(self._band_keys(view, surface))
            rows, new = rows[rows >= 0], torch.zeros(0, dtype=torch.bool, device=self.device)
        if self.carve_in_frustum:
            if new.any() and history is not None:
                fresh = rows[new]
                for old_view, old_surface in history():
                    self._update(fresh, old_view, self._with_reading(old_view, old_surface), 1)
            rows = torch.unique(torch.cat([rows, self._rows_in_frustum(view)]))
        self._update(rows, view, surface, sign)
        self._integrated = True
        return int(rows.numel())

    def allocate(self, view: DepthView, surface: torch.Tensor) -> int:
        """Allocate the blocks a view's surface band passes through, without integrating it (a batch fusion
        allocates every view's blocks first); returns how many were new."""
        if self._integrated and self.carve_in_frustum:
            raise ValueError("blocks of a carving volume must be allocated before its first integration, or by integrate()")
        _, new = self._allocate(self._band_keys(view, self._with_reading(view, surface)))
        return int(new.sum())

    def _with_reading(self, view: DepthView, surface: torch.Tensor) -> torch.Tensor:
        """The surface pixels that have a depth reading, on this volume's device."""
        return surface.to(self.device) & (view.depth > 0)

    def _band_keys(self, view: DepthView, surface: torch.Tensor) -> torch.Tensor:
        """Keys of the blocks the truncation band around the surface pixels passes through (sampled at the
        band's ends and middle: half a block apart or less for truncations up to half a block).

        A pixel is sampled when it lies on the grid of its own stride: the power of two of pixels over which a
        block at its depth spans `allocation_samples_per_block` samples. Near surfaces are sampled sparsely,
        far ones densely, and the sub-grids nest, so every depth gets at least its own density."""
        K = view.intrinsics
        # a pixel's own stride is the largest power of two at most its block's span / samples: it is sampled
        # at stride s where its depth is beyond the depth at which a block spans 2 s samples
        span_depth = self.block_size * min(K.fx, K.fy) / self.allocation_samples_per_block  # span = 1 sample here
        on_grid = view.sampling_grid(MAX_ALLOCATION_STRIDE)
        stride, deepest = MAX_ALLOCATION_STRIDE, view.max_depth()
        while stride > 1 and span_depth / stride < deepest:  # finer grids only while some depth needs them
            stride //= 2
            on_grid = on_grid | (view.sampling_grid(stride) & (view.depth > span_depth / (2 * stride)))
        sampled = torch.nonzero((surface & on_grid & (view.depth <= self.max_depth_m)).view(-1)).squeeze(1)
        if sampled.numel() == 0:
            return torch.zeros(0, dtype=torch.int64, device=self.device)
        d = view.depth.view(-1).index_select(0, sampled)[:, None]
        rays = view.world_rays(sampled)  # world direction per metre of depth
        steps = max(2, math.ceil(2 * self.trunc / (0.5 * self.block_size)))
        offsets = torch.linspace(-self.trunc, self.trunc, steps + 1, device=self.device)
        z = (d.view(1, -1, 1) + offsets.view(-1, 1, 1)).clamp_(min=MIN_DEPTH_M)  # (offsets, samples, 1)
        points = (rays * z).add_(view.t_wc).mul_(1.0 / self.block_size)
        blocks = torch.floor_(points).clamp_(-KEY_BIAS, KEY_BIAS - 1).to(torch.int64)
        # neighbouring pixels mostly share blocks: dropping repeats in image order (per offset) first shrinks the sort
        return unique_keys(torch.unique_consecutive(pack(blocks).view(-1)))

    def _allocate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._grow(len(self.index) + keys.numel())
        rows, new = self.index.insert(keys)
        if new.any():
            self.coords[rows[new]] = unpack(keys[new])
        return rows, new

    def _rows_in_frustum(self, view: DepthView) -> torch.Tensor:
        """Allocated blocks whose bounding sphere may reach into the image."""
        n = self.num_blocks
        if n == 0:
            return torch.zeros(0, dtype=torch.int64, device=self.device)
        centre = (self.coords[:n].to(torch.float32) + 0.5) * self.block_size
        p = centre @ view.R_cw.T + view.t_cw
        radius = 0.5 * math.sqrt(3.0) * self.block_size
        K = view.intrinsics
        z = p[:, 2]
        zs = z.clamp(min=MIN_DEPTH_M)
        # the sphere's angular radius, in normalised image units: sqrt(1 + u^2 + v^2) at the image's corners
        # bounds how much a sideways offset stretches it
        corner = max(abs(-0.5 - K.cx) / K.fx, abs(K.width - 0.5 - K.cx) / K.fx) ** 2
        corner += max(abs(-0.5 - K.cy) / K.fy, abs(K.height - 0.5 - K.cy) / K.fy) ** 2
        margin = radius * math.sqrt(1.0 + corner) / (z - radius).clamp(min=MIN_DEPTH_M)
        u, v = p[:, 0] / zs, p[:, 1] / zs
        inside_u = (u >= (-0.5 - K.cx) / K.fx - margin) & (u <= (K.width - 0.5 - K.cx) / K.fx + margin)
        inside_v = (v >= (-0.5 - K.cy) / K.fy - margin) & (v <= (K.height - 0.5 - K.cy) / K.fy + margin)
        near = z <= radius  # the camera is inside or next to the block
        return torch.nonzero((z > -radius) & ((inside_u & inside_v) | near)).squeeze(1)

    def _update(self, rows: torch.Tensor, view: DepthView, surface: torch.Tensor, sign: int) -> None:
        """Project every voxel of `rows` into the view; voxels the view observes move towards what it saw.

        Rows are updated whole, in chunks small enough for the temporaries to stay in cache: on a CPU an
        elementwise op over a chunk costs a few percent of a gather or of compacting the observed voxels, so
        the only gathers are two per voxel from the image (depth, colour) and whole-row copies of the
        storage. The projection is folded with the intrinsics (a voxel's (u z, v z, z) is its block's plus
        its offset's), and the image is padded by one pixel of "no reading" with surface depth positive and
        other depth negative, so one gather says whether a voxel projects into the image, what depth it
        sees there and whose surface that is."""
        if rows.numel() == 0:
            return
        H, W = view.depth.shape
        signed, colours = view.padded_signed_depth(surface, self.max_depth_m), view.padded_colour()
        K = torch.as_tensor(view.intrinsics.K, dtype=torch.float32, device=self.device)
        K[0, 2] += 1.5  # the padding's offset and the rounding's half pixel, folded into the projection: a
        K[1, 2] += 1.5  # voxel's pixel (in the padded image) is then its projection truncated
        KR = K @ view.R_cw
        offsets = (self._offsets @ KR.T).T.contiguous()  # (3, voxels): offsets in (u z, v z, z)
        Kt = K @ view.t_cw
        inv_trunc = 1.0 / self.trunc
        last_pixel = torch.tensor([W + 1.5, H + 1.5], device=self.device).view(1, 2, 1)  # truncates to W + 1, H + 1
        carve = self.free_space_weight > 0 and not bool(surface.all())  # a view that is all surface carves nothing
        for chunk in rows.split(self.rows_per_chunk):
            origin = (self.coords.index_select(0, chunk).to(torch.float32) * self.block_size) @ KR.T + Kt
            z = origin[:, 2:3] + offsets[2]
            # at or behind the camera plane 1/z is taken as 0: the voxel projects to pixel (0, 0) of the border
            # (no reading). 1/z is capped at 1/MIN_DEPTH_M: a voxel less than that in front of the camera lands
            # outside the image too unless its centre is within about a micrometre of the camera's, and there it
            # reads as free space, which it is (a mask for the case cost 5-8% of integration)
            inv_z = torch.reciprocal(z).clamp_(0.0, 1.0 / MIN_DEPTH_M)
            uv = (origin[:, :2, None] + offsets[None, :2]).mul_(inv_z[:, None]).clamp_(min=0).clamp_(max=last_pixel).to(torch.int32)
            pix = (uv[:, 1] * (W + 2)).add_(uv[:, 0]).view(-1)
            reading = signed.index_select(0, pix).view(z.shape)
            tsdf = reading.abs().sub_(z).mul_(inv_trunc)  # signed distance in truncations
            on_surface = (reading > 0) & (tsdf >= -1.0)
            near = on_surface & (tsdf < 1.0)  # within the band on either side
            w = on_surface.to(torch.float32)
            if carve:
                w.add_(((reading < 0) & (tsdf > 1.0)).to(torch.float32), alpha=self.free_space_weight)
            if sign < 0:
                w.neg_()
            # where w is not 0 the distance is at least -1 (surface) or above 1 (carving): clamped above only
            self.tsdf_sum.index_add_(0, chunk, tsdf.clamp_(max=1.0).mul_(w))
            self.weight.index_add_(0, chunk, w)
            self.block_revision.index_fill_(0, chunk, self.revision)
            # (R, G, B, 1) per voxel in the band; one outside it reads the border pixel, whose bytes are all 0
            rgbn = colours.index_select(0, pix.mul_(near.view(-1))).view(torch.uint8).view(*z.shape, 4)
            self.colour.index_add_(0, chunk, rgbn.to(torch.float32), alpha=sign)

    # ---------------------------------------------------------- read-outs
    def copy(self) -> SparseTsdfVolume:
        """An independent snapshot (a run reads it while new keyframes keep arriving in the original)."""
        out = SparseTsdfVolume.__new__(SparseTsdfVolume)
        out.__dict__.update(self.__dict__)
        n = self.num_blocks
        out.index = BlockIndex(self.device)
        out.index.sorted_keys, out.index.sorted_rows = self.index.sorted_keys.clone(), self.index.sorted_rows.clone()
        for name in STORAGE:
            setattr(out, name, getattr(self, name)[: max(n, 1)].clone())
        return out

    def tsdf(self, rows: torch.Tensor) -> torch.Tensor:
        """Mean truncated distance of the voxels of `rows` (rows, voxels); 1 (free) where unobserved."""
        w = self.weight.index_select(0, rows)
        observed = w > EMPTY_WEIGHT
        return torch.where(observed, self.tsdf_sum.index_select(0, rows) / w.clamp(min=EMPTY_WEIGHT), torch.ones_like(w))

    def mean_colour(self, rows: torch.Tensor) -> torch.Tensor:
        """Mean colour (0-255) of the voxels of `rows` (rows, voxels, 3); 0 where no reading fell in the band."""
        sums = self.colour.index_select(0, rows)
        count = sums[..., COUNT:]
        return torch.where(count > EMPTY_WEIGHT, sums[..., :COUNT] / count.clamp(min=EMPTY_WEIGHT), torch.zeros_like(sums[..., :COUNT]))

    def to_dense(self, bounds: tuple[np.ndarray, np.ndarray] | None = None) -> TsdfVolume | None:
        """The allocated blocks laid into one dense box (unallocated voxels unobserved), cropped to `bounds`
        (map frame, m) if given: what the geometry stage's initialisation reads. With `bounds` there is always a
        box (unobserved where nothing was fused); without, None when nothing was."""
        n, b = self.num_blocks, self.block_voxels
        coords = self.coords[:n]
        if bounds is None:
            if n == 0:
                return None
            first, last = coords.min(dim=0).values * b, (coords.max(dim=0).values + 1) * b - 1
        else:
            first = torch.as_tensor(np.floor(np.asarray(bounds[0], float) / self.voxel_size), dtype=torch.int64, device=self.device)
            last = torch.as_tensor(np.floor(np.asarray(bounds[1], float) / self.voxel_size), dtype=torch.int64, device=self.device)
            if bool((last < first).any()):
                return None
        extent = (last - first + 1).tolist()
        spec = VolumeSpec(first.cpu().numpy().astype(np.float64) * self.voxel_size, self.voxel_size, tuple(int(e) for e in extent))
        dense = TsdfVolume(spec, self.trunc / self.voxel_size, self.device)
        rows = torch.arange(n, device=self.device)
        voxel = (coords[:, None, :] * b + self.local_ijk[None] - first).reshape(-1, 3)  # in the dense box
        inside = ((voxel >= 0) & (voxel < torch.as_tensor(extent, device=self.device))).all(dim=1)
        flat = ((voxel[:, 0] * extent[1] + voxel[:, 1]) * extent[2] + voxel[:, 2])[inside]
        dense.tsdf[flat] = self.tsdf(rows).reshape(-1)[inside]
        dense.weight[flat] = self.weight[:n].reshape(-1)[inside]
        dense.color[flat] = self.mean_colour(rows).reshape(-1, 3)[inside]
        return dense

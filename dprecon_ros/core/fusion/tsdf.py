"""A dense TSDF volume over one box, in torch (CPU or CUDA).

Fusion itself runs on sparse blocks (sparse_tsdf.py); this dense form is what the geometry stage's
initialisation reads (`SparseTsdfVolume.to_dense`), and its `integrate` is the reference the sparse volume is
tested against. Per-object volumes fuse only that object's pixels as surface and use the other pixels
to carve free space in front of what they see, so occluders never paint into an object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dprecon_ros.core.types import CameraIntrinsics

VOXEL_CHUNK = 1 << 21


@dataclass
class VolumeSpec:
    """A box in the map frame: origin of voxel (0,0,0)'s corner (m), voxel size (m), shape (voxels)."""

    origin: np.ndarray
    voxel_size: float
    shape: tuple[int, int, int]

    @classmethod
    def around(cls, lo: np.ndarray, hi: np.ndarray, voxel_size: float, max_voxels: int) -> VolumeSpec:
        """Cover [lo, hi]; the voxel grows when the box would exceed `max_voxels`."""
        size = np.maximum(np.asarray(hi, float) - np.asarray(lo, float), voxel_size)
        count = np.prod(np.ceil(size / voxel_size))
        if count > max_voxels:
            voxel_size *= float((count / max_voxels) ** (1.0 / 3.0)) * 1.001
        shape = tuple(int(n) for n in np.ceil(size / voxel_size).astype(int) + 1)
        return cls(np.asarray(lo, dtype=np.float64), float(voxel_size), shape)

    @property
    def num_voxels(self) -> int:
        return int(np.prod(self.shape))


class TsdfVolume:
    def __init__(self, spec: VolumeSpec, truncation_voxels: float, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self.trunc = truncation_voxels * spec.voxel_size
        n = spec.num_voxels
        self.tsdf = torch.ones(n, dtype=torch.float32, device=device)
        self.weight = torch.zeros(n, dtype=torch.float32, device=device)
        self.color = torch.zeros((n, 3), dtype=torch.float32, device=device)

    def voxel_centers(self, start: int, stop: int) -> torch.Tensor:
        idx = torch.arange(start, stop, device=self.device)
        ny, nz = self.spec.shape[1], self.spec.shape[2]
        ijk = torch.stack([idx // (ny * nz), (idx // nz) % ny, idx % nz], dim=1).to(torch.float64)
        origin = torch.as_tensor(self.spec.origin, device=self.device)
        return origin + (ijk + 0.5) * self.spec.voxel_size

    def integrate(
        self,
        depth_m: np.ndarray,
        rgb: np.ndarray,
        intrinsics: CameraIntrinsics,
        T_world_camera: np.ndarray,
        surface_mask: np.ndarray,
        free_space_weight: float,
    ) -> None:
        """Fuse one view. surface_mask: pixels whose depth is this volume's surface; every other pixel with
        a reading only carves free space in front of it, with weight `free_space_weight`."""
        dev = self.device
        depth = torch.as_tensor(np.nan_to_num(depth_m, nan=0.0), dtype=torch.float32, device=dev)
        surface = torch.as_tensor(surface_mask, device=dev) & (depth > 0)
        colour = torch.as_tensor(rgb, dtype=torch.float32, device=dev)
        T_cw = torch.as_tensor(np.linalg.inv(T_world_camera), dtype=torch.float64, device=dev)
        H, W = depth.shape
        for start in range(0, self.spec.num_voxels, VOXEL_CHUNK):
            stop = min(start + VOXEL_CHUNK, self.spec.num_voxels)
            p = self.voxel_centers(start, stop) @ T_cw[:3, :3].T + T_cw[:3, 3]
            z = p[:, 2]
            in_front = z > 1e-6
            zs = torch.where(in_front, z, torch.ones_like(z))
            u = torch.round(p[:, 0] / zs * intrinsics.fx + intrinsics.cx).long()
            v = torch.round(p[:, 1] / zs * intrinsics.fy + intrinsics.cy).long()
            visible = in_front & (u >= 0) & (u < W) & (v >= 0) & (v < H)
            sel = torch.nonzero(visible).squeeze(1)
            if sel.numel() == 0:
                continue
            uu, vv = u[sel], v[sel]
            d = depth[vv, uu]
            sdf = d.double() - z[sel]
            is_surface = surface[vv, uu]
            obs_surface = is_surface & (sdf >= -self.trunc)
            obs_free = (~is_surface) & (d > 0) & (sdf > self.trunc) & (free_space_weight > 0)
            w_obs = torch.where(obs_surface, 1.0, torch.where(obs_free, float(free_space_weight), 0.0)).float()
            keep = w_obs > 0
            if not bool(keep.any()):
                continue
            gi = sel[keep] + start
            w_obs = w_obs[keep]
            t_obs = torch.clamp(sdf[keep] / self.trunc, -1.0, 1.0).float()
            w_old = self.weight[gi]
            w_new = w_old + w_obs
            self.tsdf[gi] = (self.tsdf[gi] * w_old + t_obs * w_obs) / w_new
            self.weight[gi] = w_new
            near = obs_surface[keep] & (sdf[keep].abs() < self.trunc)
            if bool(near.any()):
                gc = gi[near]
                c_obs = colour[vv[keep][near], uu[keep][near]]
                wc = self.weight[gc].unsqueeze(1)
                self.color[gc] = self.color[gc] + (c_obs - self.color[gc]) / wc.clamp(min=1.0)

    def grids(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tsdf, weight, colour) as numpy arrays of the volume's shape."""
        s = self.spec.shape
        return (
            self.tsdf.reshape(s).cpu().numpy(),
            self.weight.reshape(s).cpu().numpy(),
            self.color.reshape(*s, 3).cpu().numpy(),
        )

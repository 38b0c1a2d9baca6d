"""Keyframe pixels as training rays with their targets, in normalised scene units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dprecon_ros.core.types import Keyframe, SceneNormalisation


def normals_from_depth(depth: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame unit normals (H, W, 3) from a z-depth map by central differences, facing the camera,
    and where they are valid (all neighbours measured and not across a depth edge)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth.astype(np.float64)
    P = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=-1)
    du = np.zeros_like(P)
    dv = np.zeros_like(P)
    du[:, 1:-1] = P[:, 2:] - P[:, :-2]
    dv[1:-1] = P[2:] - P[:-2]
    n = np.cross(dv, du)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = n / np.maximum(norm, 1e-12)
    n = np.where((n * P).sum(-1, keepdims=True) > 0, -n, n)
    valid = np.isfinite(z) & (norm[..., 0] > 0)
    valid[:, [0, -1]] = valid[[0, -1], :] = False
    for shifted in (z[:, 2:], z[:, :-2]):
        valid[:, 1:-1] &= np.isfinite(shifted) & (np.abs(shifted - z[:, 1:-1]) < 0.05 * z[:, 1:-1])
    for shifted in (z[2:], z[:-2]):
        valid[1:-1] &= np.isfinite(shifted) & (np.abs(shifted - z[1:-1]) < 0.05 * z[1:-1])
    return n.astype(np.float32), valid & np.isfinite(n).all(-1)


@dataclass
class CameraSet:
    """Pinhole cameras in scene units: centres (I, 3), camera-to-world rotations (I, 3, 3), fx fy cx cy (I, 4)
    and image sizes (I, 2) as (height, width)."""

    origins: torch.Tensor
    rotations: torch.Tensor
    intrinsics: torch.Tensor
    sizes: torch.Tensor

    def patch_rays(self, image: torch.Tensor, corner: torch.Tensor, size: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Origins and unit directions (P, size*size, 3) of square pixel patches: `corner` (P, 2) is the top-left
        (row, col) of each patch in camera `image` (P,), pixels `stride` apart."""
        offsets = torch.arange(size, device=corner.device) * stride
        rows = corner[:, 0, None, None] + offsets[None, :, None]
        cols = corner[:, 1, None, None] + offsets[None, None, :]
        k = self.intrinsics[image]
        x = (cols - k[:, 2, None, None]) / k[:, 0, None, None]
        y = (rows - k[:, 3, None, None]) / k[:, 1, None, None]
        x, y = torch.broadcast_tensors(x, y)
        cam = torch.stack([x, y, torch.ones_like(x)], dim=-1).reshape(len(image), -1, 3)
        dirs = torch.nn.functional.normalize(cam @ self.rotations[image].transpose(1, 2), dim=-1)
        return self.origins[image][:, None].expand_as(dirs), dirs


@dataclass
class RayPool:
    """Every usable pixel of the keyframes: ray, colour, distance along the ray, normal, field index."""

    origins: torch.Tensor
    directions: torch.Tensor
    rgb: torch.Tensor
    distance: torch.Tensor  # NaN where there is no depth reading
    normal: torch.Tensor  # world, scene units (unit vectors)
    normal_valid: torch.Tensor
    field: torch.Tensor  # object index 0..K-1, or K for the background
    object_pixels: torch.Tensor  # indices of pixels on objects
    near: float  # no reading is nearer than this (scene units): where rendering starts
    image: torch.Tensor  # keyframe index of each pixel (per-image depth alignment)
    cameras: CameraSet  # the keyframes' cameras (virtual views near them)
    missing_depth: bool = False  # some pixels have no depth reading (they need a traced sampling guide)

    @property
    def num_images(self) -> int:
        return len(self.cameras.origins)

    def __len__(self) -> int:
        return len(self.origins)


def build_ray_pool(
    keyframes: list[Keyframe],
    object_ids: list[int],
    norm: SceneNormalisation,
    device: torch.device,
    min_depth_m: float,
    stride: int = 1,
) -> RayPool:
    """Rays of every `stride`-th pixel of every keyframe; pixels of unreconstructed instances are skipped."""
    index_of = {oid: k for k, oid in enumerate(object_ids)}
    background = len(object_ids)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("o", "d", "rgb", "dist", "n", "nv", "field", "image")}
    cams: dict[str, list[np.ndarray]] = {k: [] for k in ("o", "R", "K", "size")}
    for image, kf in enumerate(keyframes):
        f = kf.frame
        K = f.intrinsics.K
        h, w = f.instance.shape
        v, u = np.mgrid[0:h:stride, 0:w:stride]
        v, u = v.ravel(), u.ravel()
        field = np.full(len(u), background, dtype=np.int64)
        inst = f.instance[v, u]
        known = np.ones(len(u), dtype=bool)
        for i in np.unique(inst):
            if i == 0:
                continue
            oid = kf.instance_to_object.get(int(i))
            if oid in index_of:
                field[inst == i] = index_of[oid]
            else:
                known[inst == i] = False  # an instance without a field: neither object nor background
        R = f.T_world_camera[:3, :3]
        cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones(len(u))], axis=1)
        dirs = cam @ R.T
        ray_len = np.linalg.norm(dirs, axis=1)
        dirs = dirs / ray_len[:, None]
        if f.depth_m is not None:
            z = f.depth_m[v, u].astype(np.float64)
            dist = z * ray_len / norm.scale
            normals, valid = normals_from_depth(f.depth_m, K)
            n_world = normals[v, u] @ R.T
            n_valid = valid[v, u]
        else:
            dist = np.full(len(u), np.nan)
            n_world = np.zeros((len(u), 3))
            n_valid = np.zeros(len(u), dtype=bool)
        origin = norm.to_scene(f.T_world_camera[:3, 3])
        parts["o"].append(np.repeat(origin[None], known.sum(), axis=0))
        parts["d"].append(dirs[known])
        parts["rgb"].append(f.rgb[v, u][known] / 255.0)
        parts["dist"].append(dist[known])
        parts["n"].append(n_world[known])
        parts["nv"].append(n_valid[known])
        parts["field"].append(field[known])
        parts["image"].append(np.full(int(known.sum()), image))
        cams["o"].append(origin)
        cams["R"].append(R)
        cams["K"].append(np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]]))
        cams["size"].append(np.array([h, w]))

    def cat(key: str, dtype) -> torch.Tensor:
        return torch.as_tensor(np.concatenate(parts[key]), dtype=dtype, device=device)

    field = cat("field", torch.long)
    distance = cat("dist", torch.float32)

    def stacked(key: str, dtype) -> torch.Tensor:
        return torch.as_tensor(np.stack(cams[key]), dtype=dtype, device=device)

    return RayPool(
        origins=cat("o", torch.float32),
        directions=cat("d", torch.float32),
        rgb=cat("rgb", torch.float32),
        distance=distance,
        normal=cat("n", torch.float32),
        normal_valid=cat("nv", torch.bool),
        field=field,
        object_pixels=torch.nonzero(field < background).squeeze(1),
        near=min_depth_m / norm.scale,
        image=cat("image", torch.long),
        cameras=CameraSet(
            stacked("o", torch.float32), stacked("R", torch.float32), stacked("K", torch.float32), stacked("size", torch.long)
        ),
        missing_depth=bool((~torch.isfinite(distance)).any()),
    )

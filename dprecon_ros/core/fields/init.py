"""Start the fields at the observed geometry.

An object starts as its visual hull carved with depth: space some view saw behind the object's mask, that no
view saw through and that is not another thing's surface; its far side, never seen, stays inside. The largest
component of that hull, as a signed distance, with the fused TSDF substituted in the observed band, is a
closed first shape that stage 1 then fits.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from dprecon_ros.core.fields.composite import GridBox
from dprecon_ros.core.fusion.tsdf import TsdfVolume
from dprecon_ros.core.types import Keyframe

BAND = 0.999  # |TSDF| below this is a real observation of the surface, not the truncation value


def sample_volume(vol: TsdfVolume, points_map: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tsdf, weight, inside the volume) at map points, nearest voxel."""
    tsdf, weight, _ = vol.grids()
    ijk = np.floor((points_map - vol.spec.origin) / vol.spec.voxel_size).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.array(vol.spec.shape)), axis=-1)
    ijk = np.clip(ijk, 0, np.array(vol.spec.shape) - 1)
    return tsdf[ijk[..., 0], ijk[..., 1], ijk[..., 2]], weight[ijk[..., 0], ijk[..., 1], ijk[..., 2]], inside


def signed_distance(occupied: np.ndarray, voxel: float) -> np.ndarray:
    """Signed Euclidean distance (negative inside) of a boolean grid, in the grid's units."""
    if not occupied.any():
        return np.full(occupied.shape, 3 * voxel, dtype=np.float32)
    outside = ndimage.distance_transform_edt(~occupied)
    inside = ndimage.distance_transform_edt(occupied)
    return ((outside - inside + np.where(occupied, 0.5, -0.5)) * voxel).astype(np.float32)


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def carve_hull(points_map: torch.Tensor, keyframes: list[Keyframe], object_id: int, margin_m: float) -> torch.Tensor:
    """Visual hull with depth: points some view saw behind the object's own mask, that no view saw through
    (in front of a measured surface) and that do not lie on another thing's measured surface."""
    device = points_map.device
    free = torch.zeros(len(points_map), dtype=torch.bool, device=device)
    foreign = torch.zeros_like(free)
    behind_object = torch.zeros_like(free)
    for kf in keyframes:
        f = kf.frame
        if f.depth_m is None:
            continue
        T_cw = torch.as_tensor(np.linalg.inv(f.T_world_camera), dtype=torch.float32, device=device)
        p = points_map @ T_cw[:3, :3].T + T_cw[:3, 3]
        z = p[:, 2]
        K = f.intrinsics
        zs = z.clamp(min=1e-6)
        u = torch.round(p[:, 0] / zs * K.fx + K.cx).long()
        v = torch.round(p[:, 1] / zs * K.fy + K.cy).long()
        sel = torch.nonzero((z > 1e-6) & (u >= 0) & (u < K.width) & (v >= 0) & (v < K.height)).squeeze(1)
        depth = torch.as_tensor(np.nan_to_num(f.depth_m, nan=0.0), device=device)[v[sel], u[sel]]
        mask = torch.as_tensor(kf.object_mask(object_id), device=device)[v[sel], u[sel]]
        measured = depth > 0
        zz = z[sel]
        free[sel] |= measured & (zz < depth - margin_m)
        foreign[sel] |= measured & ~mask & ((zz - depth).abs() <= margin_m)
        behind_object[sel] |= mask & measured & (zz >= depth - margin_m)
    return behind_object & ~free & ~foreign


def object_sdf_init(
    vol: TsdfVolume, box: GridBox, to_map, scale: float, min_weight: float, keyframes: list[Keyframe], object_id: int, margin_m: float
) -> torch.Tensor:
    """Initial SDF (scene units) on the object's grid: the fused TSDF in the observed band around the surface
    (sub-voxel accurate), the signed distance to the object's carved hull elsewhere."""
    centers = box.centers()
    points = to_map(centers.reshape(-1, 3).cpu().numpy())
    occupied = carve_hull(torch.as_tensor(points, dtype=torch.float32, device=centers.device), keyframes, object_id, margin_m)
    occupied = largest_component(occupied.reshape(box.shape).cpu().numpy())
    hull = signed_distance(occupied, box.voxel)
    tsdf, weight, inside = sample_volume(vol, points.reshape(*box.shape, 3))
    band = inside & (weight >= min_weight) & (np.abs(tsdf) < BAND) & (np.sign(tsdf) == np.sign(hull))
    return torch.from_numpy(np.where(band, tsdf * vol.trunc / scale, hull).astype(np.float32))


def background_sdf_init(vol: TsdfVolume | None, box: GridBox, to_map, scale: float, min_weight: float) -> torch.Tensor:
    """Background: a shell one truncation distance thick behind its observed surfaces (the TSDF inside the
    band), true distances to it elsewhere. Unlike an object it gets no hull: walls and floor are open, and
    space no camera covered (behind and above the cameras) must not turn solid."""
    centers = box.centers().cpu().numpy()
    if vol is None:
        return torch.full(box.shape, 3 * box.voxel, dtype=torch.float32)
    tsdf, weight, inside = sample_volume(vol, to_map(centers))
    observed = inside & (weight >= min_weight)
    band = observed & (np.abs(tsdf) < BAND)
    shell = signed_distance(observed & (tsdf < 0), box.voxel)
    keep = band & (np.sign(tsdf) == np.sign(shell))
    return torch.from_numpy(np.where(keep, tsdf * vol.trunc / scale, shell).astype(np.float32))

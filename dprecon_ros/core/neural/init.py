"""Start the fields at the observed geometry: signed distances from the TSDF's carved occupancy.

A voxel is free if some view saw through it (TSDF observed and positive); everything else inside the object's
fused volume is possibly occupied (seen as surface or inside, or never seen: the far side). The largest
occupied component is the initial shape, a closed visual-hull-and-depth estimate that stage 1 then fits.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ..tsdf import TsdfVolume
from .fields import GridBox

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


def object_sdf_init(vol: TsdfVolume, box: GridBox, to_map, scale: float, min_weight: float) -> torch.Tensor:
    """Initial SDF (scene units) on the object's grid from its fused TSDF volume: the TSDF itself in the
    observed band around the surface (sub-voxel accurate), the distance to the carved hull elsewhere."""
    centers = box.centers().cpu().numpy()
    tsdf, weight, inside = sample_volume(vol, to_map(centers))
    observed = inside & (weight >= min_weight)
    free = observed & (tsdf > 0)
    occupied = largest_component(inside & ~free)
    hull = signed_distance(occupied, box.voxel)
    band = observed & (np.abs(tsdf) < BAND) & (np.sign(tsdf) == np.sign(hull))
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

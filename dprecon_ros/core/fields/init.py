"""Start the fields at the observed geometry.

An object starts as its visual hull carved with depth: space some view saw behind the object's mask, that no
view saw through and that is not another thing's surface; its far side, never seen, stays inside. The largest
component of that hull, as a signed distance, with the fused TSDF (read trilinearly) blended in smoothly
where it observed the surface, is a closed first shape. Its zero level set is then redistanced, so stage 1
starts from a true signed distance (|grad| = 1) rather than a staircase of truncated values.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage import measure

from dprecon_ros.core.fields.box import GridBox
from dprecon_ros.core.fusion.tsdf import TsdfVolume
from dprecon_ros.core.types import Keyframe

LOWEST_SURFACE_PERCENTILE = 5.0  # robust lowest observed surface point of an object (noisy depth)
BAND = 0.999  # |TSDF| below this is a real observation of the surface, not the truncation value


def observed_band(vol: TsdfVolume, points_map: np.ndarray, min_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tsdf, band weight in [0, 1], observed) at map points: the band weight is 1 where every neighbouring
    voxel saw the surface closely (|tsdf| < BAND with enough weight) and falls smoothly to 0 off the band."""
    tsdf, weight, _ = vol.grids()
    indicator = ((np.abs(tsdf) < BAND) & (weight >= min_weight)).astype(np.float32)
    c = (points_map - vol.spec.origin) / vol.spec.voxel_size - 0.5
    shape = np.array(vol.spec.shape)
    inside = np.all((c >= -0.5) & (c <= shape - 0.5), axis=-1)
    coords = c.reshape(-1, 3).T

    def read(grid: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(grid.astype(np.float32), coords, order=1, mode="nearest").reshape(c.shape[:-1])

    band = np.where(inside, read(indicator), 0.0)
    observed = inside & (read((weight >= min_weight).astype(np.float32)) > 0.5)
    return read(tsdf), smoothstep(band), observed


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def redistance(values: np.ndarray, voxel: float) -> np.ndarray:
    """The signed distance (grid units scaled by `voxel`) to the zero level set of `values` (X, Y, Z), with the
    signs of `values`: distances to a dense sampling of the marching-cubes surface (vertices and face
    centres), point-to-plane near it so the level set does not move. Unchanged if there is no surface."""
    if values.min() >= 0 or values.max() <= 0:
        return values.astype(np.float32)
    verts, faces, _, _ = measure.marching_cubes(values, level=0.0, allow_degenerate=False)
    tri = verts[faces]
    face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vert_normals = np.zeros_like(verts)
    for corner in range(3):
        np.add.at(vert_normals, faces[:, corner], face_normals)
    points = np.concatenate([verts, tri.mean(axis=1)])
    normals = np.concatenate([vert_normals, face_normals])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    spacing = float(np.linalg.norm(tri[:, 1] - tri[:, 0], axis=1).mean())
    nodes = np.stack(np.meshgrid(*[np.arange(n) for n in values.shape], indexing="ij"), axis=-1).reshape(-1, 3)
    dist, nearest = cKDTree(points).query(nodes, workers=-1)
    plane = np.abs(((nodes - points[nearest]) * normals[nearest]).sum(axis=1))
    unsigned = np.maximum(plane, dist - spacing).reshape(values.shape)
    return (np.where(values < 0, -unsigned, unsigned) * voxel).astype(np.float32)


def signed_distance(occupied: np.ndarray, voxel: float) -> np.ndarray:
    """Signed Euclidean distance (negative inside) of a boolean grid, in the grid's units."""
    if not occupied.any():
        return np.full(occupied.shape, 3 * voxel, dtype=np.float32)
    outside = ndimage.distance_transform_edt(~occupied)
    inside = ndimage.distance_transform_edt(occupied)
    return ((outside - inside + np.where(occupied, 0.5, -0.5)) * voxel).astype(np.float32)


def main_components(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """The components of `mask` at least `min_fraction` of the largest one's size (a table's legs stay with
    its top; specks of mis-carved space go)."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.isin(labels, np.nonzero(sizes >= min_fraction * sizes.max())[0])


def carve_hull(
    points_map: torch.Tensor, keyframes: list[Keyframe], object_id: int, margin_m: float, max_depth_m: float = float("inf")
) -> torch.Tensor:
    """Visual hull with depth: points some view saw behind the object's own mask (at most `max_depth_m` behind
    the measured surface: a table top seen from above does not make the floor under it solid), that no view saw through
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
        behind_object[sel] |= mask & measured & (zz >= depth - margin_m) & (zz <= depth + max_depth_m)
    return behind_object & ~free & ~foreign


def object_sdf_init(
    vol: TsdfVolume,
    box: GridBox,
    to_map,
    scale: float,
    min_weight: float,
    keyframes: list[Keyframe],
    object_id: int,
    margin_m: float,
    extent: tuple[np.ndarray, np.ndarray],
    max_depth_m: float = float("inf"),
    min_component_fraction: float = 1.0,
    up: int = 2,
) -> torch.Tensor:
    """Initial SDF (scene units) at the object grid's nodes: the fused TSDF where it observed the surface
    (sub-voxel accurate), the signed distance to the object's carved hull within `extent` (map-frame lo/hi;
    the grid reaches beyond it) elsewhere, blended smoothly and redistanced. Axis `up` of the map is up."""
    centers = box.centers()
    points = to_map(centers.reshape(-1, 3).cpu().numpy())
    occupied = carve_hull(torch.as_tensor(points, dtype=torch.float32, device=centers.device), keyframes, object_id, margin_m, max_depth_m)
    within = np.all((points >= extent[0]) & (points <= extent[1]), axis=-1)
    tsdf, band, _ = observed_band(vol, points.reshape(*box.shape, 3), min_weight)
    surface = ((band > 0.5) & (np.abs(tsdf) < 0.5)).reshape(-1)
    if surface.any():  # nothing below the object's lowest observed surface: what it stands on bounds it
        within &= points[:, up] >= np.percentile(points[surface, up], LOWEST_SURFACE_PERCENTILE)
    occupied = main_components((occupied.cpu().numpy() & within).reshape(box.shape), min_component_fraction)
    hull = signed_distance(occupied, box.voxel)
    blended = band * tsdf * vol.trunc / scale + (1 - band) * hull
    return torch.from_numpy(redistance(blended / box.voxel, box.voxel))


def background_sdf_init(vol: TsdfVolume | None, box: GridBox, to_map, scale: float, min_weight: float) -> torch.Tensor:
    """Background: a shell one truncation distance thick behind its observed surfaces (the TSDF where it saw
    them), redistanced. Unlike an object it gets no hull: walls and floor are open, and space no camera
    covered (behind and above the cameras) must not turn solid; the bounding sphere closes the scene."""
    if vol is None:
        return torch.full(box.shape, 3 * box.voxel, dtype=torch.float32)
    tsdf, band, observed = observed_band(vol, to_map(box.centers().cpu().numpy()), min_weight)
    shell = signed_distance(observed & (tsdf < 0), box.voxel)
    blended = band * tsdf * vol.trunc / scale + (1 - band) * shell
    return torch.from_numpy(redistance(blended / box.voxel, box.voxel))

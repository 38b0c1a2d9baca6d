"""One view's update of every voxel, against a float64 reference written the plain way.

The fused update folds the intrinsics, the image border and the rounding into one projection and reads colour
and its count from one packed gather; this checks each voxel of a box of blocks around the camera, including
voxels behind it, beside the image and beyond its right and bottom edges, readings beyond the maximum depth,
pixels without a reading, non-surface pixels that carve, and a colour that changes from pixel to pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dprecon_ros.core.fusion.blocks import pack, unique_keys
from dprecon_ros.core.fusion.sparse_tsdf import DepthView, SparseTsdfVolume
from dprecon_ros.core.geometry import look_at
from dprecon_ros.core.types import CameraIntrinsics, Frame

CPU = torch.device("cpu")
W, H = 64, 48
K = CameraIntrinsics(50.0, 52.0, 31.3, 23.6, W, H)
VOXEL, TRUNC_VOXELS, BLOCK = 0.04, 3.0, 8
MAX_DEPTH_M = 1.5
TIE_PX = 1e-3  # voxels projecting this close to a pixel boundary may round either way in float32


def scene() -> tuple[Frame, np.ndarray]:
    """A slanted wall about 1 m away with a hole (no reading), a patch beyond the maximum depth, and a strip of
    non-surface pixels; every pixel a different colour."""
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    depth = (0.9 + 0.004 * u + 0.002 * v).astype(np.float32)
    depth[10:16, 20:30] = 0.0  # no reading
    depth[30:40, 5:15] = 2.0  # beyond MAX_DEPTH_M
    rgb = np.stack([(u * 4) % 256, (v * 5) % 256, np.full_like(u, 77)], axis=-1).astype(np.uint8)
    surface = np.ones((H, W), bool)
    surface[:, 48:] = False  # carves where the volume does
    T_wc = look_at(np.array([0.11, -0.07, 0.43]), np.array([1.2, 0.3, 0.2]))
    return Frame(0.0, rgb, depth, np.zeros((H, W), np.int32), {}, K, T_wc), surface


def voxel_centres(volume: SparseTsdfVolume, rows: torch.Tensor) -> np.ndarray:
    """(rows, voxels, 3) map-frame centres, in float64."""
    return (volume.coords[rows].numpy()[:, None, :] * BLOCK + volume.local_ijk.numpy()[None] + 0.5) * VOXEL


def reference(volume: SparseTsdfVolume, rows: torch.Tensor, frame: Frame, surface: np.ndarray):
    """(tsdf_sum, weight, colour (R, G, B, count), u, v) per voxel of `rows`, in float64."""
    centres = voxel_centres(volume, rows)
    T_cw = np.linalg.inv(frame.T_world_camera)
    p = centres @ T_cw[:3, :3].T + T_cw[:3, 3]
    z = p[..., 2]
    in_front = z > 0
    safe_z = np.where(in_front, z, 1.0)
    u = K.fx * p[..., 0] / safe_z + K.cx
    v = K.fy * p[..., 1] / safe_z + K.cy
    col, row = np.floor(u + 0.5).astype(np.int64), np.floor(v + 0.5).astype(np.int64)
    inside = in_front & (col >= 0) & (col < W) & (row >= 0) & (row < H)
    depth = np.where(frame.depth_m > MAX_DEPTH_M, 0.0, frame.depth_m.astype(np.float64))
    signed = np.where(surface & (depth > 0), depth, -depth)
    reading = np.where(inside, signed[row.clip(0, H - 1), col.clip(0, W - 1)], 0.0)
    trunc = TRUNC_VOXELS * VOXEL
    sdf = np.abs(reading) - z
    on_surface = (reading > 0) & (sdf >= -trunc)
    weight = on_surface + volume.free_space_weight * ((reading < 0) & (sdf > trunc))
    tsdf = np.clip(sdf / trunc, -1, 1) * weight
    near = on_surface & (sdf < trunc)
    rgb = frame.rgb[row.clip(0, H - 1), col.clip(0, W - 1)].astype(np.float64)
    colour = np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=-1) * near[..., None]
    return tsdf, weight, colour, np.where(in_front, u, 0.0), np.where(in_front, v, 0.0)


@pytest.mark.parametrize("free_space_weight", [0.0, 0.5])
def test_every_voxel_around_the_camera_is_updated_as_the_plain_projection_says(free_space_weight):
    frame, surface = scene()
    volume = SparseTsdfVolume(VOXEL, TRUNC_VOXELS, BLOCK, CPU, free_space_weight=free_space_weight, max_depth_m=MAX_DEPTH_M)
    camera = frame.T_world_camera[:3, 3]
    lo, hi = np.floor((camera - 1.0) / (VOXEL * BLOCK)), np.floor((camera + 1.6) / (VOXEL * BLOCK))
    axes = [torch.arange(int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True)]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    rows, _ = volume._allocate(unique_keys(pack(coords)))
    view = DepthView.of(frame, CPU)
    volume._update(rows, view, torch.as_tensor(surface) & (view.depth > 0), 1)

    tsdf, weight, colour, u, v = reference(volume, rows, frame, surface)
    assert weight.shape == tuple(volume.weight[rows].shape)
    # the box holds every case the projection folds together
    z = (voxel_centres(volume, rows) - camera) @ frame.T_world_camera[:3, 2]
    assert (z < 0).sum() > 1000  # behind the camera
    assert ((z > 0) & (u >= W - 0.5)).sum() > 100 and ((z > 0) & (v >= H - 0.5)).sum() > 100  # past right, bottom
    assert ((z > 0) & (u < -0.5)).sum() > 100 and ((z > 0) & (v < -0.5)).sum() > 100  # past left, top
    assert (colour[..., 3] > 0).sum() > 1000 and len(np.unique(colour[..., 0][colour[..., 3] > 0])) > 10
    if free_space_weight:
        assert ((weight > 0) & (weight < 1)).sum() > 100  # carved voxels

    # voxels that project onto a pixel boundary may round either way: left out (a tiny share)
    tie = (np.abs(u - np.floor(u) - 0.5) < TIE_PX) | (np.abs(v - np.floor(v) - 0.5) < TIE_PX)
    assert tie.mean() < 0.01
    keep = ~tie
    np.testing.assert_array_equal(volume.weight[rows].numpy()[keep], weight[keep])
    np.testing.assert_allclose(volume.tsdf_sum[rows].numpy()[keep], tsdf[keep], atol=1e-4)
    np.testing.assert_array_equal(volume.colour[rows].numpy()[keep], colour[keep])

    volume._update(rows, view, torch.as_tensor(surface) & (view.depth > 0), -1)  # and out again, exactly
    assert not volume.weight[rows].any() and not volume.colour[rows].any()

"""Clip-space positions for the rasterisers: pinhole cameras in OpenCV convention, and UV space for baking.

The projection puts pixel (row i, column j) of the raster at image pixel (i, j): OpenCV pixel centres are at
integer coordinates, nvdiffrast's at NDC (2j + 1) / W − 1, so the principal point shifts by half a pixel and no
image is flipped. Depth maps to NDC as OpenGL does between `near` and `far`.
"""

from __future__ import annotations

import numpy as np
import torch

from dprecon_ros.core.types import CameraIntrinsics


def clip_from_opencv(intrinsics: CameraIntrinsics, near: float, far: float) -> np.ndarray:
    """4×4 matrix from OpenCV camera coordinates (x right, y down, z forward) to clip space."""
    w, h = intrinsics.width, intrinsics.height
    return np.array(
        [
            [2 * intrinsics.fx / w, 0.0, (2 * intrinsics.cx + 1) / w - 1, 0.0],
            [0.0, 2 * intrinsics.fy / h, (2 * intrinsics.cy + 1) / h - 1, 0.0],
            [0.0, 0.0, (far + near) / (far - near), -2 * far * near / (far - near)],
            [0.0, 0.0, 1.0, 0.0],
        ]
    )


def project_to_clip(
    vertices: torch.Tensor, T_world_camera: np.ndarray, intrinsics: CameraIntrinsics, near: float, far: float
) -> torch.Tensor:
    """(V, 3) map-frame vertices seen by one camera -> (V, 4) clip positions."""
    T_camera_world = np.linalg.inv(np.asarray(T_world_camera, dtype=np.float64))
    full = clip_from_opencv(intrinsics, near, far) @ T_camera_world
    m = torch.as_tensor(full, dtype=vertices.dtype, device=vertices.device)
    return torch.cat([vertices, torch.ones_like(vertices[:, :1])], dim=1) @ m.T


def project_to_square_views(
    vertices: torch.Tensor, T_world_camera: torch.Tensor, fov_y: torch.Tensor, size: int, near: float, far: float
) -> torch.Tensor:
    """(V, 3) map-frame vertices seen by B square pinhole cameras -> (B, V, 4) clip positions.

    `T_world_camera` (B, 4, 4) must be rigid (as `look_at` builds them) and `fov_y` (B,) is in radians. Unlike
    `project_to_clip`, everything stays on the vertices' device: the SDS loops draw new cameras every step, and
    reading them back to the host would make the CPU wait for the GPU's previous step before launching the next.
    """
    rotation = T_world_camera[:, :3, :3].transpose(1, 2)  # camera <- world
    translation = -(rotation @ T_world_camera[:, :3, 3:4])  # (B, 3, 1)
    focal = (size / 2) / torch.tan(fov_y / 2)  # pixels
    centre = (size - 1) / 2
    clip = torch.zeros(len(fov_y), 4, 4, dtype=vertices.dtype, device=vertices.device)
    clip[:, 0, 0] = clip[:, 1, 1] = 2 * focal / size
    clip[:, 0, 2] = clip[:, 1, 2] = (2 * centre + 1) / size - 1
    clip[:, 2, 2] = (far + near) / (far - near)
    clip[:, 2, 3] = -2 * far * near / (far - near)
    clip[:, 3, 2] = 1.0
    camera_from_world = torch.zeros_like(clip)
    camera_from_world[:, :3, :3], camera_from_world[:, :3, 3:4] = rotation, translation
    camera_from_world[:, 3, 3] = 1.0
    full = clip @ camera_from_world
    homogeneous = torch.cat([vertices, torch.ones_like(vertices[:, :1])], dim=1)
    return homogeneous[None] @ full.transpose(1, 2)


def uv_to_clip(uv: torch.Tensor) -> torch.Tensor:
    """(V, 2) texture coordinates -> (V, 4) clip positions, so rasterising at the texture's size gives, per
    texel, the triangle and barycentrics under it (row i of the raster is texture row i, v = (i + 0.5) / H)."""
    xy = uv * 2 - 1
    return torch.cat([xy, torch.zeros_like(xy[:, :1]), torch.ones_like(xy[:, :1])], dim=1)

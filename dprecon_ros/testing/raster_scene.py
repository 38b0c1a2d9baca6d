"""Keyframes of a known coloured mesh, rendered with the torch rasteriser: texture tests without a simulator."""

from __future__ import annotations

import numpy as np
import torch

from dprecon_ros.core.raster import project_to_clip
from dprecon_ros.core.raster.torch_raster import TorchRasteriser
from dprecon_ros.core.types import CameraIntrinsics, Frame, Keyframe

NEAR_M, FAR_M = 0.05, 20.0


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """T_world_camera of an OpenCV camera (z forward, y down) at `eye` looking at `target`."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    return T


def render_keyframe(
    vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray, T_world_camera: np.ndarray, intrinsics: CameraIntrinsics, index: int
) -> Keyframe:
    """A keyframe of one object (instance 1 -> object 1) with per-vertex colours (N, 3) uint8, z-depth and mask."""
    r = TorchRasteriser()
    v = torch.as_tensor(vertices, dtype=torch.float32)
    f = torch.as_tensor(faces, dtype=torch.int32)
    rast = r.rasterize(project_to_clip(v, T_world_camera, intrinsics, NEAR_M, FAR_M)[None], f, (intrinsics.height, intrinsics.width))
    cam = (v - torch.as_tensor(T_world_camera[:3, 3], dtype=torch.float32)) @ torch.as_tensor(T_world_camera[:3, :3], dtype=torch.float32)
    attrs = torch.cat([torch.as_tensor(colours, dtype=torch.float32), cam[:, 2:3]], dim=1)
    values = r.interpolate(attrs, rast, f)[0]
    covered = (rast[0, ..., 3] > 0).numpy()
    rgb = np.clip(values[..., :3].numpy() + 0.5, 0, 255).astype(np.uint8)
    depth = np.where(covered, values[..., 3].numpy(), np.nan).astype(np.float32)
    instance = covered.astype(np.int32)
    frame = Frame(float(index), rgb, depth, instance, {1: "thing"}, intrinsics, T_world_camera)
    return Keyframe(index, frame, {1: 1})

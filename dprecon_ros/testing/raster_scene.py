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


# A 0.4 m cube with one flat colour per side, seen by keyframes from +x, +y and above only: the texture tests' scene
CUBE_INTRINSICS = CameraIntrinsics(90.0, 90.0, 47.5, 35.5, 96, 72)
CUBE_CENTRE = np.array([0.0, 0.0, 0.2])
CUBE_SIDE_COLOURS = {  # outward normal -> colour
    (1, 0, 0): (220, 40, 40),
    (-1, 0, 0): (40, 220, 40),
    (0, 1, 0): (40, 40, 220),
    (0, -1, 0): (220, 220, 40),
    (0, 0, 1): (40, 220, 220),
    (0, 0, -1): (220, 40, 220),
}
CUBE_SEEN = ((1, 0, 0), (0, 1, 0), (0, 0, 1))


def coloured_cube(subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cube, faces split so each side is one flat colour: vertices, faces, per-vertex colours."""
    import trimesh

    mesh = trimesh.creation.box((0.4, 0.4, 0.4))
    mesh.apply_translation(CUBE_CENTRE)
    for _ in range(subdivisions):
        mesh = mesh.subdivide()
    mesh.unmerge_vertices()
    colours = np.zeros((len(mesh.vertices), 3))
    for face, normal in zip(mesh.faces, mesh.face_normals, strict=True):
        colours[face] = CUBE_SIDE_COLOURS[tuple(int(round(c)) for c in normal)]
    return np.asarray(mesh.vertices), np.asarray(mesh.faces), colours


def cube_keyframes() -> list[Keyframe]:
    vertices, faces, colours = coloured_cube(subdivisions=1)
    eyes = [CUBE_CENTRE + 1.2 * np.array([np.cos(a), np.sin(a), 0.8]) for a in np.radians([10, 45, 80])]
    return [render_keyframe(vertices, faces, colours, look_at(eye, CUBE_CENTRE), CUBE_INTRINSICS, i) for i, eye in enumerate(eyes)]


def cube_mesh() -> tuple[np.ndarray, np.ndarray]:
    """The cube welded into one surface, finer than the keyframes' (what the texture stage gets)."""
    import trimesh

    vertices, faces, _ = coloured_cube(subdivisions=2)
    mesh = trimesh.Trimesh(vertices, faces, process=True)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)

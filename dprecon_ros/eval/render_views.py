"""Render a reconstruction from a camera (every object and the background, nearest surface wins), with its
textures or with its vertex colours, and score renders against images: what the texture benchmark compares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dprecon_ros.core.raster import Rasteriser, project_to_clip
from dprecon_ros.core.types import CameraIntrinsics, ObjectReconstruction, Reconstruction

NEAR_M, FAR_M = 0.05, 50.0


@dataclass
class SceneMeshes:
    """All meshes of a reconstruction in one vertex and face array, with each mesh's face range."""

    meshes: list[ObjectReconstruction]
    vertices: torch.Tensor
    faces: torch.Tensor
    first_face: np.ndarray  # (M + 1,) face offsets


def scene_meshes(recon: Reconstruction, device: torch.device) -> SceneMeshes:
    meshes = [o for o in [*recon.objects, recon.background] if o is not None and not o.is_empty]
    offsets, faces, vertex_base = [0], [], 0
    for m in meshes:
        faces.append(np.asarray(m.faces) + vertex_base)
        vertex_base += len(m.vertices)
        offsets.append(offsets[-1] + len(m.faces))
    vertices = np.concatenate([m.vertices for m in meshes]) if meshes else np.zeros((0, 3))
    return SceneMeshes(
        meshes,
        torch.as_tensor(vertices, dtype=torch.float32, device=device),
        torch.as_tensor(np.concatenate(faces) if faces else np.zeros((0, 3)), dtype=torch.int32, device=device),
        np.asarray(offsets),
    )


def render_view(
    scene: SceneMeshes, rasteriser: Rasteriser, T_world_camera: np.ndarray, intrinsics: CameraIntrinsics, textured: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) float RGB in [0, 255] and the (H, W) covered mask. `textured`: each textured mesh is sampled
    from its texture (bilinear), the others and all meshes when False from their vertex colours."""
    device = scene.vertices.device
    size = (intrinsics.height, intrinsics.width)
    clip = project_to_clip(scene.vertices, T_world_camera, intrinsics, NEAR_M, FAR_M)
    rast = rasteriser.rasterize(clip[None], scene.faces, size)
    face = rast[0, ..., 3].long() - 1
    colours = torch.as_tensor(np.concatenate([m.vertex_colors[:, :3] for m in scene.meshes]), dtype=torch.float32, device=device)
    rgb = rasteriser.interpolate(colours, rast, scene.faces)[0]
    if textured:
        uv_all = np.concatenate([m.uv if m.is_textured else np.zeros((len(m.vertices), 2), np.float32) for m in scene.meshes])
        uv = rasteriser.interpolate(torch.as_tensor(uv_all, dtype=torch.float32, device=device), rast, scene.faces)
        for i, m in enumerate(scene.meshes):
            if not m.is_textured:
                continue
            on_mesh = (face >= int(scene.first_face[i])) & (face < int(scene.first_face[i + 1]))
            if not bool(on_mesh.any()):
                continue
            texture = torch.as_tensor(m.texture[..., :3], dtype=torch.float32, device=device)[None]
            sampled = rasteriser.texture(texture, uv)[0]
            rgb = torch.where(on_mesh.unsqueeze(-1), sampled, rgb)
    return rgb.cpu().numpy(), (face >= 0).cpu().numpy()


def psnr(rendered: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB, 8-bit peak) over the masked pixels."""
    mse = float(((rendered[mask] - image[mask].astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(rendered: np.ndarray, image: np.ndarray, mask: np.ndarray) -> float:
    """Mean structural similarity (scikit-image, 7×7 windows, per channel) over the masked pixels."""
    from skimage.metrics import structural_similarity

    _, full = structural_similarity(rendered.astype(np.float64), image.astype(np.float64), channel_axis=2, data_range=255.0, full=True)
    return float(full.mean(axis=2)[mask].mean())

"""Colours baked from the keyframes into the texels of an atlas.

Each texel covered by a chart is a point on the surface (rasterised in UV space). It takes a keyframe's colour
when the keyframe shows that point: inside the image, in the object's mask, facing the camera, and at the depth
the sensor measured there (which rejects both self-occlusion and other objects in front, without rendering).
Colours are averaged with weight cosine^p so head-on views dominate grazing ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dprecon_ros.core.provenance import vertex_normals
from dprecon_ros.core.raster import Rasteriser, uv_to_clip
from dprecon_ros.core.texture.uv import UvMesh
from dprecon_ros.core.types import CameraIntrinsics


@dataclass
class TexelSurface:
    """The surface under each chart texel of a `size`² atlas."""

    size: int
    texel: torch.Tensor  # (T,) flat indices (row * size + column) of covered texels
    points: torch.Tensor  # (T, 3) map frame
    normals: torch.Tensor  # (T, 3) unit
    corners: torch.Tensor  # (T, 3) vertex indices of the triangle under each texel
    barycentric: torch.Tensor  # (T, 3) weights of those vertices

    def interpolate(self, values: torch.Tensor) -> torch.Tensor:
        """(N, C) per-vertex values -> (T, C) per texel."""
        return (values[self.corners] * self.barycentric.unsqueeze(-1)).sum(dim=1)

    def image(self, values: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(T, C) per-texel values as a (size, size, C) image, `fill` outside the charts."""
        out = torch.full((self.size * self.size, values.shape[1]), fill, dtype=values.dtype, device=values.device)
        out[self.texel] = values
        return out.view(self.size, self.size, -1)

    def chart_mask(self) -> torch.Tensor:
        mask = torch.zeros(self.size * self.size, dtype=torch.bool, device=self.texel.device)
        mask[self.texel] = True
        return mask.view(self.size, self.size)


@dataclass
class KeyframeView:
    """What one keyframe shows of one object."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray | None  # (H, W) float32, NaN where unmeasured
    mask: np.ndarray  # (H, W) bool, the object's pixels
    intrinsics: CameraIntrinsics
    T_world_camera: np.ndarray


@dataclass
class BakedColours:
    colour: torch.Tensor  # (T, 3) in [0, 1]; 0 where no keyframe saw the texel
    weight: torch.Tensor  # (T,) summed view weights; 0 = unseen


def texel_surface(rasteriser: Rasteriser, mesh: UvMesh, size: int, device: torch.device) -> TexelSurface:
    normals = vertex_normals(mesh.vertices, mesh.faces)
    faces = torch.as_tensor(mesh.faces, dtype=torch.int32, device=device)
    clip = uv_to_clip(torch.as_tensor(mesh.uv, dtype=torch.float32, device=device))
    rast = rasteriser.rasterize(clip[None], faces, (size, size))
    attributes = torch.as_tensor(np.concatenate([mesh.vertices, normals], axis=1), dtype=torch.float32, device=device)
    values = rasteriser.interpolate(attributes, rast, faces)[0].reshape(size * size, 6)
    flat = rast[0].reshape(size * size, 4)
    texel = torch.nonzero(flat[:, 3] > 0).squeeze(1)
    points, normal = values[texel, :3], F.normalize(values[texel, 3:], dim=1)
    u, v = flat[texel, 0], flat[texel, 1]
    corners = faces.long()[flat[texel, 3].long() - 1]
    return TexelSurface(size, texel, points, normal, corners, torch.stack([u, v, 1 - u - v], dim=1))


def bake_keyframes(
    surface: TexelSurface,
    views: list[KeyframeView],
    depth_tolerance_m: float,
    tolerance_per_m: float,
    min_facing: float,
    facing_power: float,
) -> BakedColours:
    device = surface.points.device
    total = torch.zeros(len(surface.texel), 3, device=device)
    weight = torch.zeros(len(surface.texel), device=device)
    for view in views:
        u, v, z = _camera_points(surface, view)  # once per view: the weight and the colour read the same pixels
        w = _view_weight(surface, view, u, v, z, depth_tolerance_m, tolerance_per_m, min_facing, facing_power)
        if not bool((w > 0).any()):
            continue
        total += w.unsqueeze(1) * _sample_rgb(view, u, v)
        weight += w
    colour = torch.where(weight.unsqueeze(1) > 0, total / weight.clamp(min=1e-12).unsqueeze(1), torch.zeros_like(total))
    return BakedColours(colour, weight)


def _camera_points(surface: TexelSurface, view: KeyframeView) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Texel points in the camera: pixel column, row (OpenCV, centres at integers) and z-depth."""
    T = torch.as_tensor(view.T_world_camera, dtype=torch.float32, device=surface.points.device)
    cam = (surface.points - T[:3, 3]) @ T[:3, :3]
    z = cam[:, 2]
    safe = torch.where(z > 1e-6, z, torch.ones_like(z))
    k = view.intrinsics
    return k.fx * cam[:, 0] / safe + k.cx, k.fy * cam[:, 1] / safe + k.cy, z


def _view_weight(
    surface: TexelSurface,
    view: KeyframeView,
    u: torch.Tensor,
    v: torch.Tensor,
    z: torch.Tensor,
    tolerance: float,
    tolerance_per_m: float,
    min_facing: float,
    power: float,
) -> torch.Tensor:
    """Per texel, how much this view's colour counts (0 where it does not show the texel); u, v, z from
    `_camera_points`."""
    device = surface.points.device
    k = view.intrinsics
    col, row = torch.round(u).long(), torch.round(v).long()
    inside = (z > 1e-6) & (col >= 0) & (col < k.width) & (row >= 0) & (row < k.height)
    col, row = col.clamp(0, k.width - 1), row.clamp(0, k.height - 1)
    mask = torch.as_tensor(view.mask, device=device)[row, col]
    if view.depth_m is None:
        return torch.zeros_like(z)
    measured = torch.as_tensor(view.depth_m, dtype=torch.float32, device=device)[row, col]
    at_surface = torch.isfinite(measured) & ((z - measured).abs() <= tolerance + tolerance_per_m * z)
    centre = torch.as_tensor(view.T_world_camera[:3, 3], dtype=torch.float32, device=device)
    facing = (F.normalize(centre - surface.points, dim=1) * surface.normals).sum(dim=1)
    seen = inside & mask & at_surface & (facing >= min_facing)
    return torch.where(seen, facing.clamp(min=0) ** power, torch.zeros_like(z))


def _sample_rgb(view: KeyframeView, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bilinear keyframe colour at each texel's projection (u, v), (T, 3) in [0, 1]."""
    k = view.intrinsics
    image = torch.as_tensor(view.rgb, device=u.device).permute(2, 0, 1)[None].float() / 255.0
    # align_corners=True: -1 and 1 are the centres of the first and last pixel, as OpenCV's 0 and W - 1
    grid = torch.stack([u / max(k.width - 1, 1) * 2 - 1, v / max(k.height - 1, 1) * 2 - 1], dim=1).view(1, 1, -1, 2)
    return F.grid_sample(image[:, :3], grid, mode="bilinear", padding_mode="border", align_corners=True)[0, :, 0].T

"""What the prior scores: normal map and opacity of one field, rendered from the prior's cameras, with the
visibility grid rendered alongside (w_vis per pixel).

An object's views read only its own field inside its own cube (not every field at every sample): the prior
judges the object's shape, and an object's cube is all it can change. Normals are given in the camera frame
the way Stable Diffusion saw normal maps (x right, y up, z towards the viewer), empty pixels as (0, 0, 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dprecon_ros.core.fields.composite import laplace_cdf_density
from dprecon_ros.core.render.sampling import composite_weights, first_surface, guided_samples
from dprecon_ros.core.scene_model import VoxelGrid
from dprecon_ros.core.stages.prior.cameras import pixel_rays
from dprecon_ros.core.types import SceneNormalisation
from dprecon_ros.core.visibility import ray_visibility, read_grid

SdfFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # points (N, 3) scene units -> SDF (N,), gradient (N, 3)
OPENCV_TO_VIEWER = torch.tensor([1.0, -1.0, -1.0])  # camera normals: OpenCV (y down, z forward) -> (y up, z to the viewer)
SURFACE_BAND_CELLS = 3.0  # fine samples within this many grid cells of the first surface


@dataclass
class ViewRender:
    maps: torch.Tensor  # (B, 4, H, W) normal * 0.5 + 0.5 and opacity, in [0, 1]
    visibility: torch.Tensor  # (B, 1, H, W) w_vis in [0, 1], no gradient
    opacity: torch.Tensor  # (B, H, W)


def box_bounds(o: torch.Tensor, d: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """near/far of rays against an axis-aligned box and whether they meet it."""
    inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0.0)
    far = torch.maximum(t0, t1).amin(dim=-1)
    hit = far > near
    return near, torch.where(hit, far, near + 1e-4), hit


def render_views(
    sdf: SdfFn,
    beta: torch.Tensor,
    T_world_camera: torch.Tensor,
    fov_y: torch.Tensor,
    size: int,
    norm: SceneNormalisation,
    bounds: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    samples: int,
    guide_samples: int,
    cell: float,
    grid: VoxelGrid | None,
    generator: torch.Generator,
) -> ViewRender:
    """Render the field `sdf` (scene units) from cameras in the map frame. `bounds(o, d)` gives each ray's
    near/far in scene units (an object's cube, the background's sphere); `cell` is the field's grid spacing."""
    device = T_world_camera.device
    center = torch.as_tensor(norm.center, dtype=torch.float32, device=device)
    origins, dirs = pixel_rays(T_world_camera, fov_y, size)
    B = len(origins)
    o, d = ((origins - center) / norm.scale).reshape(-1, 3), dirs.reshape(-1, 3)
    near, far = bounds(o, d)
    with torch.no_grad():
        guide = first_surface(
            lambda t: sdf((o[:, None] + d[:, None] * t[..., None]).reshape(-1, 3))[0].reshape(t.shape), near, far, guide_samples
        )
    t = guided_samples(near, far, guide, max(2, samples // 2), max(2, samples - samples // 2), SURFACE_BAND_CELLS * cell, generator)
    x = (o[:, None] + d[:, None] * t[..., None]).reshape(-1, 3)
    value, grad = sdf(x)
    sigma = laplace_cdf_density(value, beta).reshape(t.shape)
    delta = torch.cat([t[:, 1:] - t[:, :-1], torch.zeros_like(t[:, :1])], dim=1)
    weights, trans = composite_weights(sigma, delta)
    opacity = weights.sum(dim=1)
    normal_world = torch.nn.functional.normalize(grad, dim=-1).reshape(*t.shape, 3)
    rotation = T_world_camera[:, :3, :3].repeat_interleave(size * size, dim=0)  # (R, 3, 3) camera to world
    normal_cam = torch.einsum("rsi,rij->rsj", normal_world, rotation) * OPENCV_TO_VIEWER.to(device)
    towards_viewer = torch.tensor([0.0, 0.0, 1.0], device=device)
    normal = (weights[..., None] * normal_cam).sum(dim=1) + (1 - opacity)[:, None] * towards_viewer
    maps = torch.cat([normal * 0.5 + 0.5, opacity[:, None]], dim=1).clamp(0.0, 1.0)
    with torch.no_grad():
        if grid is None:
            vis = torch.zeros_like(opacity)
        else:
            seen = read_grid(grid, x * norm.scale + center).reshape(t.shape)
            vis = ray_visibility(weights.detach(), seen, (1 - opacity.detach()).clamp(min=0.0))
    image = maps.reshape(B, size, size, 4).permute(0, 3, 1, 2)
    return ViewRender(image, vis.reshape(B, 1, size, size), opacity.reshape(B, size, size))

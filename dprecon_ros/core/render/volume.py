"""Volume rendering of the composite scene with occlusion-aware per-object opacity.

Scene weights follow VolSDF (density of the minimum SDF). Field k's opacity along a ray accumulates
T_scene(t) * (1 - exp(-sigma_k(t) * delta)): an object hidden behind another one gets no opacity there,
which is what its mask says (ObjectSDF++'s occlusion-aware object opacity). The last sample's interval is
open: the bounding sphere closes the scene there, so whatever light is left ends on it instead of
compositing to black.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dprecon_ros.core.fields.composite import CompositeScene, laplace_cdf_density, nearest_field
from dprecon_ros.core.render.sampling import OPEN_INTERVAL, composite_weights, error_bounded_samples

SHADING_MIN_WEIGHT = 1e-4  # samples with less compositing weight get no colour evaluation (they add < 1e-4 each)


@dataclass
class RayBatch:
    origins: torch.Tensor  # (R, 3) scene units
    directions: torch.Tensor  # (R, 3) unit
    near: torch.Tensor  # (R,)
    far: torch.Tensor  # (R,)

    def at(self, t: torch.Tensor) -> torch.Tensor:
        """Points (R, S, 3) at distances t (R, S)."""
        return self.origins[:, None] + self.directions[:, None] * t[..., None]


@dataclass
class Rendered:
    rgb: torch.Tensor  # (R, 3)
    distance: torch.Tensor  # (R,) expected distance along the ray
    normal: torch.Tensor  # (R, 3) world, weighted sum of unit normals
    opacity: torch.Tensor  # (R,)
    surface_opacity: torch.Tensor  # (R,) opacity before the last sample: surfaces met before the scene's closure
    field_opacity: torch.Tensor  # (R, F) occlusion-aware, objects then background
    t: torch.Tensor  # (R, S) sample distances
    points: torch.Tensor  # (R*S, 3) sample points
    field_sdf: torch.Tensor  # (R*S, F)
    field_grad: torch.Tensor  # (R*S, F, 3)


def sphere_bounds(
    origins: torch.Tensor, directions: torch.Tensor, radius: float = 1.0, min_near: float = 0.02
) -> tuple[torch.Tensor, torch.Tensor]:
    """near/far of rays against the scene's bounding sphere."""
    b = (origins * directions).sum(-1)
    c = (origins**2).sum(-1) - radius**2
    disc = (b * b - c).clamp(min=0).sqrt()
    near = (-b - disc).clamp(min=min_near)
    far = (-b + disc).clamp(min=near + 1e-3)
    return near, far


def sdf_along(scene: CompositeScene, rays: RayBatch, background_only: bool = False):
    """`sdf_of(t)`: the scene's SDF (or the closed background's alone) at distances t (R, S) along the rays."""

    def sdf_of(t: torch.Tensor) -> torch.Tensor:
        x = rays.at(t).reshape(-1, 3)
        return (scene.background_sdf(x)[0] if background_only else scene.scene_sdf(x)[0]).reshape(t.shape)

    return sdf_of


def render_samples(scene: CompositeScene, rays: RayBatch, t: torch.Tensor, background_only: bool = False) -> Rendered:
    """Composite the scene (or the background field alone) at sorted sample distances t (R, S)."""
    R, S = t.shape
    points = rays.at(t).reshape(-1, 3)
    if background_only:
        bg, bg_grad = scene.background_sdf(points)
        field_sdf, field_grad = bg[:, None], bg_grad[:, None]
    else:
        field_sdf, field_grad = scene.sdfs(points)
    sdf, grad = nearest_field(field_sdf, field_grad)
    normal = F.normalize(grad, dim=-1)
    beta = scene.density.beta
    delta = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], OPEN_INTERVAL)], dim=1)
    sigma = laplace_cdf_density(sdf, beta).reshape(R, S)
    weights, trans = composite_weights(sigma, delta)
    view = rays.directions[:, None].expand(R, S, 3).reshape(-1, 3)
    # colour only where a sample contributes: most samples lie in empty space or behind the surface
    shaded = torch.nonzero(weights.detach().reshape(-1) > SHADING_MIN_WEIGHT).squeeze(1)
    with torch.autocast(device_type=points.device.type, dtype=torch.bfloat16, enabled=scene.mixed_precision and points.is_cuda):
        shades = scene.color(points[shaded], normal[shaded], view[shaded]).float()
    color = torch.zeros(R * S, 3, dtype=shades.dtype, device=points.device).index_put((shaded,), shades).reshape(R, S, 3)
    sigma_fields = laplace_cdf_density(field_sdf, beta).reshape(R, S, -1)
    field_weights = trans[..., None] * (1 - torch.exp(-sigma_fields * delta[..., None]))
    return Rendered(
        rgb=(weights[..., None] * color).sum(1),
        distance=(weights * t).sum(1),
        normal=(weights[..., None] * normal.reshape(R, S, 3)).sum(1),
        opacity=weights.sum(1),
        surface_opacity=weights[:, :-1].sum(1),
        field_opacity=field_weights.sum(1).clamp(max=1.0),
        t=t,
        points=points,
        field_sdf=field_sdf,
        field_grad=field_grad,
    )


def render_rays(
    scene: CompositeScene, rays: RayBatch, n_init: int, n_final: int, n_extra: int, eps: float, rounds: int, deterministic: bool = False
) -> Rendered:
    """Render with VolSDF's error-bounded sampling (rays with no measured depth to guide them)."""
    t = error_bounded_samples(
        sdf_along(scene, rays), rays.near, rays.far, scene.density.beta, n_init, n_final, n_extra, eps, rounds, deterministic
    )
    return render_samples(scene, rays, t)

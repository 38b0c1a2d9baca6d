"""Sampling and volume rendering: the error bound after refinement, depth-guided samples, occlusion-aware
object opacity, and a scene closed by its bounding sphere."""

from __future__ import annotations

import torch

from dprecon_ros.core.fields.box import GridBox
from dprecon_ros.core.fields.composite import ColorNetwork, CompositeScene
from dprecon_ros.core.fields.pyramid import PackedObjects, PyramidSdf
from dprecon_ros.core.render.sampling import error_bounded_samples, guided_samples, opacity_error_bound, refine_until_bounded
from dprecon_ros.core.render.volume import RayBatch, render_rays, render_samples, sdf_along, sphere_bounds


def sphere_field(center, radius: float, n: int = 24) -> PyramidSdf:
    box = GridBox(torch.full((3,), -0.5) + torch.tensor(center), 1 / (n - 1), (n, n, n))
    return PyramidSdf.from_values(box, (box.centers() - torch.tensor(center)).norm(dim=-1) - radius, 2)


def empty_background(closure: float = 3.0) -> PyramidSdf:
    box = GridBox(torch.full((3,), -1.0), 2 / 15, (16, 16, 16))
    return PyramidSdf.from_values(box, box.centers()[..., 2] + 0.5, 2)  # plane z = -0.5


def two_sphere_scene(closure: float = 3.0) -> CompositeScene:
    objects = PackedObjects([sphere_field((-0.2, 0.0, 0.0), 0.15), sphere_field((0.2, 0.0, 0.0), 0.15)], [True, True])
    color = ColorNetwork(GridBox(torch.full((3,), -1.0), 0.25, (9, 9, 9)), 4, 16)
    return CompositeScene(objects, empty_background(), color, beta_init=0.01, closure_radius=closure)


def rays_at_spheres(n: int = 16) -> RayBatch:
    origins = torch.tensor([[-0.2, -2.0, 0.0], [0.2, -2.0, 0.0]]).repeat(n // 2, 1)
    origins[:, 2] += torch.linspace(-0.05, 0.05, n)
    dirs = torch.tensor([[0.0, 1.0, 0.0]]).repeat(n, 1)
    near, far = sphere_bounds(origins, dirs, radius=3.0)
    return RayBatch(origins, dirs, near, far)


def test_error_bounded_sampling_meets_its_bound_after_refinement_and_concentrates_at_the_surface():
    scene, rays = two_sphere_scene(), rays_at_spheres()
    sdf_of = sdf_along(scene, rays)
    beta = scene.density.beta.detach()
    uniform = torch.linspace(0, 1, 32)[None] * (rays.far - rays.near)[:, None] + rays.near[:, None]
    assert (opacity_error_bound(uniform, sdf_of(uniform), beta)[0] > 0.1).all()  # uniform samples alone miss it
    t, sdf, beta_plus = refine_until_bounded(sdf_of, rays.near, rays.far, beta, 32, eps=0.1, rounds=5, deterministic=True)
    assert (opacity_error_bound(t, sdf, beta_plus)[0] <= 0.1).all()
    assert (beta_plus < 3 * beta).all()  # refinement, not a blurrier beta, met the bound
    final = error_bounded_samples(sdf_of, rays.near, rays.far, beta, 32, 32, 16, eps=0.1, rounds=5, deterministic=True)
    assert final.shape == (16, 49) and bool((final[:, 1:] >= final[:, :-1]).all()) and torch.equal(final[:, -1], rays.far)
    assert ((final - (2.0 - 0.15)).abs() < 0.05).float().mean() > 0.4


def test_guided_samples_cover_the_ray_and_crowd_around_the_measured_depth():
    rays = rays_at_spheres()
    guide = torch.full((16,), 1.85)
    t = guided_samples(rays.near, rays.far, guide, 16, 32, 0.05, torch.Generator().manual_seed(0))
    assert t.shape == (16, 48) and bool((t[:, 1:] >= t[:, :-1]).all())
    assert torch.equal(t[:, -1], rays.far) and (t[:, 0] < rays.near + (rays.far - rays.near) / 15).all()
    assert ((t - 1.85).abs() <= 0.05).sum(dim=1).min() >= 32


def test_rendering_gives_depth_normals_and_occlusion_aware_object_opacity():
    scene, rays = two_sphere_scene(), rays_at_spheres()
    out = render_rays(scene, rays, 32, 32, 16, 0.1, 5, deterministic=True)
    assert torch.allclose(out.opacity, torch.ones(16), atol=1e-3)
    assert torch.allclose(out.distance, torch.full((16,), 1.85), atol=0.02)
    expected = -torch.sqrt(1 - (rays.origins[:, 2] / 0.15) ** 2)  # facing the camera, tilted with the ray's height
    assert torch.allclose(out.normal[:, 1].detach(), expected, atol=0.06)
    left = rays.origins[:, 0] < 0
    assert (out.field_opacity[left, 0] > 0.95).all() and (out.field_opacity[~left, 1] > 0.95).all()
    assert (out.field_opacity[left, 1] < 0.05).all() and (out.field_opacity[:, 2] < 0.05).all()
    side = RayBatch(torch.tensor([[-2.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0.1]), torch.tensor([4.0]))
    o = render_rays(scene, side, 32, 32, 16, 0.1, 5, deterministic=True).field_opacity[0]
    assert o[0] > 0.95 and o[1] < 0.05  # sphere 1 is behind sphere 0 on this ray


def test_every_ray_ends_on_the_closure_even_where_no_field_has_a_surface():
    """An open last interval must not composite to black: the bounding sphere closes the scene."""
    box = GridBox(torch.full((3,), -0.5), 1 / 15, (16, 16, 16))
    nothing = PyramidSdf.from_values(box, torch.full((16, 16, 16), 0.5), 1)
    color = ColorNetwork(GridBox(torch.full((3,), -1.0), 0.25, (9, 9, 9)), 4, 16)
    scene = CompositeScene(None, nothing, color, beta_init=0.01, closure_radius=1.0)
    dirs = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    origins = torch.zeros(64, 3)
    near, far = sphere_bounds(origins, dirs)
    out = render_rays(scene, RayBatch(origins, dirs, near, far), 16, 16, 4, 0.1, 3)
    assert (out.opacity > 0.99).all() and torch.allclose(out.distance, far, atol=0.05)
    t = guided_samples(near, far, far, 8, 8, 0.05, torch.Generator().manual_seed(0))
    assert (render_samples(scene, RayBatch(origins, dirs, near, far), t).opacity > 0.99).all()


def test_rendering_is_differentiable_with_respect_to_every_parameter():
    scene = two_sphere_scene()
    out = render_rays(scene, rays_at_spheres(), 16, 16, 8, 0.1, 2)
    (out.rgb.sum() + out.distance.sum() + out.field_opacity.sum() + out.normal.sum()).backward()
    for name, p in scene.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert scene.objects.levels[0].grad.abs().sum() > 0 and scene.density.log_beta.grad != 0

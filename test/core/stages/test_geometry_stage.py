"""The neural backend on the CPU at small sizes: fields, sampling, rendering, every loss's gradient, meshing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from dprecon_ros.core.fields.composite import ColorNetwork, CompositeScene, GridBox, LaplaceDensity, SdfGrid, laplace_cdf_density
from dprecon_ros.core.fields.grid import trilinear
from dprecon_ros.core.fields.init import signed_distance
from dprecon_ros.core.render.rays import normals_from_depth
from dprecon_ros.core.render.sampling import error_bounded_samples, opacity_error_bound
from dprecon_ros.core.render.volume import RayBatch, render_rays, sphere_bounds
from dprecon_ros.core.stages.geometry import losses

torch.set_default_dtype(torch.float32)


def sphere_grid(center, radius: float, lo: float = -0.5, hi: float = 0.5, n: int = 24) -> SdfGrid:
    voxel = (hi - lo) / (n - 1)
    box = GridBox(torch.full((3,), lo), voxel, (n, n, n))
    sdf = (box.centers() - torch.tensor(center)).norm(dim=-1) - radius
    return SdfGrid(box, sdf)


def two_sphere_scene() -> CompositeScene:
    a = sphere_grid((-0.2, 0.0, 0.0), 0.15)
    b = sphere_grid((0.2, 0.0, 0.0), 0.15)
    floor_box = GridBox(torch.full((3,), -1.0), 2 / 15, (16, 16, 16))
    floor = SdfGrid(floor_box, floor_box.centers()[..., 2] + 0.5)  # plane z = -0.5
    color = ColorNetwork(GridBox(torch.full((3,), -1.0), 0.25, (9, 9, 9)), 4, 16)
    return CompositeScene([a, b], floor, color, beta_init=0.01)


# ----------------------------------------------------------------- fields
def test_trilinear_gradient_is_the_derivative_of_the_values():
    g = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    u = (torch.rand(40, 3, dtype=torch.float64) * torch.tensor([4.0, 5.0, 6.0], dtype=torch.float64)).requires_grad_(True)
    value, grad = trilinear(g, u)
    auto = torch.stack([torch.autograd.grad(value[:, c].sum(), u, retain_graph=True)[0] for c in range(2)], dim=1)
    assert torch.allclose(auto, grad, atol=1e-12)


def test_sdf_grid_of_a_sphere_has_unit_gradients_and_grows_outside_the_grid():
    field = sphere_grid((0.0, 0.0, 0.0), 0.2)
    x = torch.tensor([[0.2, 0.0, 0.0], [0.0, 0.0, -0.1], [2.0, 0.0, 0.0]])
    sdf, grad = (t.detach() for t in field(x))
    assert abs(sdf[0]) < 0.01 and sdf[1].item() == pytest.approx(-0.1, abs=0.01)
    assert sdf[2].item() == pytest.approx(1.8, abs=0.02)  # face value + distance to the grid
    assert torch.allclose(grad[0], torch.tensor([1.0, 0, 0]), atol=0.05) and torch.allclose(grad[2], torch.tensor([1.0, 0, 0]), atol=0.05)


def test_scene_sdf_is_the_minimum_of_the_fields():
    scene = two_sphere_scene()
    x = torch.tensor([[-0.2, 0.0, 0.0], [0.2, 0.0, 0.0], [0.0, 0.0, -0.6]])
    sdf, _, values = scene.scene_sdf(x)
    assert torch.equal(values.argmin(dim=1), torch.tensor([0, 1, 2]))
    assert torch.allclose(sdf, values.min(dim=1).values)


def test_laplace_density_is_volsdf_and_stable_far_inside():
    beta = torch.tensor(0.1)
    s = torch.tensor([-1e3, -0.1, 0.0, 0.1, 1e3], requires_grad=True)
    sigma = laplace_cdf_density(s, beta)
    d = sigma.detach().tolist()
    assert d[0] == pytest.approx(10.0) and d[2] == pytest.approx(5.0) and d[4] == pytest.approx(0.0)
    assert d[1] + d[3] == pytest.approx(10.0)  # Psi(s) + Psi(-s) = 1
    sigma.sum().backward()
    assert torch.isfinite(s.grad).all()
    assert LaplaceDensity(0.1).beta.item() == pytest.approx(0.1, abs=1e-3)


# ----------------------------------------------------------- sampling, rendering
def rays_at_spheres(n: int = 16) -> RayBatch:
    origins = torch.tensor([[-0.2, -2.0, 0.0], [0.2, -2.0, 0.0]]).repeat(n // 2, 1)
    origins[:, 2] += torch.linspace(-0.05, 0.05, n)
    dirs = torch.tensor([[0.0, 1.0, 0.0]]).repeat(n, 1)
    near, far = sphere_bounds(origins, dirs, radius=3.0)
    return RayBatch(origins, dirs, near, far)


def test_error_bounded_sampling_concentrates_at_the_surface_and_meets_the_bound():
    scene = two_sphere_scene()
    rays = rays_at_spheres()

    def sdf_of(t):
        x = rays.origins[:, None] + rays.directions[:, None] * t[..., None]
        return scene.scene_sdf(x.reshape(-1, 3))[0].reshape(t.shape)

    t = error_bounded_samples(sdf_of, rays.near, rays.far, scene.density.beta, 32, 32, 16, eps=0.1, rounds=5, deterministic=True)
    assert t.shape == (16, 48) and bool((t[:, 1:] >= t[:, :-1]).all())
    hit = 2.0 - 0.15  # distance to the sphere's front along these rays
    assert ((t - hit).abs() < 0.05).float().mean() > 0.4
    uniform = torch.linspace(0, 1, 32)[None] * (rays.far - rays.near)[:, None] + rays.near[:, None]
    assert (opacity_error_bound(uniform, sdf_of(uniform), scene.density.beta)[0] > 0.1).any()  # uniform alone is not enough


def test_rendering_gives_depth_normals_and_occlusion_aware_object_opacity():
    scene = two_sphere_scene()
    rays = rays_at_spheres()
    out = render_rays(scene, rays, 32, 32, 16, 0.1, 5, deterministic=True)
    assert torch.allclose(out.opacity, torch.ones(16), atol=1e-3)
    assert torch.allclose(out.distance, torch.full((16,), 1.85), atol=0.02)
    expected = -torch.sqrt(1 - (rays.origins[:, 2] / 0.15) ** 2)  # facing the camera, tilted with the ray's height
    assert torch.allclose(out.normal[:, 1].detach(), expected, atol=0.06)  # piecewise-linear grid of 4 cm cells
    left = rays.origins[:, 0] < 0
    assert (out.field_opacity[left, 0] > 0.95).all() and (out.field_opacity[~left, 1] > 0.95).all()
    assert (out.field_opacity[left, 1] < 0.05).all() and (out.field_opacity[:, 2] < 0.05).all()
    # a ray through sphere 0 first, then sphere 1 behind it: only sphere 0 owns it
    side = RayBatch(torch.tensor([[-2.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0.1]), torch.tensor([4.0]))
    o = render_rays(scene, side, 32, 32, 16, 0.1, 5, deterministic=True).field_opacity[0]
    assert o[0] > 0.95 and o[1] < 0.05


def test_rendering_is_differentiable_with_respect_to_every_parameter():
    scene = two_sphere_scene()
    out = render_rays(scene, rays_at_spheres(), 16, 16, 8, 0.1, 2)
    (out.rgb.sum() + out.distance.sum() + out.field_opacity.sum() + out.normal.sum()).backward()
    for name, p in scene.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert scene.fields[0].values.grad.abs().sum() > 0 and scene.density.log_beta.grad != 0


# ------------------------------------------------------------------ losses
def dbl(*shape, positive=False):
    t = torch.rand(*shape, dtype=torch.float64) if positive else torch.randn(*shape, dtype=torch.float64)
    return t.requires_grad_(True)


def test_rgb_loss_gradient():
    assert gradcheck(lambda p: losses.rgb_loss(p, torch.full((6, 3), 0.5, dtype=torch.float64)), (dbl(6, 3),))


def test_depth_losses_gradients_and_invariance():
    target = torch.rand(10, dtype=torch.float64) + 1
    valid = torch.tensor([True] * 8 + [False] * 2)
    assert gradcheck(lambda p: losses.metric_depth_loss(p, target, valid), (dbl(10) + 2,))
    assert gradcheck(lambda p: losses.scale_shift_invariant_depth_loss(p, target, valid), (dbl(10),))
    scaled = (3 * target + 0.5).detach()
    assert losses.scale_shift_invariant_depth_loss(scaled, target, valid) < 1e-10
    assert losses.metric_depth_loss(scaled, target, valid) > 1


def test_normal_losses_gradients():
    target = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float64), dim=-1)
    valid = torch.tensor([True] * 6 + [False])
    assert gradcheck(lambda p: losses.normal_losses(p, target, valid)[0], (dbl(7, 3),))
    assert gradcheck(lambda p: losses.normal_losses(p, target, valid)[1], (dbl(7, 3),))
    l1, cos = losses.normal_losses(target * 2, target, valid)
    assert l1 < 1e-12 and cos < 1e-12


def test_mask_loss_gradient():
    target = torch.tensor([0, 2, 1, 2])
    assert gradcheck(lambda p: losses.mask_loss(p, target), (dbl(4, 3, positive=True),))
    assert losses.mask_loss(torch.eye(3, dtype=torch.float64)[target], target) == 0


def test_eikonal_loss_gradient():
    assert gradcheck(losses.eikonal_loss, (dbl(5, 2, 3),))
    assert losses.eikonal_loss(torch.nn.functional.normalize(torch.randn(9, 3), dim=-1)) < 1e-10


def test_smoothness_loss_gradient():
    assert gradcheck(lambda a, b: losses.smoothness_loss(a, b), (dbl(6, 3), dbl(6, 3)))


def test_overlap_loss_gradient_and_meaning():
    sdf = torch.tensor([[-0.3, -0.2, 0.5], [-0.1, 0.4, 0.2], [0.2, 0.3, 0.1]], dtype=torch.float64, requires_grad=True)
    assert gradcheck(losses.overlap_loss, (sdf,))
    assert losses.overlap_loss(sdf).item() == pytest.approx(0.2 / 3)  # only the first point is inside two objects


def test_background_loss_gradient():
    values = torch.tensor([-0.2, 0.1, -0.05, 0.3], dtype=torch.float64, requires_grad=True)
    assert gradcheck(losses.background_loss, (values,))
    assert losses.background_loss(values).item() == pytest.approx(0.25 / 4)


# ------------------------------------------------------------- init, normals
def test_signed_distance_of_a_ball():
    n = 31
    ijk = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1)
    r = np.linalg.norm(ijk - 15, axis=-1)
    sdf = signed_distance(r <= 10, voxel=0.1)
    assert sdf[15, 15, 15] == pytest.approx(-1.05, abs=0.1)
    assert sdf[15, 15, 30] == pytest.approx(0.5, abs=0.1)
    assert np.all(np.sign(sdf[r < 9.5]) < 0) and np.all(np.sign(sdf[r > 10.5]) > 0)


def test_normals_from_depth_of_a_tilted_plane():
    h, w = 30, 40
    K = np.array([[50.0, 0, 19.5], [0, 50.0, 14.5], [0, 0, 1]])
    v, u = np.mgrid[0:h, 0:w].astype(float)
    # plane n.x = d with n = (0, -sin a, -cos a) (facing the camera), at 2 m along the axis
    a = np.radians(30)
    n = np.array([0.0, -np.sin(a), -np.cos(a)])
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    z = (-2.0 * np.cos(a)) / (rays @ n)
    normals, valid = normals_from_depth(z.astype(np.float32), K)
    assert valid[1:-1, 1:-1].all()
    assert np.allclose(normals[valid], n, atol=1e-3)


# ---------------------------------------------------------------- end to end
def test_tiny_neural_reconstruction_meshes_every_object(sim_frames):
    from dprecon_ros.config import DpreconConfig
    from dprecon_ros.core.mapping.mapper import Mapper

    cfg = DpreconConfig()
    cfg.reconstruction.backend = "neural"
    cfg.compute.device = "cpu"
    cfg.tsdf.object_voxel_m = 0.02
    n = cfg.geometry
    n.iterations, n.rays_per_batch, n.object_resolution, n.background_resolution, n.feature_resolution = 3, 64, 20, 20, 8
    n.samples_init, n.samples_final, n.samples_extra, n.sampling_iters, n.progress_every = 16, 16, 8, 2, 1
    mapper = Mapper(cfg)
    for frame, _ in sim_frames[0][::2]:
        mapper.add_frame(frame)
    stages = []
    recon = mapper.reconstruct(progress=lambda stage, index, count, fraction: stages.append((stage, fraction))).reconstruction
    assert recon.backend == "neural"
    assert sorted(o.label for o in recon.objects) == sorted(sim_frames[1])
    for o in recon.objects:
        assert len(o.faces) > 20 and o.vertex_colors.shape == (len(o.vertices), 4)
        assert np.isfinite(o.vertices).all()
    assert ("geometry", 1.0) in stages and {"fuse", "geometry", "mesh", "total"} <= set(recon.timings_s)
    assert len(recon.history) == 3 and all(np.isfinite(h["loss"]) for h in recon.history)
    mug = next(o for o in recon.objects if o.label == "mug")
    table = next(o for o in recon.objects if o.label == "table")
    assert mug.centroid[2] > table.centroid[2]  # meshes are back in the map frame

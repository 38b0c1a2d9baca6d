"""The stage-1 optimisation fits: a perturbed sphere, seen in a few rendered views, moves to the true one."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dprecon_ros.config import DpreconConfig
from dprecon_ros.core.compute import Compute
from dprecon_ros.core.fields.box import GridBox
from dprecon_ros.core.fields.composite import ColorNetwork, CompositeScene
from dprecon_ros.core.fields.pyramid import PackedObjects, PyramidSdf
from dprecon_ros.core.render.rays import CameraSet, RayPool
from dprecon_ros.core.render.volume import RayBatch, render_rays, sphere_bounds
from dprecon_ros.core.stages.base import RunContext
from dprecon_ros.core.stages.geometry import optimise as fitting
from dprecon_ros.core.stages.geometry.config import GeometryConfig
from dprecon_ros.core.stages.geometry.optimise import FitProblem, optimise

RADIUS = 0.25  # the true sphere, at the origin (scene units)
PIXELS = 24


def look_at(eye: torch.Tensor) -> torch.Tensor:
    forward = -eye / eye.norm()
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0])), dim=0)
    down = torch.linalg.cross(forward, right)
    return torch.stack([right, down, forward], dim=1)  # camera-to-world: x right, y down, z forward


def sphere_views(count: int = 6) -> RayPool:
    """Rays of `count` views on a ring at 0.8 around the sphere, with exact depth, normals and masks."""
    eyes = [0.8 * torch.tensor([math.cos(a), math.sin(a), 0.3]) for a in torch.linspace(0, 2 * math.pi, count + 1)[:-1].tolist()]
    rotations = torch.stack([look_at(e) for e in eyes])
    focal = PIXELS / (2 * math.tan(math.radians(30)))
    cams = CameraSet(
        torch.stack(eyes),
        rotations,
        torch.tensor([[focal, focal, (PIXELS - 1) / 2, (PIXELS - 1) / 2]] * count),
        torch.tensor([[PIXELS, PIXELS]] * count),
    )
    corner = torch.zeros(count, 2, dtype=torch.long)
    o, d = cams.patch_rays(torch.arange(count), corner, PIXELS, 1)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    b = (o * d).sum(-1)
    disc = b**2 - ((o**2).sum(-1) - RADIUS**2)
    hit = disc > 0
    t_hit = -b - disc.clamp(min=0).sqrt()
    _, far = sphere_bounds(o, d)
    distance = torch.where(hit, t_hit, far)  # misses end on the closing sphere
    normal = torch.nn.functional.normalize(o + d * distance[:, None], dim=-1)
    field = torch.where(hit, 0, 1)
    return RayPool(
        origins=o,
        directions=d,
        rgb=torch.where(hit[:, None], torch.tensor([0.8, 0.3, 0.2]), torch.tensor([0.5, 0.5, 0.5])),
        distance=distance,
        normal=normal,
        normal_valid=hit,
        field=field,
        object_pixels=torch.nonzero(hit).squeeze(1),
        near=0.05,
        image=torch.arange(count).repeat_interleave(PIXELS * PIXELS),
        cameras=cams,
    )


def perturbed_scene() -> CompositeScene:
    n = 24
    box = GridBox(torch.full((3,), -0.4), 0.8 / (n - 1), (n, n, n))
    wrong = (box.centers() - torch.tensor([0.04, -0.03, 0.02])).norm(dim=-1) - 0.30  # off by 4-9 cm
    objects = PackedObjects([PyramidSdf.from_values(box, wrong, 2)], [True])
    bg_box = GridBox(torch.full((3,), -1.0), 2 / 11, (12, 12, 12))
    background = PyramidSdf.from_values(bg_box, torch.full((12, 12, 12), 1.0), 1)  # nothing: only the closure
    color = ColorNetwork(GridBox(torch.full((3,), -1.0), 0.25, (9, 9, 9)), 4, 16)
    return CompositeScene(objects, background, color, beta_init=0.01, closure_radius=1.0)


def fit_config(iterations: int) -> GeometryConfig:
    return dataclasses.replace(
        GeometryConfig(),
        iterations=iterations,
        rays_per_batch=256,
        samples_coarse=16,
        samples_fine=16,
        sample_band_m=0.1,
        eikonal_points=128,
        overlap_points=0,
        background_patches=0,
        lr_sdf_voxels=0.2,
        progress_every=10,
    )


def errors(scene: CompositeScene, pool: RayPool) -> tuple[float, float]:
    """Mean depth error on rays that hit the sphere, mean |SDF| on the true surface."""
    hit = pool.object_pixels
    rays = RayBatch(pool.origins[hit], pool.directions[hit], *sphere_bounds(pool.origins[hit], pool.directions[hit], min_near=pool.near))
    with torch.no_grad():
        out = render_rays(scene, rays, 32, 32, 8, 0.1, 3, deterministic=True)
        surface = torch.nn.functional.normalize(torch.randn(2000, 3, generator=torch.Generator().manual_seed(1)), dim=-1) * RADIUS
        sdf = scene.objects(surface)[0][:, 0]
    return float((out.distance - pool.distance[hit]).abs().mean()), float(sdf.abs().mean())


def context() -> RunContext:
    return RunContext(DpreconConfig(), Compute(torch.device("cpu")), keyframes=[], seeds=[], dirty=set(), stage_names=["geometry"])


def fit(iterations: int = 120) -> tuple[tuple[float, float], tuple[float, float], list[dict]]:
    torch.manual_seed(0)
    pool, scene = sphere_views(), perturbed_scene()
    problem = FitProblem(pool, True, [0], False, torch.zeros(0, 2, 3), torch.tensor([[[-0.4] * 3, [0.4] * 3]]), metres_per_unit=1.0)
    before = errors(scene, pool)
    history = optimise(fit_config(iterations), scene, problem, context())
    return before, errors(scene, pool), history


def test_a_perturbed_sphere_moves_to_the_observed_one():
    (depth_before, sdf_before), (depth_after, sdf_after), history = fit()
    assert depth_before > 0.03 and sdf_before > 0.04
    assert depth_after < depth_before / 3, (depth_before, depth_after)
    assert sdf_after < sdf_before / 3, (sdf_before, sdf_after)
    first, last = history[0], history[-1]
    assert last["depth"] < first["depth"] / 3 and last["mask"] < first["mask"] and last["loss"] < first["loss"]


def test_the_fit_fails_without_the_optimiser_step(monkeypatch):
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, closure=None: None)
    (depth_before, _), (depth_after, _), _ = fit(20)
    assert depth_after == depth_before


def test_negating_the_loss_makes_the_fit_worse(monkeypatch):
    weighted = fitting.weighted_loss
    monkeypatch.setattr(fitting, "weighted_loss", lambda cfg, terms: -weighted(cfg, terms))
    (depth_before, sdf_before), (depth_after, sdf_after), _ = fit(40)
    assert depth_after > depth_before * 0.9 or sdf_after > sdf_before * 0.9


# ------------------------------------------------------------------ every term does its job
# how far each term must fall in 30 steps alone (the mask's BCE and the smoothness of curved normals move slowest)
FALLS_TO = {"mask": 0.9, "smooth": 0.95}
TERMS = fitting.LOSS_NAMES


def term_scene() -> tuple[CompositeScene, FitProblem]:
    """A scene in which every term starts above zero: the perturbed sphere, 1.5x a distance and reaching out of
    its box; a second object intruding into it; a bumpy floor for the background patches."""
    n = 24
    box = GridBox(torch.full((3,), -0.4), 0.8 / (n - 1), (n, n, n))
    wrong = 1.5 * ((box.centers() - torch.tensor([0.04, -0.03, 0.02])).norm(dim=-1) - 0.30)
    intruder_box = GridBox(torch.tensor([-0.1, -0.3, -0.3]), 0.6 / (n - 1), (n, n, n))
    intruder = (intruder_box.centers() - torch.tensor([0.2, 0.0, 0.0])).norm(dim=-1) - 0.15
    objects = PackedObjects([PyramidSdf.from_values(box, wrong, 2), PyramidSdf.from_values(intruder_box, intruder, 2)], [True, True])
    bg_box = GridBox(torch.full((3,), -1.0), 2 / 23, (24, 24, 24))
    c = bg_box.centers()
    floor = c[..., 2] + 0.3 + 0.04 * torch.sin(25 * c[..., 0]) * torch.sin(25 * c[..., 1])
    background = PyramidSdf.from_values(bg_box, floor, 2)
    color = ColorNetwork(GridBox(torch.full((3,), -1.0), 0.25, (9, 9, 9)), 4, 16)
    scene = CompositeScene(objects, background, color, beta_init=0.01, closure_radius=1.0)
    overlap = torch.tensor([[[-0.1, -0.3, -0.3], [0.4, 0.3, 0.3]]])
    boxes = torch.tensor([[[-0.27] * 3, [0.27] * 3], [[-0.1, -0.3, -0.3], [0.5, 0.3, 0.3]]])
    return scene, FitProblem(sphere_views(), True, [0, 1], True, overlap, boxes, metres_per_unit=1.0)


def term_value(cfg: GeometryConfig, scene: CompositeScene, problem: FitProblem, name: str) -> float:
    generator = torch.Generator().manual_seed(123)
    values = [
        fitting.loss_terms(cfg, scene, problem, fitting.sample_batch(problem.pool, 256, generator), generator)[name].item()
        for _ in range(4)
    ]
    return sum(values) / len(values)


@pytest.mark.parametrize("name", TERMS)
def test_each_term_alone_decreases_itself(name):
    """Optimising one term alone lowers it: fails if a term is negated, zeroed or not wired to the fields."""
    torch.manual_seed(0)
    scene, problem = term_scene()
    weights = {f"w_{term}": 1.0 if term == name else 0.0 for term in TERMS}
    cfg = dataclasses.replace(
        fit_config(30),
        background_patches=2,
        patch_size=6,
        overlap_points=256,
        lr_color=0.02,
        lr_sdf_voxels=0.1,
        lr_coarse_factor=1.0,
        lr_background_factor=1.0,
        **weights,
    )
    before = term_value(cfg, scene, problem, name)
    optimise(cfg, scene, problem, context())
    after = term_value(cfg, scene, problem, name)
    assert before > 1e-4, before
    assert after < FALLS_TO.get(name, 0.8) * before, (before, after)


def test_adam_is_set_up_as_dp_recon_and_decays_to_a_tenth(monkeypatch):
    scene, problem = term_scene()
    cfg = fit_config(5)
    optimizer = fitting.make_optimizer(cfg, scene, problem)
    assert all(g["betas"] == (0.9, 0.99) and g["eps"] == 1e-15 for g in optimizer.param_groups)
    # coarse levels learn slower (no random walk of whole walls), the background slower than objects
    objects, background = optimizer.param_groups[0:2], optimizer.param_groups[2:4]
    assert [g["lr"] for g in objects] == pytest.approx([cfg.lr_sdf_voxels, cfg.lr_sdf_voxels * cfg.lr_coarse_factor])
    voxel = scene.background.box.voxel
    assert background[0]["lr"] == pytest.approx(cfg.lr_sdf_voxels * cfg.lr_background_factor * voxel)
    assert background[1]["lr"] == pytest.approx(background[0]["lr"] * cfg.lr_coarse_factor)
    seen = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, closure=None: (seen.append(self.param_groups[0]["lr"]), step(self))[1])
    optimise(cfg, scene, problem, context())
    assert seen[-1] == pytest.approx(0.1 * seen[0]) and seen[0] == pytest.approx(cfg.lr_sdf_voxels)


# ------------------------------------------------------------------ terms that must be exactly quiet on the truth
def sphere_scene(extra_ball: tuple[float, float, float, float] | None = None) -> CompositeScene:
    """The true sphere (plus, optionally, a ball (x, y, z, r) floating in front of it) as one object."""
    scene = perturbed_scene()
    box = GridBox(torch.full((3,), -0.6), 1.2 / 35, (36, 36, 36))
    sdf = box.centers().norm(dim=-1) - RADIUS
    if extra_ball is not None:
        sdf = torch.minimum(sdf, (box.centers() - torch.tensor(extra_ball[:3])).norm(dim=-1) - extra_ball[3])
    scene.objects = PackedObjects([PyramidSdf.from_values(box, sdf, 1)], [True])
    return scene


def terms_of(scene: CompositeScene, object_box: list[list[float]]) -> dict[str, float]:
    problem = FitProblem(sphere_views(), True, [0], False, torch.zeros(0, 2, 3), torch.tensor([object_box]), metres_per_unit=1.0)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        cfg = dataclasses.replace(fit_config(1), eikonal_points=8192)  # enough uniform points to meet a thin slice
        terms = fitting.loss_terms(cfg, scene, problem, fitting.sample_batch(problem.pool, 1024, generator), generator)
    return {k: float(v) for k, v in terms.items()}


def test_free_space_is_quiet_on_the_truth_and_catches_matter_in_front_of_measured_surfaces():
    truth = terms_of(sphere_scene(), [[-0.3] * 3, [0.3] * 3])["free_space"]
    floater = terms_of(sphere_scene((0.5, 0.0, 0.15, 0.08)), [[-0.3] * 3, [0.6, 0.3, 0.3]])["free_space"]
    assert truth == 0.0 and floater > 1e-5, (truth, floater)


def test_outside_box_is_quiet_within_the_box_and_catches_matter_beyond_it():
    inside = terms_of(sphere_scene(), [[-0.3] * 3, [0.3] * 3])["outside_box"]
    beyond = terms_of(sphere_scene(), [[-0.3, -0.3, -0.3], [0.1, 0.3, 0.3]])["outside_box"]  # the box cuts the sphere at x = 0.1
    assert inside == 0.0 and beyond > 1e-4, (inside, beyond)

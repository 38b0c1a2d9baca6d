"""The geometry stage end to end on the CPU at small sizes: initial fields, the fit, meshing, presets."""

from __future__ import annotations

import copy

import numpy as np
import torch

from dprecon_ros.core.render.rays import normals_from_depth


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
def fitted(small_frames, coarse_config, iterations: int, **geometry):
    from conftest import filled, tiny_geometry

    cfg = tiny_geometry(copy.deepcopy(coarse_config), iterations)
    cfg.reconstruction.backend = "neural"
    g = cfg.geometry
    g.rays_per_batch, g.object_resolution, g.background_resolution, g.progress_every = 192, 28, 32, 5
    for key, value in geometry.items():
        setattr(g, key, value)
    mapper = filled(cfg, small_frames[0])
    return mapper, mapper.reconstruct().reconstruction


def mean_chamfer(recon, gt) -> float:
    from dprecon_ros.eval.evaluation import evaluate
    from dprecon_ros.io.export import to_trimesh

    pred = {o.object_id: (o.label, to_trimesh(o)) for o in recon.objects}
    return float(np.mean([s.metrics.chamfer_cm for s in evaluate(pred, gt, samples=3000) if s.object_id is not None]))


def test_initial_fields_close_the_background_and_every_object_is_meshed(small_frames, coarse_config):
    """After initialisation alone, background pixels render opaque (no walls cut off by the grid's faces)."""
    from dprecon_ros.core.fusion.fuse import background_bounds
    from dprecon_ros.core.render.rays import build_ray_pool
    from dprecon_ros.core.render.volume import RayBatch, render_rays, sphere_bounds
    from dprecon_ros.core.stages.geometry.stage import composite_of

    # a background grid of 64 nodes: coarser ones (10 cm cells) blur the one-truncation-thick wall shells
    mapper, recon = fitted(small_frames, coarse_config, 1, lr_sdf_voxels=1e-5, lr_color=1e-6, background_resolution=64)
    model = mapper.model
    ids = [s.object_id for s in model.states() if not s.is_background]
    pool = build_ray_pool(mapper.keyframes.snapshot(), ids, model.normalisation, torch.device("cpu"), 0.1, stride=4)
    scene = composite_of(model, ids, torch.device("cpu"))
    background = torch.nonzero(pool.field == len(ids)).squeeze(1)[::3]
    o, d = pool.origins[background], pool.directions[background]
    out = render_rays(scene, RayBatch(o, d, *sphere_bounds(o, d, min_near=pool.near)), 32, 32, 8, 0.1, 3, deterministic=True)
    # opacity of surfaces before the closing sphere: the walls and floor themselves stop the rays
    assert out.surface_opacity.mean() >= 0.95 and (out.surface_opacity > 0.9).float().mean() >= 0.95
    hit = torch.isfinite(pool.distance[background])
    assert (out.distance[hit] - pool.distance[background][hit]).abs().median() * model.normalisation.scale < 0.03
    bg = model.background.field.box
    lo, hi = (model.normalisation.to_scene(b) for b in background_bounds(mapper.keyframes.snapshot()))
    assert np.all(bg.origin.numpy() < lo) and np.all(bg.upper.numpy() > hi)  # padded beyond the observed room
    assert sorted(o.label for o in recon.objects) == sorted(s.label for s in model.states() if not s.is_background)
    # the initial object fields are true distances inside their grids (redistanced, not TSDF staircases)
    for oid in ids:
        field = model.objects[oid].field
        x = field.box.origin + (torch.rand(2000, 3) * 0.9 + 0.05) * (field.box.upper - field.box.origin)
        residual = (field(x)[1].norm(dim=-1) - 1).abs()
        assert residual.median() < 0.1, (oid, float(residual.median()))  # a distance: |grad| = 1 but near medial axes


def test_tiny_neural_reconstruction_fits_and_improves_on_its_initialisation(small_frames, coarse_config):
    _, start = fitted(small_frames, coarse_config, 1, lr_sdf_voxels=1e-5, lr_color=1e-6)
    mapper, recon = fitted(small_frames, coarse_config, 60)
    assert recon.backend == "neural"
    for o in recon.objects:
        assert len(o.faces) > 20 and o.vertex_colors.shape == (len(o.vertices), 4) and np.isfinite(o.vertices).all()
    assert {"fuse", "geometry", "mesh", "total"} <= set(recon.timings_s)
    losses = [h["loss"] for h in recon.history]
    assert len(recon.history) == 13 and np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:2])
    assert mean_chamfer(recon, small_frames[1]) < mean_chamfer(start, small_frames[1])
    mug = next(o for o in recon.objects if o.label == "mug")
    table = next(o for o in recon.objects if o.label == "table")
    assert mug.centroid[2] > table.centroid[2]  # meshes are back in the map frame


def test_the_cpu_preset_replaces_the_gpu_sizes_on_a_cpu(small_frames, coarse_config):
    from dprecon_ros.core.compute import Compute
    from dprecon_ros.core.stages.base import RunContext
    from dprecon_ros.core.stages.geometry.stage import sized

    cfg = coarse_config
    cfg.geometry.cpu.iterations, cfg.geometry.cpu.rays_per_batch = 7, 99
    ctx = RunContext(cfg, Compute(torch.device("cpu")), [], [], set(), ["geometry"])
    assert (sized(cfg.geometry, ctx).iterations, sized(cfg.geometry, ctx).rays_per_batch) == (7, 99)
    cfg.geometry.cpu_preset = False
    assert sized(cfg.geometry, ctx).iterations == cfg.geometry.iterations == 1500
    cfg.geometry.cpu_preset = True
    gpu = RunContext(cfg, Compute(torch.device("meta")), [], [], set(), ["geometry"])
    assert sized(cfg.geometry, gpu).iterations == 1500  # any other device keeps the paper-like sizes


def test_two_runs_of_one_map_give_the_same_meshes_whatever_else_drew_random_numbers(small_frames, coarse_config, monkeypatch):
    from dprecon_ros.core.fields.composite import ColorNetwork
    from dprecon_ros.core.stages.geometry import stage

    weight_seeds = []

    class SeedRecordingColorNetwork(ColorNetwork):
        def __init__(self, box, feature_dim, hidden, generator=None):
            weight_seeds.append(None if generator is None else generator.initial_seed())
            super().__init__(box, feature_dim, hidden, generator)

    monkeypatch.setattr(stage, "ColorNetwork", SeedRecordingColorNetwork)
    runs = []
    # torch's global random state differs between the first two runs, the configured seed only in the third
    for global_seed, seed in ((1, 0), (2, 0), (1, 7)):
        torch.manual_seed(global_seed)
        _, recon = fitted(small_frames, coarse_config, 2, object_resolution=16, background_resolution=16, rays_per_batch=64, seed=seed)
        runs.append(recon)
    first, second, other_seed = ({o.object_id: o for o in recon.objects} for recon in runs)
    assert first.keys() == second.keys() and len(first) > 1
    for object_id, mesh in first.items():
        assert np.array_equal(mesh.vertices, second[object_id].vertices), object_id
        assert np.array_equal(mesh.vertex_colors, second[object_id].vertex_colors), object_id
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]
    assert any(not np.array_equal(mesh.vertex_colors, other_seed[i].vertex_colors) for i, mesh in first.items() if i in other_seed)
    assert weight_seeds == [0, 0, 7]  # the initial weights follow geometry.seed

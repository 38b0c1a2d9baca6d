"""The prior stage end to end on the CPU: off without weights, on with a tiny checkpoint, visibility
weighting, completion with a prior that is right (the reference guidance), text-driven edits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dprecon_ros.config import DpreconConfig
from dprecon_ros.core.guidance.base import forget_loaded
from dprecon_ros.core.mapping.mapper import RECONSTRUCTED
from dprecon_ros.core.scene_model import VoxelGrid


def arc_config(**prior) -> DpreconConfig:
    from conftest import tiny_geometry

    cfg = DpreconConfig()
    cfg.compute.device = "cpu"
    cfg.tsdf.object_voxel_m, cfg.tsdf.background_voxel_m = 0.02, 0.08
    cfg.mesh.target_faces, cfg.mesh.background_target_faces = 2000, 4000
    tiny_geometry(cfg, 40)
    cfg.geometry.rays_per_batch, cfg.geometry.object_resolution, cfg.geometry.background_resolution = 192, 24, 24
    cfg.reconstruction.backend = "full"
    cfg.texture.cpu.object_size, cfg.texture.cpu.background_size = 64, 128  # the preset's texture stage, small
    p = cfg.prior
    p.cpu_preset = False
    p.iterations, p.views_per_step, p.render_size, p.latent_size, p.samples_per_ray, p.rays_per_batch = 8, 2, 24, 16, 16, 64
    p.visibility_resolution, p.visibility_rays_per_image, p.visibility_samples_per_ray, p.guide_samples = 32, 150, 16, 8
    for key, value in prior.items():
        setattr(p, key, value)
    return cfg


def mapper_for(cfg: DpreconConfig, frames):
    from conftest import filled

    return filled(cfg, frames)


@pytest.fixture(scope="module")
def neural(arc_frames):
    """The arc scene fitted once by the geometry stage (the neural preset): what the prior stage starts from."""
    cfg = arc_config()
    cfg.reconstruction.backend = "neural"
    mapper = mapper_for(cfg, arc_frames[0])
    assert mapper.reconstruct().status == RECONSTRUCTED
    return mapper


def prior_run(mapper, cfg: DpreconConfig, edits: dict[int, str] | None = None):
    """The prior and mesh stages over the fitted model (uncommitted: every test starts from the same fit)."""
    from dprecon_ros.core.pipeline import Pipeline

    pipeline = Pipeline()
    outcome = pipeline.run(
        mapper.model, mapper.keyframes.snapshot(), mapper.seeds(), cfg, _cpu(), ["prior", "mesh"], force=True, edits=edits
    )
    return outcome, pipeline.counters


def test_without_weights_the_prior_is_off_and_the_map_is_still_published(arc_frames, tmp_path):
    """Through the full preset from scratch: the geometry stage's map is published, the prior says why it is off."""
    mapper = mapper_for(arc_config(model=str(tmp_path / "no_weights")), arc_frames[0])
    report = mapper.reconstruct()
    recon = report.reconstruction
    assert report.status == RECONSTRUCTED and recon.stages == ["fuse", "geometry", "prior", "mesh", "texture"] and len(recon.objects) >= 3
    assert recon.prior_status.startswith("off: no checkpoint directory at")
    assert mapper.counters.get("prior_off") == 1
    assert all(o.vertex_observed is None and o.completeness == 0.0 for o in recon.objects)  # no grid: nothing claimed


def test_with_a_checkpoint_the_prior_runs_and_every_vertex_carries_its_provenance(neural, tiny_checkpoint):
    forget_loaded()
    outcome, _ = prior_run(neural, arc_config(model=str(tiny_checkpoint)))
    recon = outcome.reconstruction
    assert recon.prior_status == f"on: stable-diffusion ({tiny_checkpoint})", recon.prior_status
    assert "prior" in recon.timings_s and any("sds" in h for h in recon.history)
    grid = outcome.model.visibility
    assert grid is not None and 0.0 <= grid.values.min() and grid.values.max() <= 1.0 and grid.values.max() > 0.9
    for obj in recon.objects:
        assert obj.vertex_observed is not None and len(obj.vertex_observed) == len(obj.vertices)
        assert 0.0 <= obj.completeness <= 1.0
    assert np.mean([o.completeness for o in recon.objects]) > 0.2  # the arc saw the objects' near sides
    assert min(o.completeness for o in recon.objects) < 0.98  # ... and not their far sides
    moved = [
        oid
        for oid, state in outcome.model.objects.items()
        if any(not torch.equal(a, b) for a, b in zip(state.field.levels, neural.model.objects[oid].field.levels))
    ]
    assert sorted(moved) == sorted(neural.model.objects)  # every object was a target


def test_the_prior_moves_nothing_where_the_keyframes_saw_everything(neural):
    """A visibility grid of ones: the SDS weight is zero on every pixel (to float rounding), so no gradient
    reaches the fields; a grid of zeros lets it through."""
    from dprecon_ros.core.stages.base import RunContext
    from dprecon_ros.core.stages.prior.stage import PriorRun
    from dprecon_ros.eval.reference_guidance import ReferenceGuidance

    cfg = arc_config(guidance="reference")
    model = neural.model.fork()
    guidance = ReferenceGuidance(cfg.prior, torch.device("cpu"), {}, 10.0)
    ctx = RunContext(cfg, _cpu(), neural.keyframes.snapshot(), neural.seeds(), set(model.objects), ["prior"])
    run = PriorRun(model, ctx, cfg.prior, guidance, sorted(model.objects))
    scene = run.scene()
    grads = {}
    for value in (1.0, 0.0):
        model.visibility = VoxelGrid(np.full(3, -20.0), 40.0 / 8, np.full((9, 9, 9), value, np.float32))
        views = run.views(scene, sorted(model.objects)[0])
        weighted = (views.weight * (views.maps - 0.25) ** 2).sum()  # any loss the guidance forms, weighted per pixel
        scene.zero_grad()
        weighted.backward()
        grads[value] = sum(p.grad.abs().sum().item() for p in scene.objects.levels if p.grad is not None)
    assert grads[0.0] > 0 and grads[1.0] < 1e-6 * grads[0.0]


def _cpu():
    from dprecon_ros.core.compute import Compute

    return Compute(torch.device("cpu"))


def test_an_edit_reruns_the_prior_on_that_object_alone_without_observation_losses(neural, tiny_checkpoint, monkeypatch):
    from dprecon_ros.core.pipeline import EditRefused
    from dprecon_ros.core.stages.prior import stage

    forget_loaded()
    cfg = arc_config(model=str(tiny_checkpoint))
    first, _ = prior_run(neural, cfg)  # a completed map, as the full preset leaves it
    ids = sorted(first.model.objects)
    target = ids[0]

    def no_observations(*args, **kwargs):
        raise AssertionError("an edit must not fit the keyframes")

    monkeypatch.setattr(stage, "loss_terms", no_observations)
    from dprecon_ros.core.pipeline import Pipeline

    keyframes, seeds = neural.keyframes.snapshot(), neural.seeds()
    edited = Pipeline().run(first.model, keyframes, seeds, cfg, _cpu(), edits={target: "a teddy bear"})
    assert edited.refitted == [target] and edited.reconstruction.changed == {target}
    state = edited.model.objects[target]
    assert state.prompt == "a teddy bear" and state.version == first.model.objects[target].version + 1
    assert any(not torch.equal(a, b) for a, b in zip(state.field.levels, first.model.objects[target].field.levels))
    for oid in ids[1:]:
        assert edited.model.objects[oid].field is first.model.objects[oid].field  # untouched, not even copied
        assert edited.model.objects[oid].version == first.model.objects[oid].version
    edited_obj = next(o for o in edited.reconstruction.objects if o.object_id == target)
    assert edited_obj.completeness == 0.0 and not edited_obj.vertex_observed.any()  # generated from the prompt, not observed
    with pytest.raises(EditRefused, match="no fitted field"):
        Pipeline().run(first.model, keyframes, seeds, cfg, _cpu(), edits={9999: "a vase"})
    forget_loaded()


def test_boxes_and_cubes_grow_only_into_space_no_keyframe_saw(neural):
    from dprecon_ros.core.stages.base import RunContext
    from dprecon_ros.core.stages.prior.stage import PriorRun
    from dprecon_ros.eval.reference_guidance import ReferenceGuidance

    cfg = arc_config(guidance="reference")
    sides = {}
    for value in (1.0, 0.0):
        model = neural.model.fork()
        model.visibility = VoxelGrid(np.array([-4.0, -4.0, -1.0]), 0.05, np.full((161, 161, 81), value, np.float32))
        ctx = RunContext(cfg, _cpu(), neural.keyframes.snapshot(), neural.seeds(), set(model.objects), ["prior"])
        run = PriorRun(model, ctx, cfg.prior, ReferenceGuidance(cfg.prior, torch.device("cpu"), {}, 10.0), sorted(model.objects))
        run.recube_targets()
        sides[value] = {oid: s.field.box.voxel for oid, s in model.objects.items()}
    before = {oid: s.field.box.voxel for oid, s in neural.model.objects.items()}
    assert sides[1.0] == before  # everything seen: no object needs more room
    assert any(sides[0.0][oid] > before[oid] * 1.05 for oid in before)  # nothing seen: objects cut off by their box get more

"""The stage pipeline over the scene model: incremental runs, nothing-new runs, snapshots, out-of-memory,
cancellation, and the device reaching every stage."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from conftest import filled, tiny_geometry

from dprecon_ros.config_fields import set_leaf
from dprecon_ros.core.mapping.mapper import CANCELLED, RECONSTRUCTED, UNCHANGED
from dprecon_ros.core.stages.base import STAGES, Stage, register_stage
from dprecon_ros.core.stages.geometry.stage import GeometryStage
from dprecon_ros.core.types import BACKGROUND_ID, Frame


def only_instance(frame: Frame, label: str) -> Frame:
    """The frame as a detector that found only `label` would give it (the rest becomes background)."""
    keep = [i for i, name in frame.labels.items() if name == label]
    instance = np.where(np.isin(frame.instance, keep), frame.instance, 0)
    return Frame(frame.stamp + 100.0, frame.rgb, frame.depth_m, instance, {i: label for i in keep}, frame.intrinsics, frame.T_world_camera)


@pytest.fixture
def probe_stage():
    """A registered stage that records what it sees and can be held mid-run."""

    class Probe(Stage):
        name = "probe"
        config_sections = ("tsdf",)
        seen: list = []
        release = threading.Event()
        entered = threading.Event()

        def run(self, model, ctx):
            Probe.entered.set()
            first = ctx.config.tsdf.object_voxel_m
            while not Probe.release.wait(0.01):
                ctx.check_cancelled()
            Probe.seen.append((first, ctx.config.tsdf.object_voxel_m, ctx.compute.device.type, set(ctx.dirty)))
            return model

    Probe.seen, Probe.release, Probe.entered = [], threading.Event(), threading.Event()
    register_stage(Probe)
    yield Probe
    STAGES.pop("probe", None)


def test_a_new_keyframe_refits_only_the_objects_it_saw(coarse_config, small_frames):
    frames, _ = small_frames
    coarse_config.keyframes.min_translation_m, coarse_config.keyframes.min_rotation_deg = 0.0, 0.0
    mapper = filled(coarse_config, frames)
    first = mapper.reconstruct()
    assert first.status == RECONSTRUCTED
    before = {s.object_id: (s.version, s.mesh) for s in mapper.model.states()}
    mug = next(s.object_id for s in mapper.model.objects.values() if s.label == "mug")
    assert mapper.add_frame(only_instance(frames[len(frames) // 2], "mug")) is not None
    second = mapper.reconstruct()
    assert second.status == RECONSTRUCTED
    assert sorted(second.refitted) == sorted([BACKGROUND_ID, mug])
    for state in mapper.model.states():
        version, mesh = before[state.object_id]
        if state.object_id in (mug, BACKGROUND_ID):
            assert state.version == version + 1 and state.mesh is not mesh
        else:
            assert state.version == version and state.mesh is mesh  # kept, not rebuilt
    assert second.reconstruction.changed == {mug, BACKGROUND_ID}
    assert sorted(o.object_id for o in second.reconstruction.objects) == sorted(o.object_id for o in first.reconstruction.objects)


def test_a_run_with_nothing_new_runs_no_stage(coarse_config, small_frames, monkeypatch):
    mapper = filled(coarse_config, small_frames[0])
    assert mapper.reconstruct().status == RECONSTRUCTED
    calls = []
    for name in ("fuse", "mesh"):
        original = STAGES[name].run
        monkeypatch.setattr(STAGES[name], "run", lambda self, model, ctx, _o=original, _n=name: calls.append(_n) or _o(self, model, ctx))
    report = mapper.reconstruct()
    assert report.status == UNCHANGED and calls == [] and mapper.runs == 1
    assert report.reconstruction is mapper.latest
    set_leaf(mapper.config, "mesh.target_faces", 1500)  # a changed stage parameter is something new
    assert mapper.reconstruct().status == RECONSTRUCTED and calls == ["fuse", "mesh"] and mapper.runs == 2


def test_force_refits_everything(coarse_config, small_frames):
    mapper = filled(coarse_config, small_frames[0])
    mapper.reconstruct()
    report = mapper.reconstruct(force=True)
    assert report.status == RECONSTRUCTED and set(report.refitted) == {s.object_id for s in mapper.model.states()}


def test_a_parameter_changed_during_a_run_reaches_only_the_next_run(coarse_config, small_frames, probe_stage):
    mapper = filled(coarse_config, small_frames[0])
    job = mapper.start(stages=["probe"])
    assert probe_stage.entered.wait(10)
    with mapper.config_lock:  # what the node's parameter callback does
        set_leaf(mapper.config, "tsdf.object_voxel_m", 0.03)
    probe_stage.release.set()
    assert job.wait(10) and job.report.status == RECONSTRUCTED
    assert probe_stage.seen[0][:2] == (0.02, 0.02)
    assert mapper.reconstruct(stages=["probe"]).status == RECONSTRUCTED  # tsdf changed: everything is new
    assert probe_stage.seen[1][:2] == (0.03, 0.03)


def test_cancel_stops_a_run_within_two_seconds_and_keeps_the_model(coarse_config, small_frames):
    mapper = filled(tiny_geometry(coarse_config, iterations=100_000), small_frames[0])
    mapper.config.reconstruction.backend = "neural"
    model = mapper.model
    job = mapper.start()
    deadline = time.monotonic() + 120
    while job.progress.stage != "geometry" or job.progress.fraction == 0.0:  # optimising, not building
        assert job.running and time.monotonic() < deadline, job.report
        time.sleep(0.05)
    job.cancel()
    assert job.wait(2.0), "the run did not stop within 2 s of the cancel"
    assert job.report.status == CANCELLED and mapper.model is model and mapper.latest is None
    assert mapper.counters.get("run_cancelled") == 1


def test_reset_during_a_run_discards_its_result(coarse_config, small_frames, probe_stage):
    mapper = filled(coarse_config, small_frames[0])
    job = mapper.start(stages=["probe"])
    assert probe_stage.entered.wait(10)
    mapper.reset()
    assert job.wait(2.0) and job.report.status == CANCELLED
    assert mapper.latest is None and not mapper.model.objects and len(mapper.keyframes) == 0


def test_out_of_memory_in_the_geometry_stage_retries_on_the_cpu_at_reduced_size(coarse_config, small_frames, monkeypatch):
    cfg = tiny_geometry(coarse_config)
    cfg.reconstruction.backend = "neural"
    mapper = filled(cfg, small_frames[0])
    seen = []
    original = GeometryStage.run

    def flaky(self, model, ctx):
        seen.append((ctx.compute.device.type, ctx.compute.scale, ctx.scaled(ctx.config.geometry.rays_per_batch)))
        if len(seen) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, model, ctx)

    monkeypatch.setattr(GeometryStage, "run", flaky)
    report = mapper.reconstruct()
    assert report.status == RECONSTRUCTED and report.reconstruction.objects
    assert seen == [("cpu", 1.0, 64), ("cpu", 0.5, 32)]
    assert mapper.counters.get("gpu_out_of_memory") == 1
    assert mapper.reconstruct(force=True).status == RECONSTRUCTED and seen[-1][1] == 1.0  # the next run is full size again


def test_out_of_memory_on_the_device_moves_the_stage_to_the_cpu(coarse_config, small_frames, monkeypatch):
    """With the run on CUDA (claimed), a stage out of memory there is retried on the CPU, not on CUDA again."""
    import dprecon_ros.core.mapping.mapper as mapper_module
    from dprecon_ros.core.compute import Compute

    mapper = filled(coarse_config, small_frames[0])
    monkeypatch.setattr(mapper_module, "compute_from_config", lambda cfg: Compute(torch.device("cuda")))
    seen = []

    class Hungry(Stage):
        name = "hungry"

        def run(self, model, ctx):
            seen.append((ctx.compute.device.type, ctx.compute.scale))
            if ctx.compute.device.type == "cuda":
                raise torch.OutOfMemoryError("CUDA out of memory")
            return model

    register_stage(Hungry)
    try:
        assert mapper.reconstruct(stages=["hungry"]).status == RECONSTRUCTED
    finally:
        STAGES.pop("hungry")
    assert seen == [("cuda", 1.0), ("cpu", 0.5)] and mapper.counters.get("gpu_out_of_memory") == 1


def test_a_second_out_of_memory_is_an_error_not_a_loop(coarse_config, small_frames):
    """Once a run has fallen back to the CPU, a later stage out of memory is an error, not another retry."""
    mapper = filled(coarse_config, small_frames[0])
    calls = []

    class First(Stage):
        name = "first"

        def run(self, model, ctx):
            calls.append(("first", ctx.compute.scale))
            if not ctx.compute.is_fallback:
                raise torch.OutOfMemoryError("out of memory")
            return model

    class Second(Stage):
        name = "second"

        def run(self, model, ctx):
            calls.append(("second", ctx.compute.scale))
            raise torch.OutOfMemoryError("out of memory")

    register_stage(First)
    register_stage(Second)
    try:
        with pytest.raises(torch.OutOfMemoryError):
            mapper.reconstruct(stages=["first", "second"])
    finally:
        STAGES.pop("first"), STAGES.pop("second")
    assert calls == [("first", 1.0), ("first", 0.5), ("second", 0.5)]
    assert mapper.counters.get("gpu_out_of_memory") == 1 and mapper.latest is None


def test_a_reset_discards_a_run_that_ignores_cancel(coarse_config, small_frames):
    """A stage may not look at the cancel flag at all: its run's result must still not become the map."""
    mapper = filled(coarse_config, small_frames[0])
    release, entered = threading.Event(), threading.Event()

    class Stubborn(Stage):
        name = "stubborn"

        def run(self, model, ctx):
            entered.set()
            release.wait(10)
            return model

    register_stage(Stubborn)
    try:
        job = mapper.start(stages=["fuse", "mesh", "stubborn"])
        assert entered.wait(60)
        mapper.reset()
        release.set()
        assert job.wait(30) and job.report.status == CANCELLED
    finally:
        STAGES.pop("stubborn")
    assert mapper.latest is None and not mapper.model.objects


def test_the_mesh_stage_fuses_what_an_out_of_memory_retry_dropped(coarse_config, small_frames, monkeypatch):
    mapper = filled(coarse_config, small_frames[0])
    original, calls = STAGES["mesh"].run, []

    def once_hungry(self, model, ctx):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("out of memory")
        return original(self, model, ctx)

    monkeypatch.setattr(STAGES["mesh"], "run", once_hungry)
    report = mapper.reconstruct()
    assert report.status == RECONSTRUCTED and len(calls) == 2
    assert all(s.mesh is not None and not s.mesh.is_empty for s in mapper.model.states())  # every object and the background


def test_a_run_that_only_removes_an_object_keeps_the_other_fields(coarse_config, small_frames, monkeypatch):
    cfg = tiny_geometry(coarse_config)
    cfg.reconstruction.backend = "neural"
    mapper = filled(cfg, small_frames[0])
    mapper.reconstruct()
    fields = {s.object_id: s.field.levels[0].detach().clone() for s in mapper.model.states()}
    appearance = {k: v.clone() for k, v in mapper.model.appearance.state_dict().items()}
    gone = max(mapper.associator.objects)
    mapper.config.association.min_observations = mapper.associator.objects[gone].observations + 1  # drops rarely seen objects
    kept = {o.object_id for o in mapper.associator.objects.values() if o.observations >= mapper.config.association.min_observations}
    report = mapper.reconstruct()
    assert report.status == RECONSTRUCTED and report.refitted == [] and report.reconstruction.removed
    for state in mapper.model.states():
        assert state.object_id in kept | {BACKGROUND_ID}
        assert torch.equal(state.field.levels[0].detach(), fields[state.object_id])
    assert all(torch.equal(v, appearance[k]) for k, v in mapper.model.appearance.state_dict().items())  # no optimisation ran


def test_a_parameter_only_the_geometry_stage_reads_refits_the_neural_preset(coarse_config, small_frames):
    cfg = tiny_geometry(coarse_config)
    cfg.reconstruction.backend = "neural"
    mapper = filled(cfg, small_frames[0])
    mapper.reconstruct()
    set_leaf(mapper.config, "frames.min_depth_m", 0.2)  # read by the geometry stage alone (where rays start)
    report = mapper.reconstruct()
    assert report.status == RECONSTRUCTED and set(report.refitted) == {s.object_id for s in mapper.model.states()}


def test_a_scene_graph_parameter_change_reassembles_without_refitting(coarse_config, small_frames, monkeypatch):
    mapper = filled(coarse_config, small_frames[0])
    assert mapper.reconstruct().status == RECONSTRUCTED
    calls = []
    monkeypatch.setattr(STAGES["fuse"], "run", lambda self, model, ctx: calls.append(1) or model)
    set_leaf(mapper.config, "scene_graph.floor_label", "ground")
    report = mapper.reconstruct()
    assert report.status == RECONSTRUCTED and report.refitted == [] and calls == []
    assert report.reconstruction.scene_graph.background_label == "ground"
    assert mapper.reconstruct().status == UNCHANGED


def test_on_done_runs_before_waiters_wake(coarse_config, small_frames):
    mapper = filled(coarse_config, small_frames[0])
    handled = []
    job = mapper.start(on_done=lambda j: (time.sleep(0.2), handled.append(j.report.status)))
    assert job.wait(60) and handled == [RECONSTRUCTED]


def test_other_stage_errors_propagate_and_leave_the_model(coarse_config, small_frames, monkeypatch):
    mapper = filled(coarse_config, small_frames[0])
    monkeypatch.setattr(STAGES["mesh"], "run", lambda self, model, ctx: (_ for _ in ()).throw(RuntimeError("bad shape")))
    with pytest.raises(RuntimeError, match="bad shape"):
        mapper.reconstruct()
    assert mapper.latest is None and not mapper.model.objects
    monkeypatch.undo()
    assert mapper.reconstruct().status == RECONSTRUCTED  # the failed run released its lock


def test_the_configured_device_reaches_every_stage(coarse_config, small_frames, monkeypatch):
    """With CUDA claimed present, `auto` would pick it; `compute.device: cpu` must keep every stage on the CPU
    (a stage choosing its own device would try to allocate on a CUDA this build does not have)."""
    cfg = tiny_geometry(coarse_config)
    cfg.reconstruction.backend = "neural"
    mapper = filled(cfg, small_frames[0])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    devices = []
    for name in ("fuse", "geometry", "mesh"):
        original = STAGES[name].run
        monkeypatch.setattr(
            STAGES[name], "run", lambda self, model, ctx, _o=original: devices.append(ctx.compute.device.type) or _o(self, model, ctx)
        )
    report = mapper.reconstruct()
    assert report.status == RECONSTRUCTED and devices == ["cpu", "cpu", "cpu"]
    assert all(s.field.box.origin.device.type == "cpu" and s.field.levels[0].device.type == "cpu" for s in mapper.model.states())

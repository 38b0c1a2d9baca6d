"""UV unwraps started ahead of the object being textured: the order the queue starts them in, failures and
cancels, a finished child that nobody has read yet, and the stage giving every object its own atlas."""

import sys
import time

import numpy as np
import pytest
import torch
import trimesh

from dprecon_ros.config import DpreconConfig
from dprecon_ros.core.compute import Compute
from dprecon_ros.core.scene_model import ObjectState, SceneModel
from dprecon_ros.core.stages import texture as texture_stage
from dprecon_ros.core.stages.base import RunContext
from dprecon_ros.core.texture import uv as uv_module
from dprecon_ros.core.texture.uv import UnwrapFailed, UnwrapJob, UnwrapQueue
from dprecon_ros.core.types import TriangleMesh
from dprecon_ros.testing import raster_scene


class FakeJob:
    def __init__(self, index: int, started: list[int]) -> None:
        self.index, self.cancelled = index, False
        started.append(index)

    def cancel(self) -> None:
        self.cancelled = True

    def end_if_late(self) -> None:
        pass


def fake_queue(count: int, ahead: int, fail_at: int | None = None, cost=None) -> tuple[UnwrapQueue, list[int]]:
    started: list[int] = []

    def start(i: int):
        if i == fail_at:
            raise UnwrapFailed(f"mesh {i} cannot start")
        return FakeJob(i, started)

    return UnwrapQueue([lambda i=i: start(i) for i in range(count)], ahead, cost), started


def test_the_queue_starts_the_next_meshes_ahead_and_hands_each_its_own_job():
    queue, started = fake_queue(5, ahead=2)
    assert queue.job(0).index == 0
    assert started == [0, 1, 2]  # the next two run while mesh 0 is textured
    assert queue.job(1).index == 1 and started == [0, 1, 2, 3]
    assert queue.job(2).index == 2 and queue.job(3).index == 3 and queue.job(4).index == 4
    assert started == [0, 1, 2, 3, 4]  # each started once, never past the end


def test_the_next_mesh_goes_first_then_the_largest_and_all_are_taken_in_list_order():
    queue, started = fake_queue(5, ahead=2, cost=[5, 1, 2, 3, 50])  # the background, largest, comes last
    assert queue.job(0).index == 0
    assert started == [0, 1, 4]  # the next one, then the background's unwrap, from the start
    assert queue.job(1).index == 1 and started == [0, 1, 4, 2]
    assert queue.job(2).index == 2 and started == [0, 1, 4, 2, 3]
    assert queue.job(3).index == 3 and queue.job(4).index == 4


def test_with_one_slot_ahead_it_holds_the_next_mesh():
    queue, started = fake_queue(4, ahead=1, cost=[1, 1, 1, 50])
    queue.job(0)
    assert started == [0, 1]
    queue.job(1)
    assert started == [0, 1, 2]


def test_without_lookahead_one_mesh_is_unwrapped_at_a_time():
    queue, started = fake_queue(3, ahead=0)
    queue.job(0)
    assert started == [0]
    queue.job(1)
    assert started == [0, 1]


def test_a_mesh_whose_unwrap_cannot_start_fails_alone_and_when_asked_for():
    queue, _ = fake_queue(3, ahead=2, fail_at=1)
    assert queue.job(0).index == 0  # started 1 and 2 ahead: 1's failure waits for its turn
    with pytest.raises(UnwrapFailed, match="mesh 1"):
        queue.job(1)
    assert queue.job(2).index == 2


def test_closing_the_queue_cancels_the_jobs_started_ahead():
    queue, _ = fake_queue(4, ahead=2)
    queue.job(0)
    pending = [queue._jobs[i] for i in (1, 2)]
    queue.close()
    assert all(job.cancelled for job in pending)


@pytest.mark.parametrize("where", ["request", "fork"])
def test_a_job_that_cannot_start_fails_its_mesh_alone_and_frees_its_files(monkeypatch, where):
    vertices, faces = raster_scene.cube_mesh()
    opened = []
    real_file = uv_module.tempfile.TemporaryFile

    def tracked_file():
        opened.append(real_file())
        return opened[-1]

    def fail(*_args, **_kwargs):
        raise MemoryError() if where == "request" else OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(uv_module.tempfile, "TemporaryFile", tracked_file)
    monkeypatch.setattr(uv_module, "pack_arrays" if where == "request" else "worker_command", fail)
    with pytest.raises(UnwrapFailed, match="cannot start"):
        UnwrapJob(vertices, faces, 64, 2, 0, 60.0)
    assert all(file.closed for file in opened)
    failing = UnwrapQueue([lambda: FakeJob(0, []), lambda: UnwrapJob(vertices, faces, 64, 2, 0, 60.0)], ahead=1)
    assert failing.job(0).index == 0  # mesh 1's failed start, ahead, does not fail mesh 0
    with pytest.raises(UnwrapFailed, match="cannot start"):
        failing.job(1)


def test_closing_the_queue_ends_running_xatlas_processes(monkeypatch):
    monkeypatch.setattr(uv_module, "worker_command", lambda: [sys.executable, "-c", "import time; time.sleep(30)"])
    vertices, faces = raster_scene.cube_mesh()
    jobs: list[UnwrapJob] = []

    def start():
        jobs.append(UnwrapJob(vertices, faces, 64, 2, 0, 60.0))
        return jobs[-1]

    queue = UnwrapQueue([start, start, start], ahead=2)
    queue.job(0).cancel()
    assert len(jobs) == 3
    queue.close()
    assert all(job._proc.poll() is not None for job in jobs)  # killed, not left running for 30 s


def test_a_finished_unwrap_waits_unread_past_its_deadline_and_still_succeeds():
    """An unwrap started ahead may finish long before the stage reads it: its answer, larger than a pipe's
    buffer, must not keep the child blocked (and then timed out) while it waits."""
    sphere = trimesh.creation.icosphere(subdivisions=4)
    vertices = sphere.vertices + np.random.default_rng(0).normal(0, 0.01, sphere.vertices.shape)
    faces = np.asarray(sphere.faces)
    job = UnwrapJob(vertices, faces, 256, 2, 0, timeout_s=20.0)
    deadline = time.monotonic() + 20.0
    while job._proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job._proc.returncode == 0  # finished on its own, unread
    job._deadline = time.monotonic() - 1.0  # and its deadline passed before anyone asked
    atlas = job.result()
    answer = uv_module.pack_arrays(source=atlas.source.astype(np.uint32), faces=atlas.faces.astype(np.uint32), uv=atlas.uv)
    assert len(atlas.faces) == len(faces) and len(answer) > 2**16  # more than a pipe holds


def sleeping_worker(monkeypatch) -> None:
    monkeypatch.setattr(uv_module, "worker_command", lambda: [sys.executable, "-c", "import time; time.sleep(30)"])


def test_a_job_ends_its_process_and_frees_its_files_however_it_ends(monkeypatch):
    vertices, faces = raster_scene.cube_mesh()
    done = UnwrapJob(vertices, faces, 64, 2, 0, 60.0)
    done.result()
    sleeping_worker(monkeypatch)
    late = UnwrapJob(vertices, faces, 64, 2, 0, 0.3)
    with pytest.raises(UnwrapFailed, match="longer than"):
        late.result()
    cancelled = UnwrapJob(vertices, faces, 64, 2, 0, 60.0)

    def cancel():
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        cancelled.result(cancel)
    for job in (done, late, cancelled):
        assert job._proc.poll() is not None and job._stdout.closed and job._stderr.closed


def test_a_jobs_deadline_counts_from_its_start_not_from_when_it_is_asked_for(monkeypatch):
    sleeping_worker(monkeypatch)
    job = UnwrapJob(*raster_scene.cube_mesh(), 64, 2, 0, 0.5)
    time.sleep(0.7)
    start = time.monotonic()
    with pytest.raises(UnwrapFailed, match="longer than"):
        job.result()
    assert time.monotonic() - start < 0.25  # already late: no further wait


def test_a_hung_unwrap_started_ahead_is_ended_at_its_deadline_before_its_turn(monkeypatch):
    sleeping_worker(monkeypatch)
    vertices, faces = raster_scene.cube_mesh()
    jobs: list[UnwrapJob] = []

    def start():
        jobs.append(UnwrapJob(vertices, faces, 64, 2, 0, 0.3))
        return jobs[-1]

    queue = UnwrapQueue([start, start, start, start], ahead=2)
    queue.job(0).cancel()
    time.sleep(0.5)
    second = queue.job(1)  # checks the others' deadlines first
    assert jobs[2]._proc.poll() is not None  # ended, though nobody asked for it yet
    with pytest.raises(UnwrapFailed, match="longer than"):
        second.result()
    with pytest.raises(UnwrapFailed, match="longer than"):
        queue.job(2).result()
    queue.close()


def test_a_stage_that_fails_ends_every_unwrap_it_started(cube_stage_model, monkeypatch):
    sleeping_worker(monkeypatch)
    model, ctx = cube_stage_model(ahead=2)
    jobs = record_jobs(monkeypatch)

    def fail(*_args):
        raise RuntimeError("texturing failed before reading its atlas")

    monkeypatch.setattr(texture_stage, "texture_mesh", fail)
    with pytest.raises(RuntimeError, match="before reading"):
        texture_stage.TextureStage().run(model, ctx)
    assert len(jobs) == 3 and all(job._proc.poll() is not None for job in jobs)  # the one handed out and the two ahead


def record_jobs(monkeypatch) -> list[UnwrapJob]:
    jobs: list[UnwrapJob] = []
    real = texture_stage.start_unwrap

    def recording(state, ctx):
        jobs.append(real(state, ctx))
        jobs[-1].object_id = state.object_id
        return jobs[-1]

    monkeypatch.setattr(texture_stage, "start_unwrap", recording)
    return jobs


@pytest.fixture
def cube_stage_model():
    """Three cubes and a background of four, with the texture stage's context: (model, ctx) for an `ahead`."""

    def build(ahead: int):
        vertices, faces = raster_scene.cube_mesh()
        config = DpreconConfig()
        config.compute.device = "cpu"
        config.texture.cpu.object_size = config.texture.cpu.background_size = 32
        config.texture.unwrap_ahead = ahead
        model = SceneModel()
        white = np.full((len(vertices), 4), 255, np.uint8)
        for i in (1, 2, 3):
            model.objects[i] = ObjectState(i, f"cube {i}", mesh=TriangleMesh(vertices + [2.0 * i, 0, 0], faces, white))
        room = [vertices * 4 + [2.0 * i, 0, 0] for i in range(4)]
        model.background = ObjectState(
            0,
            "background",
            mesh=TriangleMesh(np.concatenate(room), np.concatenate([faces + len(vertices) * i for i in range(4)]), np.tile(white, (4, 1))),
        )
        ctx = RunContext(config, Compute(torch.device("cpu")), raster_scene.cube_keyframes(), [], {0, 1, 2, 3}, ["texture"])
        return model, ctx

    return build


@pytest.mark.parametrize("ahead", [0, 2])
def test_the_stage_unwraps_each_mesh_once_ahead_of_its_turn(cube_stage_model, monkeypatch, ahead):
    model, ctx = cube_stage_model(ahead)
    jobs = record_jobs(monkeypatch)
    started_when_textured = {}
    inner = texture_stage.texture_mesh

    def texturing(model, state, ctx, rasteriser, unwrapping, guidance=None):
        started_when_textured[state.object_id] = [job.object_id for job in jobs]
        return inner(model, state, ctx, rasteriser, unwrapping, guidance)

    monkeypatch.setattr(texture_stage, "texture_mesh", texturing)
    texture_stage.TextureStage().run(model, ctx)
    assert sorted(job.object_id for job in jobs) == [0, 1, 2, 3]  # each mesh unwrapped once: the job handed in is used
    if ahead == 0:
        assert started_when_textured[1] == [1] and started_when_textured[2] == [1, 2]
    else:  # the next object and the background (the largest mesh, textured last) run while object 1 is textured
        assert started_when_textured[1] == [1, 2, 0]
    assert all(state.mesh.is_textured for state in model.states())


@pytest.mark.parametrize("ahead", [0, 2])
def test_the_stage_gives_every_object_its_own_atlas_with_unwraps_ahead(ahead):
    vertices, faces = raster_scene.cube_mesh()
    config = DpreconConfig()
    config.compute.device = "cpu"
    config.texture.cpu.object_size = 32
    config.texture.unwrap_ahead = ahead
    model = SceneModel()
    shapes = {i: vertices * (1.0 + 0.5 * i) + np.array([2.0 * i, 0.0, 0.0]) for i in (1, 2, 3)}
    for i, v in shapes.items():
        model.objects[i] = ObjectState(i, f"cube {i}", mesh=TriangleMesh(v, faces, np.full((len(v), 4), 255, np.uint8)))
    ctx = RunContext(config, Compute(torch.device("cpu")), raster_scene.cube_keyframes(), [], set(shapes), ["texture"])
    texture_stage.TextureStage().run(model, ctx)
    for i, v in shapes.items():
        mesh = model.objects[i].mesh
        assert mesh.is_textured
        assert np.allclose(mesh.vertices[mesh.faces], v[faces])  # its own surface, not a neighbour's atlas

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


def test_meshes_started_ahead_go_largest_first_and_are_taken_in_list_order():
    queue, started = fake_queue(4, ahead=1, cost=[5, 1, 2, 50])  # the background, largest, comes last
    assert queue.job(0).index == 0
    assert started == [0, 3]  # the background's unwrap runs from the start
    assert queue.job(1).index == 1 and started == [0, 3, 1]  # the one asked for starts at once
    assert queue.job(2).index == 2 and queue.job(3).index == 3
    assert started == [0, 3, 1, 2]


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

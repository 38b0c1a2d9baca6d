"""Mapper: keyframes, persistence across a restart, and recovery from device out-of-memory."""

import pytest
import torch

from dprecon_ros.core.mapper import Mapper


def filled(config, sim_frames) -> Mapper:
    mapper = Mapper(config)
    for frame, _ in sim_frames[0]:
        mapper.add_frame(frame)
    return mapper


def test_restarted_mapper_resumes_from_persist_dir(config, sim_frames, tmp_path):
    config.keyframes.persist_dir = str(tmp_path / "kf")
    first = filled(config, sim_frames)
    held = len(first.keyframes)
    assert held >= 10 and len(list((tmp_path / "kf").glob("*.npz"))) == held
    objects_before = sorted(o.label for o in first.associator.objects.values())
    del first
    second = Mapper(config)  # a restarted node
    assert len(second.keyframes) == held
    assert sorted(o.label for o in second.associator.objects.values()) == objects_before
    recon = second.reconstruct()
    assert sorted(o.label for o in recon.objects) == sorted(sim_frames[1])


def test_too_few_keyframes_is_counted(config, sim_frames):
    mapper = Mapper(config)
    mapper.add_frame(sim_frames[0][0][0])
    assert mapper.reconstruct() is None
    assert mapper.counters.get("too_few_keyframes") == 1


def test_frames_without_depth_are_kept_but_not_associated(config, sim_frames):
    mapper = Mapper(config)
    frame = sim_frames[0][0][0]
    nodepth = type(frame)(**{**frame.__dict__, "depth_m": None})
    assert mapper.add_frame(nodepth) is not None
    assert mapper.counters.get("no_depth") == 1 and not mapper.associator.objects


def test_out_of_memory_falls_back_to_cpu(config, sim_frames, monkeypatch):
    mapper = filled(config, sim_frames)
    calls = []

    def exhausted(*args, **kwargs):
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(mapper.backend, "reconstruct", exhausted)
    recon = mapper.reconstruct()
    assert calls == [1] and recon is not None and len(recon.objects) == len(sim_frames[1])
    assert mapper.counters.get("gpu_out_of_memory") == 1
    assert mapper.backend.device.type == "cpu"


def test_other_backend_errors_propagate_to_the_caller(config, sim_frames, monkeypatch):
    mapper = filled(config, sim_frames)

    def broken(*args, **kwargs):
        raise RuntimeError("bad shape")

    monkeypatch.setattr(mapper.backend, "reconstruct", broken)
    with pytest.raises(RuntimeError, match="bad shape"):
        mapper.reconstruct()
    monkeypatch.undo()
    assert mapper.reconstruct() is not None  # the failed run released its lock


def test_reset_clears_everything(config, sim_frames):
    mapper = filled(config, sim_frames)
    mapper.reconstruct()
    mapper.reset()
    assert len(mapper.keyframes) == 0 and not mapper.associator.objects and mapper.latest is None


def test_gpu_path_imports_neither_open3d_nor_pybullet(tmp_path):
    """The device machine cannot install them: the offline reconstruction path must not need them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import dprecon_ros.tools.reconstruct, dprecon_ros.core.mapper, dprecon_ros.core.evaluation, dprecon_ros.io.bags\n"
        "import dprecon_ros.core.neural.backend\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('open3d', 'pybullet', 'pybullet_data', 'rclpy'))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

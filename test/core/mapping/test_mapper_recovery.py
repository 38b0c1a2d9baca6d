"""Mapper, when things go wrong: damaged files at a restart, loads that find nothing valid, a reset that
must empty the disk too, and a job that must stop when the process does."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import make_frame

from dprecon_ros.config import DpreconConfig
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.fusion import sparse_tsdf
from dprecon_ros.core.geometry import make_transform
from dprecon_ros.core.mapping.keyframe_files import DAMAGED_DIR
from dprecon_ros.core.mapping.mapper import CANCELLED, RECONSTRUCTED, Mapper
from dprecon_ros.core.store.manifest import MANIFEST, MapFormatError
from dprecon_ros.testing.damaged_files import damage_keyframe_files
from dprecon_ros.testing.tiny_map import ENDLESS_GEOMETRY, tiny_config

VIEWS = 6


def tiny_mapper(cfg: DpreconConfig, views: int = VIEWS, xs: list[float] | None = None) -> Mapper:
    """Views along x (metres; 0.2 m apart unless given), each a keyframe."""
    mapper = Mapper(cfg)
    for i, x in enumerate(xs or [0.2 * i for i in range(views)]):
        assert mapper.add_frame(make_frame(stamp=i + 1.0, size=(80, 64), T=make_transform(np.eye(3), [x, 0, 0]), seed=i))
    return mapper


def keyframe_files(directory) -> list[str]:
    return sorted(p.name for p in directory.glob("keyframe_*"))


@pytest.mark.parametrize("with_saved_map", [False, True], ids=["keyframes", "saved_map"])
def test_a_restart_skips_damaged_files_moves_them_aside_and_resumes_the_rest(tmp_path, with_saved_map):
    cfg = tiny_config(tmp_path / "kf")
    first = tiny_mapper(cfg)
    if with_saved_map:
        assert first.reconstruct().status == RECONSTRUCTED
    damage_keyframe_files(tmp_path / "kf", (tmp_path / "kf" / "keyframe_000000.npz").read_bytes(), first_index=100)
    counters = EventCounters()
    restarted = Mapper(cfg, counters)
    assert len(restarted.keyframes) == VIEWS and counters.get("keyframe_file_damaged") == 4
    assert len(keyframe_files(tmp_path / "kf")) == VIEWS and len(list((tmp_path / "kf" / DAMAGED_DIR).iterdir())) == 4
    assert restarted.reconstruct(force=True).status == RECONSTRUCTED


@pytest.mark.parametrize("with_saved_map", [False, True], ids=["keyframes", "saved_map"])
def test_a_restart_with_a_smaller_keyframe_limit_keeps_to_it(tmp_path, with_saved_map):
    cfg = tiny_config(tmp_path / "kf")
    first = tiny_mapper(cfg, xs=[0.0, 0.5, 0.65, 0.8, 0.95, 1.6])
    if with_saved_map:
        assert first.reconstruct().status == RECONSTRUCTED
    cfg.keyframes.max_keyframes = 3
    restarted = Mapper(cfg)
    xs = sorted(round(kf.frame.T_world_camera[0, 3], 2) for kf in restarted.keyframes.snapshot())
    assert len(xs) == 3 and xs[0] == 0.0 and xs[-1] == 1.6  # the most redundant go, as online: the ends stay
    assert len(keyframe_files(tmp_path / "kf")) == 3  # the persist directory mirrors the buffer
    assert restarted.counters.get("keyframes_over_limit") == 1
    assert len(Mapper(cfg).keyframes) == 3


def test_a_load_that_finds_no_readable_keyframe_changes_nothing(tmp_path):
    saved = tiny_mapper(tiny_config())
    saved.reconstruct()
    saved.save_map(tmp_path / "map")
    for path in (tmp_path / "map").glob("keyframe_*.npz"):
        path.write_bytes(b"junk")
    mapper = tiny_mapper(tiny_config(), views=4)
    mapper.reconstruct()
    latest, model = mapper.latest, mapper.model
    with pytest.raises(MapFormatError, match="no readable keyframe"):
        mapper.load_map(tmp_path / "map")
    assert len(mapper.keyframes) == 4 and mapper.latest is latest and mapper.model is model
    assert (tmp_path / "map" / "keyframe_000000.npz").exists()  # a load never moves files it was pointed at


def test_a_load_skips_a_damaged_keyframe_and_says_so(tmp_path):
    saved = tiny_mapper(tiny_config())
    saved.reconstruct()
    saved.save_map(tmp_path / "map")
    (tmp_path / "map" / "keyframe_000002.npz").write_bytes(b"")
    mapper = Mapper(tiny_config())
    loaded = mapper.load_map(tmp_path / "map")
    assert loaded.keyframes == VIEWS - 1 and len(loaded.skipped) == 1 and "keyframe_000002.npz" in loaded.skipped[0]
    assert mapper.counters.get("keyframe_file_damaged") == 1


def test_reset_removes_the_persisted_map_so_a_restart_is_empty(tmp_path):
    cfg = tiny_config(tmp_path / "kf")
    mapper = tiny_mapper(cfg)
    mapper.reconstruct()
    assert (tmp_path / "kf" / MANIFEST).exists()
    mapper.reset()
    assert not keyframe_files(tmp_path / "kf") and not (tmp_path / "kf" / MANIFEST).exists()
    assert not list((tmp_path / "kf").glob("association.*")) and not list((tmp_path / "kf").glob("scene_model.*"))
    restarted = Mapper(cfg)
    assert len(restarted.keyframes) == 0 and restarted.latest is None and not restarted.associator.objects
    assert restarted.counters.snapshot() == {}  # nothing to complain about either


def test_a_frame_considered_before_a_reset_is_not_added_after_it(tmp_path):
    cfg = tiny_config(tmp_path / "kf")
    mapper = tiny_mapper(cfg, views=3)
    consider = mapper.keyframes.consider

    def reset_meanwhile(frame):  # the reset lands between the novelty check and the insertion
        ok = consider(frame)
        mapper.reset()
        return ok

    mapper.keyframes.consider = reset_meanwhile
    assert mapper.add_frame(make_frame(stamp=9.0, size=(80, 64), T=make_transform(np.eye(3), [5.0, 0, 0]), seed=9)) is None
    assert len(mapper.keyframes) == 0 and not keyframe_files(tmp_path / "kf")


def test_stop_cancels_and_joins_a_running_job(tmp_path):
    mapper = tiny_mapper(tiny_config(**ENDLESS_GEOMETRY))
    job = mapper.start(stages=["fuse", "geometry", "mesh"])
    deadline = time.monotonic() + 60
    while job.progress.stage != "geometry" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.progress.stage == "geometry"
    t0 = time.monotonic()
    assert mapper.stop(timeout_s=5.0)
    assert time.monotonic() - t0 < 2.0 and not job.thread_alive and job.report.status == CANCELLED
    assert mapper.start() is None  # a stopped mapper starts nothing more


def test_fusion_stops_between_keyframes_when_cancelled(monkeypatch):
    config = tiny_config()
    config.tsdf.live = False  # the run fuses its own volumes
    mapper = tiny_mapper(config)
    calls, cancel = [], threading.Event()
    integrate = sparse_tsdf.SparseTsdfVolume.integrate

    def integrate_then_cancel(self, *args, **kwargs):
        calls.append(1)
        integrate(self, *args, **kwargs)
        cancel.set()  # a cancel request while the first keyframe was being fused

    monkeypatch.setattr(sparse_tsdf.SparseTsdfVolume, "integrate", integrate_then_cancel)
    assert mapper.reconstruct(stages=["fuse", "mesh"], cancel=cancel).status == CANCELLED and len(calls) == 1

"""Shared fixtures. ROS traffic stays on this machine: localhost discovery and a domain id per test run."""

from __future__ import annotations

import os
import tempfile

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="dprecon_roslog_"))
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dprecon_ros.config import DpreconConfig  # noqa: E402
from dprecon_ros.core.types import CameraIntrinsics, Frame  # noqa: E402


@pytest.fixture(scope="session")
def sim_frames():
    """15 sparse views of the default room with per-frame shuffled ids, plus the true poses."""
    from dprecon_ros.sim.simulator import RoomSimulator, SimConfig

    with RoomSimulator(SimConfig(num_views=15, shuffle_ids=True)) as sim:
        frames = sim.frames()
        gt = sim.ground_truth()
    return frames, gt


@pytest.fixture(scope="session")
def sim_reconstruction(sim_frames):
    """The tsdf backend's map of the 15-view scene (CPU)."""
    from dprecon_ros.core.mapper import Mapper

    cfg = DpreconConfig()
    cfg.tsdf.device = "cpu"
    mapper = Mapper(cfg)
    for frame, _ in sim_frames[0]:
        mapper.add_frame(frame)
    return mapper, mapper.reconstruct()


def make_frame(
    stamp: float = 1.0,
    size: tuple[int, int] = (40, 32),
    depth: float | None = 1.0,
    T: np.ndarray | None = None,
    seed: int = 0,
    instance_value: int = 1,
) -> Frame:
    """A small textured frame looking at a fronto-parallel plane, with one square instance."""
    w, h = size
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    instance = np.zeros((h, w), np.int32)
    instance[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = instance_value
    depth_m = None if depth is None else np.full((h, w), depth, np.float32)
    K = CameraIntrinsics(30.0, 30.0, (w - 1) / 2, (h - 1) / 2, w, h)
    return Frame(stamp, rgb, depth_m, instance, {instance_value: "box"}, K, np.eye(4) if T is None else T)


@pytest.fixture
def config() -> DpreconConfig:
    cfg = DpreconConfig()
    cfg.tsdf.device = "cpu"
    return cfg

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
    from dprecon_ros.core.mapping.mapper import Mapper

    cfg = DpreconConfig()
    cfg.compute.device = "cpu"
    mapper = Mapper(cfg)
    for frame, _ in sim_frames[0]:
        mapper.add_frame(frame)
    return mapper, mapper.reconstruct().reconstruction


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
    cfg.compute.device = "cpu"
    return cfg


@pytest.fixture(scope="session")
def small_frames():
    """8 views at 160x120 of the default room, ids shuffled: enough for every object, quick to fuse."""
    from dprecon_ros.sim.simulator import RoomSimulator, SimConfig

    with RoomSimulator(SimConfig(num_views=8, width=160, height=120, shuffle_ids=True)) as sim:
        return [f for f, _ in sim.frames()], sim.ground_truth()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A Stable-Diffusion-architecture checkpoint with random weights, saved where a real one would be."""
    pytest.importorskip("diffusers")
    from dprecon_ros.testing.tiny_diffusion import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def arc_frames():
    """6 views at 160x120 over a 140° arc: the objects' far sides are never seen."""
    from dprecon_ros.sim.simulator import RoomSimulator, SimConfig

    with RoomSimulator(SimConfig(num_views=6, width=160, height=120, arc_deg=140.0)) as sim:
        return [f for f, _ in sim.frames()], sim.ground_truth()


@pytest.fixture
def coarse_config() -> DpreconConfig:
    """CPU, coarse voxels and small meshes: for tests about behaviour, not quality."""
    cfg = DpreconConfig()
    cfg.compute.device = "cpu"
    cfg.tsdf.object_voxel_m, cfg.tsdf.background_voxel_m = 0.02, 0.08
    cfg.mesh.target_faces, cfg.mesh.background_target_faces = 2000, 4000
    return cfg


def tiny_geometry(cfg: DpreconConfig, iterations: int = 3) -> DpreconConfig:
    """The geometry stage at toy size (seconds on a CPU)."""
    g = cfg.geometry
    g.cpu_preset = False
    g.iterations, g.rays_per_batch, g.object_resolution, g.background_resolution, g.feature_resolution = iterations, 64, 16, 16, 8
    g.samples_coarse, g.samples_fine, g.eikonal_points, g.overlap_points, g.background_patches = 8, 8, 32, 32, 1
    g.patch_size, g.guide_samples, g.progress_every = 4, 16, 1
    return cfg


def filled(config: DpreconConfig, frames):
    """A Mapper that was offered `frames` in order."""
    from dprecon_ros.core.mapping.mapper import Mapper

    mapper = Mapper(config)
    for frame in frames:
        mapper.add_frame(frame)
    return mapper

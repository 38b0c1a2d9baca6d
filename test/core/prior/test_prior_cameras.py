"""The prior's cameras keep the room's up axis up in their images, for each axis a map may call up: an image
turned on its side or upside down would be scored by the diffusion prior as a different object."""

import math

import pytest
import torch

from dprecon_ros.core.stages.prior.cameras import orbit_cameras, room_cameras, up_vector
from dprecon_ros.core.stages.prior.config import PriorConfig

DRAWS = 64


@pytest.mark.parametrize("up_axis", [0, 1, 2])
def test_the_up_vector_is_the_unit_vector_of_its_axis(up_axis):
    expected = torch.zeros(3)
    expected[up_axis] = 1.0
    assert torch.equal(up_vector(up_axis, "cpu"), expected)


@pytest.mark.parametrize("up_axis", [0, 1, 2])
def test_orbit_cameras_look_at_the_centre_with_the_up_axis_up_in_the_image(up_axis):
    cfg = PriorConfig()
    cfg.radius = [2.0, 2.5]  # away from 1, where a dropped factor would pass
    centre = torch.tensor([0.3, -0.2, 0.5])
    poses, fovs = orbit_cameras(centre, 0.25, DRAWS, cfg, up_axis, torch.Generator().manual_seed(0))
    eyes, forward, image_down = poses[:, :3, 3], poses[:, :3, 2], poses[:, :3, 1]
    towards_centre = torch.nn.functional.normalize(centre - eyes, dim=-1)
    assert torch.allclose(forward, towards_centre, atol=1e-5)
    elevation = torch.rad2deg(torch.asin((eyes - centre)[:, up_axis] / (eyes - centre).norm(dim=-1)))
    lo, hi = cfg.elevation_deg
    assert ((elevation >= lo - 1e-3) & (elevation <= hi + 1e-3)).all(), elevation
    assert (image_down[:, up_axis] < 0).all()  # the image's downward axis points down in the room
    assert_rigid(poses)
    assert ((fovs >= math.radians(cfg.fov_deg[0]) - 1e-6) & (fovs <= math.radians(cfg.fov_deg[1]) + 1e-6)).all()
    # the sphere fills the view, times the configured radius factor
    factor = (eyes - centre).norm(dim=-1) * torch.sin(fovs / 2) / 0.25
    assert ((factor >= cfg.radius[0] - 1e-4) & (factor <= cfg.radius[-1] + 1e-4)).all(), factor
    assert_all_around(eyes - centre, up_axis)


@pytest.mark.parametrize("up_axis", [0, 1, 2])
def test_room_cameras_stand_where_the_keyframes_were_and_look_slightly_down(up_axis):
    cfg = PriorConfig()
    centres = torch.tensor([[0.0, 0.0, 1.5], [1.0, 2.0, 1.2]])
    poses, _ = room_cameras(centres, DRAWS, cfg, up_axis, torch.Generator().manual_seed(0))
    eyes, forward, image_down = poses[:, :3, 3], poses[:, :3, 2], poses[:, :3, 1]
    assert {min(range(len(centres)), key=lambda i: (eye - centres[i]).norm()) for eye in eyes} == {0, 1}
    assert all(any(torch.equal(eye, c) for c in centres) for eye in eyes)
    pitch_down = -torch.rad2deg(torch.asin(forward[:, up_axis]))
    lo, hi = cfg.elevation_deg
    assert ((pitch_down >= lo - 1e-3) & (pitch_down <= hi + 1e-3)).all(), pitch_down
    assert (image_down[:, up_axis] < 0).all()
    assert_rigid(poses)
    assert_all_around(forward, up_axis)


def assert_rigid(poses: torch.Tensor) -> None:
    """Orthonormal and right-handed: a mirrored camera would show the object flipped left to right."""
    rotations = poses[:, :3, :3]
    assert torch.allclose(rotations @ rotations.transpose(1, 2), torch.eye(3).expand(len(poses), 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(len(poses)), atol=1e-5)


def assert_all_around(directions: torch.Tensor, up_axis: int) -> None:
    """Azimuths over the whole circle: no gap between neighbouring draws wider than a quarter turn (64 uniform
    draws leave gaps of about 25°; a range narrowed to ±126° leaves one of 108°)."""
    a, b = (up_axis + 1) % 3, (up_axis + 2) % 3
    azimuth = torch.sort(torch.atan2(directions[:, b], directions[:, a])).values
    gaps = torch.cat([azimuth.diff(), (azimuth[:1] + 2 * math.pi) - azimuth[-1:]])
    assert gaps.max() < math.pi / 2, torch.rad2deg(gaps.max())

"""The prior's cameras keep the room's up axis up in their images, for each axis a map may call up: an image
turned on its side or upside down would be scored by the diffusion prior as a different object."""

import math

import pytest
import torch

from dprecon_ros.core.stages.prior.cameras import orbit_cameras, room_cameras, up_vector
from dprecon_ros.core.stages.prior.config import PriorConfig


@pytest.mark.parametrize("up_axis", [0, 1, 2])
def test_the_up_vector_is_the_unit_vector_of_its_axis(up_axis):
    expected = torch.zeros(3)
    expected[up_axis] = 1.0
    assert torch.equal(up_vector(up_axis, "cpu"), expected)


@pytest.mark.parametrize("up_axis", [0, 1, 2])
def test_orbit_cameras_look_at_the_centre_with_the_up_axis_up_in_the_image(up_axis):
    cfg = PriorConfig()
    centre = torch.tensor([0.3, -0.2, 0.5])
    poses, fovs = orbit_cameras(centre, 0.25, 16, cfg, up_axis, torch.Generator().manual_seed(0))
    eyes, forward, image_down = poses[:, :3, 3], poses[:, :3, 2], poses[:, :3, 1]
    towards_centre = torch.nn.functional.normalize(centre - eyes, dim=-1)
    assert torch.allclose(forward, towards_centre, atol=1e-5)
    elevation = torch.rad2deg(torch.asin((eyes - centre)[:, up_axis] / (eyes - centre).norm(dim=-1)))
    lo, hi = cfg.elevation_deg
    assert ((elevation >= lo - 1e-3) & (elevation <= hi + 1e-3)).all(), elevation
    assert (image_down[:, up_axis] < 0).all()  # the image's downward axis points down in the room
    assert torch.allclose(poses[:, :3, :3] @ poses[:, :3, :3].transpose(1, 2), torch.eye(3).expand(16, 3, 3), atol=1e-5)
    assert ((fovs >= math.radians(cfg.fov_deg[0]) - 1e-6) & (fovs <= math.radians(cfg.fov_deg[1]) + 1e-6)).all()


@pytest.mark.parametrize("up_axis", [0, 1, 2])
def test_room_cameras_stand_where_the_keyframes_were_and_look_slightly_down(up_axis):
    cfg = PriorConfig()
    centres = torch.tensor([[0.0, 0.0, 1.5], [1.0, 2.0, 1.2]])
    poses, _ = room_cameras(centres, 16, cfg, up_axis, torch.Generator().manual_seed(0))
    eyes, forward, image_down = poses[:, :3, 3], poses[:, :3, 2], poses[:, :3, 1]
    assert all(any(torch.equal(eye, c) for c in centres) for eye in eyes)
    assert (forward[:, up_axis] <= 0).all() and (forward[:, up_axis] < 0).any()
    assert (image_down[:, up_axis] < 0).all()

"""The cameras the prior looks through: orbits around an object (DP-Recon's object cameras), and views from
inside the room for the background."""

from __future__ import annotations

import math

import torch

from dprecon_ros.core.stages.prior.config import PriorConfig


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """(B, 4, 4) camera-to-world poses with OpenCV optical axes (x right, y down, z forward)."""
    z = torch.nn.functional.normalize(target - eye, dim=-1)
    x = torch.nn.functional.normalize(torch.cross(z, up.expand_as(z), dim=-1), dim=-1)
    y = torch.cross(z, x, dim=-1)
    T = torch.eye(4, device=eye.device).repeat(len(eye), 1, 1)
    T[:, :3, 0], T[:, :3, 1], T[:, :3, 2], T[:, :3, 3] = x, y, z, eye
    return T


def uniform(lo_hi: list[float], count: int, generator: torch.Generator, device) -> torch.Tensor:
    lo, hi = float(lo_hi[0]), float(lo_hi[-1])
    return lo + (hi - lo) * torch.rand(count, generator=generator, device=device)


def up_vector(up_axis: int, device) -> torch.Tensor:
    """Built on the device: setting one element from a Python float would copy it from the host, a wait in
    the SDS loops, which draw cameras every step."""
    return torch.eye(3, device=device)[up_axis]


def orbit_cameras(
    center: torch.Tensor, sphere_radius: float, count: int, cfg: PriorConfig, up_axis: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras on an orbit around `center` (map frame): azimuth over the full circle, elevation and fov from
    the configured ranges, distance such that a sphere of `sphere_radius` fills the view (times `radius`).
    Returns poses (B, 4, 4) and vertical fov (B,) in radians."""
    device = center.device
    azimuth = (torch.rand(count, generator=generator, device=device) * 2 - 1) * math.pi
    elevation = torch.deg2rad(uniform(cfg.elevation_deg, count, generator, device))
    fov = torch.deg2rad(uniform(cfg.fov_deg, count, generator, device))
    distance = sphere_radius / torch.sin(fov / 2) * uniform(cfg.radius, count, generator, device)
    a, b = (up_axis + 1) % 3, (up_axis + 2) % 3
    offset = torch.zeros(count, 3, device=device)
    offset[:, a] = torch.cos(elevation) * torch.cos(azimuth)
    offset[:, b] = torch.cos(elevation) * torch.sin(azimuth)
    offset[:, up_axis] = torch.sin(elevation)
    eye = center + distance[:, None] * offset
    return look_at(eye, center.expand_as(eye), up_vector(up_axis, device)), fov


def room_cameras(
    centres: torch.Tensor, count: int, cfg: PriorConfig, up_axis: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of the background from where the keyframes were taken (`centres` (I, 3), map frame), turned to
    any azimuth: the walls and floor the robot did not face."""
    device = centres.device
    eye = centres[torch.randint(0, len(centres), (count,), generator=generator, device=device)]
    azimuth = (torch.rand(count, generator=generator, device=device) * 2 - 1) * math.pi
    elevation = -torch.deg2rad(uniform(cfg.elevation_deg, count, generator, device))  # looking slightly down
    fov = torch.deg2rad(uniform(cfg.fov_deg, count, generator, device))
    a, b = (up_axis + 1) % 3, (up_axis + 2) % 3
    forward = torch.zeros(count, 3, device=device)
    forward[:, a] = torch.cos(elevation) * torch.cos(azimuth)
    forward[:, b] = torch.cos(elevation) * torch.sin(azimuth)
    forward[:, up_axis] = torch.sin(elevation)
    return look_at(eye, eye + forward, up_vector(up_axis, device)), fov


def pixel_rays(T_world_camera: torch.Tensor, fov_y: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions (B, size*size, 3) through the pixel centres of square images."""
    device = T_world_camera.device
    f = (size / 2) / torch.tan(fov_y / 2)  # (B,)
    c = (size - 1) / 2
    v, u = torch.meshgrid(
        torch.arange(size, device=device, dtype=torch.float32), torch.arange(size, device=device, dtype=torch.float32), indexing="ij"
    )
    cam = torch.stack(
        [(u - c)[None] / f[:, None, None], (v - c)[None] / f[:, None, None], torch.ones_like(u)[None].expand(len(f), -1, -1)], dim=-1
    )
    dirs = torch.nn.functional.normalize(cam.reshape(len(f), -1, 3) @ T_world_camera[:, :3, :3].transpose(1, 2), dim=-1)
    return T_world_camera[:, None, :3, 3].expand_as(dirs), dirs

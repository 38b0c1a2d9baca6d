"""The prior's renders: normal maps in the viewer's convention (x right, y up, z towards the viewer)."""

from __future__ import annotations

import numpy as np
import torch

from dprecon_ros.core.stages.prior.cameras import look_at
from dprecon_ros.core.stages.prior.render import box_bounds, render_views
from dprecon_ros.core.types import SceneNormalisation

RADIUS = 0.3


def sphere(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = x.norm(dim=-1)
    return r - RADIUS, x / r.clamp(min=1e-9)[:, None]


def test_a_sphere_seen_head_on_renders_its_normals_as_stable_diffusion_expects():
    size = 33
    eye = torch.tensor([[0.0, -1.5, 0.0]])
    pose = look_at(eye, torch.zeros(1, 3), torch.tensor([0.0, 0.0, 1.0]))  # looking along +y, z up
    lo, hi = torch.full((3,), -0.5), torch.full((3,), 0.5)
    render = render_views(
        sphere,
        torch.tensor(0.003),
        pose,
        torch.tensor([0.8]),
        size,
        SceneNormalisation(np.zeros(3), 1.0),
        lambda o, d: box_bounds(o, d, lo, hi)[:2],
        64,
        32,
        0.01,
        None,
        torch.Generator().manual_seed(0),
    )
    maps = render.maps[0]
    c = size // 2
    assert torch.allclose(maps[:, c, c], torch.tensor([0.5, 0.5, 1.0, 1.0]), atol=0.05)  # facing the viewer, opaque
    assert torch.allclose(maps[:, 0, 0], torch.tensor([0.5, 0.5, 1.0, 0.0]), atol=1e-3)  # empty: the background normal
    edge = int(c - 0.9 * RADIUS / 1.5 * (size / 2) / np.tan(0.4))  # a pixel near the sphere's top rim
    assert maps[1, edge, c] > 0.75 and abs(maps[0, edge, c] - 0.5) < 0.1  # up in the image is +y
    assert maps[0, c, 2 * c - edge] > 0.75  # right in the image is +x
    assert torch.all(render.visibility == 0)  # no grid: nothing was seen

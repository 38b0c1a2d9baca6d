"""A texture fit's starting point for tests and benchmarks: one half of a mesh observed, as an object seen
from one side, the other half left to the prior."""

from __future__ import annotations

import torch

from dprecon_ros.core.raster import Rasteriser
from dprecon_ros.core.texture.bake import texel_surface
from dprecon_ros.core.texture.sds_fit import TextureTarget
from dprecon_ros.core.texture.uv import UvMesh

START_COLOUR = 0.5  # grey: away from any observed colour the tests and benchmarks use


def half_observed_target(
    rasteriser: Rasteriser, atlas: UvMesh, size: int, device: torch.device, observed_colour: torch.Tensor
) -> TextureTarget:
    """The texels whose surface point has x > 0 are observed in `observed_colour` (S, S, 3); every texel starts
    grey."""
    surface = texel_surface(rasteriser, atlas, size, device)
    observed = torch.zeros(size * size, dtype=torch.bool, device=device)
    observed[surface.texel[surface.points[:, 0] > 0]] = True
    start = torch.full((size, size, 3), START_COLOUR, device=device)
    return TextureTarget(start, observed_colour, observed.view(size, size), surface.chart_mask())

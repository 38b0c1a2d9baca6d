"""Filling texels no keyframe coloured, from the ones around them (push-pull over an image pyramid).

The same fill dilates charts into the gutters between them, so bilinear filtering and mipmaps at a seam never
mix in the empty atlas colour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def push_pull(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """(H, W, C) image with the texels where `known` is False replaced by a smooth blend of known neighbours
    (nearer ones weigh more, coarser levels reach across large holes); known texels stay as they were."""
    if bool(known.all()) or not bool(known.any()):
        return image
    values = image.permute(2, 0, 1)[None] * known[None, None]
    weights = known[None, None].to(image.dtype)
    levels = [(values, weights)]
    while min(values.shape[-2:]) > 1:  # push: average the known texels down to 1x1
        values = F.avg_pool2d(values, 2, ceil_mode=True)
        weights = F.avg_pool2d(weights, 2, ceil_mode=True)
        levels.append((values, weights))
    filled = levels[-1][0] / levels[-1][1].clamp(min=1e-12)
    for values, weights in reversed(levels[:-1]):  # pull: each level's gaps from the coarser level
        coarse = F.interpolate(filled, size=values.shape[-2:], mode="bilinear", align_corners=False)
        own = values / weights.clamp(min=1e-12)
        alpha = weights.clamp(max=1.0)
        filled = alpha * own + (1 - alpha) * coarse
    result = filled[0].permute(1, 2, 0)
    return torch.where(known.unsqueeze(-1), image, result)

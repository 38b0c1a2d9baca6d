"""Filling texels no keyframe coloured from their observed neighbours on the surface, and dilating charts
into the gutters between them.

Unseen texels are filled in 3D (inverse-distance weights over the nearest observed texels on the surface): in
the atlas, the texels next to a texel may belong to an unrelated chart, so a fill there mixed in colours of
other surfaces (speckles on the sim scene's walls). Gutters are filled in the atlas by push-pull over an image
pyramid, from the charts' own texels, so bilinear filtering and mipmaps at a seam never mix in the empty
atlas colour.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

# The observed texels lie on surfaces, and most unseen ones are far from them (a median 17 cm on the sim scene's
# background, with texels 7 mm apart). A k-d tree split at midpoints, with leaves of 64, answers such queries
# 4x faster than scipy's default (median splits, leaves of 16: 2.8 s against 11.5 s for 1.5 M texels), with the
# same neighbours up to ties at equal distances; median splits cut the surfaces into slivers that a far
# query's ball crosses many of.
KD_LEAF_SIZE = 64
MIN_DISTANCE_M = 1e-6  # an unseen texel on top of an observed one takes its colour, without dividing by 0


def surface_fill(colour: torch.Tensor, points: torch.Tensor, observed: torch.Tensor, neighbours: int) -> torch.Tensor:
    """(T, 3) per-texel colours with the unobserved rows replaced by the inverse-distance mean of the
    `neighbours` nearest observed texels in 3D (`points` (T, 3)); unchanged when nothing or everything was seen."""
    if bool(observed.all()) or not bool(observed.any()):
        return colour
    seen = observed.cpu().numpy()
    known_points = points[observed].cpu().numpy().astype(np.float64)
    k = min(neighbours, len(known_points))
    tree = cKDTree(known_points, leafsize=KD_LEAF_SIZE, balanced_tree=False, compact_nodes=False)
    distance, index = tree.query(points[~observed].cpu().numpy().astype(np.float64), k=k, workers=-1)
    distance, index = distance.reshape(len(distance), k), index.reshape(len(index), k)
    weight = (1.0 / np.maximum(distance, MIN_DISTANCE_M)).astype(np.float32)
    weight /= weight.sum(axis=1, keepdims=True)
    known_colour = colour[observed].cpu().numpy().astype(np.float32)
    filled = colour.clone()
    filled[torch.as_tensor(~seen, device=colour.device)] = torch.as_tensor(
        np.einsum("qk,qkc->qc", weight, known_colour[index]), dtype=colour.dtype, device=colour.device
    )
    return filled


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

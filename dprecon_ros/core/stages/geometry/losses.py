"""The stage-1 losses of DP-Recon, one function each (weights live in GeometryConfig).

Masked terms take a boolean or float mask and average over it without reading it back to the host, so a
step runs without device synchronisation; an empty mask gives zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BCE_CLAMP = 1e-4  # opacities are clamped this far from 0 and 1 before the logarithm


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def rgb_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between rendered and observed colour (R, 3), values in [0, 1]."""
    return (pred - target).abs().mean()


def metric_depth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1 on rays with a depth reading: measured depth is metric, so no alignment."""
    return masked_mean((pred - torch.nan_to_num(target)).abs(), valid)


def scale_shift_invariant_depth_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, image: torch.Tensor, num_images: int
) -> torch.Tensor:
    """MSE after the least-squares scale and shift that best map `pred` onto `target`, one pair per image
    (monocular cues have an unknown scale and shift per image, not per batch)."""
    w = valid.to(pred.dtype)
    q = torch.nan_to_num(target)

    def per_image(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(num_images, dtype=pred.dtype, device=pred.device).index_add(0, image, x * w)

    spp, sp, s1, spq, sq = per_image(pred * pred), per_image(pred), per_image(torch.ones_like(pred)), per_image(pred * q), per_image(q)
    det = (spp * s1 - sp * sp).clamp(min=1e-9)
    scale = (spq * s1 - sp * sq) / det
    shift = (spp * sq - sp * spq) / det
    enough = (s1 >= 2)[image]
    return masked_mean((scale[image] * pred + shift[image] - q) ** 2, valid & enough)


def normal_losses(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, angular 1 - cos) between rendered normals (normalised here) and normals from depth (R, 3), on
    rays `valid` (surface-crossing rays with a measured normal)."""
    n = F.normalize(pred, dim=-1)
    return masked_mean((n - target).abs().sum(-1), valid), masked_mean(1 - (n * target).sum(-1), valid)


def mask_loss(field_opacity: torch.Tensor, target_field: torch.Tensor, num_objects: int) -> torch.Tensor:
    """Binary cross-entropy of each object's rendered opacity (R, F; objects first) against the pixel's
    instance (R,) (background pixels have index num_objects), averaged over rays x objects."""
    if num_objects == 0:
        return field_opacity.sum() * 0.0
    opacity = field_opacity[:, :num_objects].clamp(BCE_CLAMP, 1 - BCE_CLAMP)
    target = F.one_hot(target_field, field_opacity.shape[1])[:, :num_objects].to(opacity.dtype)
    return F.binary_cross_entropy(opacity, target)


def eikonal_loss(gradients: torch.Tensor, owner: torch.Tensor, num_fields: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """(|grad sdf| - 1)^2 averaged per field (`owner` (N,) says whose gradient each row (N, 3) is; rows not in
    `keep` are ignored), then over the fields that have points: a small field counts as much as the
    background."""
    residual = (gradients.norm(dim=-1) - 1) ** 2
    weight = torch.ones_like(residual) if keep is None else keep.to(residual.dtype)
    total = torch.zeros(num_fields, dtype=residual.dtype, device=residual.device).index_add(0, owner, residual * weight)
    count = torch.zeros_like(total).index_add(0, owner, weight)
    present = (count > 0).to(total.dtype)
    return (total / count.clamp(min=1) * present).sum() / present.sum().clamp(min=1)


def smoothness_loss(normals: torch.Tensor, nearby_normals: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean distance between the unit normals of points and of points a small offset away (over `valid`)."""
    distance = (F.normalize(normals, dim=-1) - F.normalize(nearby_normals, dim=-1)).norm(dim=-1)
    return distance.mean() if valid is None else masked_mean(distance, valid)


def overlap_loss(object_sdf: torch.Tensor) -> torch.Tensor:
    """DP-Recon's object-violation term on points (N, K): relu(-d_j - sg(d_min)) for every object j but the
    one the point is deepest in, i.e. no other object may reach deeper than the point's own depth."""
    if object_sdf.shape[1] < 2 or object_sdf.shape[0] == 0:
        return object_sdf.sum() * 0.0
    d_min, deepest = object_sdf.detach().min(dim=1)
    violation = F.relu(-object_sdf - d_min[:, None])
    others = torch.ones_like(violation).scatter(1, deepest[:, None], 0.0)
    return (violation * others).sum(dim=1).mean()


def patch_smoothness_loss(depth: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """Depth and normal smoothness of rendered patches (P, S, S) and (P, S, S, 3) (DP-Recon's background term):
    squared second differences of depth (zero on a plane seen at any slant: first differences would tilt a
    floor seen at a grazing angle towards the camera) plus distances of neighbouring unit normals."""
    if depth.numel() == 0:
        return depth.sum() * 0.0
    n = F.normalize(normal, dim=-1)
    depth_term = ((depth[:, 2:] - 2 * depth[:, 1:-1] + depth[:, :-2]) ** 2).mean() + (
        (depth[:, :, 2:] - 2 * depth[:, :, 1:-1] + depth[:, :, :-2]) ** 2
    ).mean()
    normal_term = (n[:, 1:] - n[:, :-1]).norm(dim=-1).mean() + (n[:, :, 1:] - n[:, :, :-1]).norm(dim=-1).mean()
    return depth_term + normal_term


def free_space_loss(field_sdf: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """Where a depth ray passed before its measured surface nothing is there: every field's SDF at those
    samples (M, F) must be positive; `free` (M,) marks them."""
    return masked_mean(F.relu(-field_sdf).sum(dim=1), free)


def outside_box_loss(object_sdf: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """An object is empty outside its box (its cube reaches beyond it): penalise its negative SDF at points
    (M,) of its cube that lie outside the box (`outside` (M,))."""
    return masked_mean(F.relu(-object_sdf), outside)

"""The stage-1 losses of DP-Recon, one function each (weights live in NeuralConfig)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rgb_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between rendered and observed colour (R, 3), values in [0, 1]."""
    return (pred - target).abs().mean()


def metric_depth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1 on rays with a depth reading: measured depth is metric, so no alignment."""
    if not bool(valid.any()):
        return pred.sum() * 0.0
    return (pred[valid] - target[valid]).abs().mean()


def scale_shift_invariant_depth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """MSE after the least-squares scale and shift that best map `pred` onto `target` (monocular cues)."""
    if int(valid.sum()) < 2:
        return pred.sum() * 0.0
    p, q = pred[valid], target[valid]
    A = torch.stack([p, torch.ones_like(p)], dim=1)
    lhs = A.T @ A + 1e-6 * torch.eye(2, device=p.device, dtype=p.dtype)
    scale_shift = torch.linalg.solve(lhs, A.T @ q)
    return ((A @ scale_shift - q) ** 2).mean()


def normal_losses(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, angular 1 - cos) between rendered normals (normalised here) and normals from depth (R, 3)."""
    if not bool(valid.any()):
        zero = pred.sum() * 0.0
        return zero, zero
    n = F.normalize(pred[valid], dim=-1)
    t = target[valid]
    return (n - t).abs().sum(-1).mean(), (1 - (n * t).sum(-1)).mean()


def mask_loss(field_opacity: torch.Tensor, target_field: torch.Tensor) -> torch.Tensor:
    """MSE between each field's rendered opacity (R, F) and the one-hot of the pixel's field (R,)."""
    target = F.one_hot(target_field, field_opacity.shape[1]).to(field_opacity.dtype)
    return ((field_opacity - target) ** 2).sum(-1).mean()


def eikonal_loss(gradients: torch.Tensor) -> torch.Tensor:
    """(|grad sdf| - 1)^2 over any number of leading dimensions (..., 3)."""
    return ((gradients.norm(dim=-1) - 1) ** 2).mean()


def smoothness_loss(normals: torch.Tensor, nearby_normals: torch.Tensor) -> torch.Tensor:
    """Mean distance between the unit normals of points and of points a small offset away."""
    return (F.normalize(normals, dim=-1) - F.normalize(nearby_normals, dim=-1)).norm(dim=-1).mean()


def overlap_loss(object_sdf: torch.Tensor) -> torch.Tensor:
    """Penalise points inside more than one object (N, K): every negative SDF except the deepest one."""
    if object_sdf.shape[1] < 2:
        return object_sdf.sum() * 0.0
    inside = F.relu(-object_sdf)
    return (inside.sum(dim=1) - inside.max(dim=1).values).mean()


def background_loss(background_sdf_on_objects: torch.Tensor) -> torch.Tensor:
    """The background must be empty where the cameras saw object surfaces: penalise its negative SDF."""
    if background_sdf_on_objects.numel() == 0:
        return background_sdf_on_objects.sum() * 0.0
    return F.relu(-background_sdf_on_objects).mean()

"""Score distillation sampling (SDS) as DP-Recon runs it, apart from any particular network.

The rendered maps are the latents themselves (Fantasia3D style: normal map + opacity resized to the latent
size, scaled to [-1, 1], no VAE). For a timestep t drawn from an annealed range, the gradient on the latents
is w(t) * (eps_hat - eps) with w(t) = sqrt(alpha_bar) * (1 - alpha_bar), scaled per latent pixel by the
visibility weight; the loss 0.5 * ||z - sg(z - g)||^2 / B has exactly that gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dprecon_ros.core.schedules import schedule_value


def timestep_range(t_min: list[float], t_max: list[float], progress: float) -> tuple[float, float]:
    """(lowest, highest) timestep as fractions of the noise schedule at `progress` (fraction of the prior's
    steps); both anneal from the wide range of the start to the narrow, low range of the end."""
    lo, hi = schedule_value(t_min, progress), schedule_value(t_max, progress)
    return min(lo, hi), max(lo, hi)


def draw_timesteps(
    count: int, t_min: list[float], t_max: list[float], progress: float, train_steps: int, generator: torch.Generator, device
) -> torch.Tensor:
    lo, hi = timestep_range(t_min, t_max, progress)
    first, last = int(lo * train_steps), max(int(lo * train_steps) + 1, int(hi * train_steps) + 1)
    return torch.randint(first, min(last, train_steps), (count,), generator=generator, device=device)


def sds_weighting(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """w(t) = sqrt(alpha_bar_t) * (1 - alpha_bar_t) per sample (B,) ("fantasia3d" weighting)."""
    a = alphas_cumprod.to(t.device)[t].float()
    return a.sqrt() * (1 - a)


def visibility_weight(visibility: torch.Tensor, low: list[float], high: list[float]) -> torch.Tensor:
    """SDS weight per pixel from its visibility V in [0, 1]: large where the keyframes never saw the surface,
    zero where they saw it fully (V < 0.5: low[0] - low[1] * V; V >= 0.5: high[0] * (high[1] - high[1] * V))."""
    v = visibility.clamp(0.0, 1.0)
    return torch.where(v < 0.5, low[0] - low[1] * v, high[0] * (high[1] - high[1] * v))


def as_latents(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 4, H, W) maps in [0, 1] -> (B, 4, size, size) latents in [-1, 1]."""
    return F.interpolate(maps * 2.0 - 1.0, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def latent_weight(weight: torch.Tensor, size: int) -> torch.Tensor:
    """Per-pixel weights (B, 1, H, W) averaged down to the latent grid."""
    return F.adaptive_avg_pool2d(weight, (size, size))


def sds_gradient(
    eps_hat: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """w(t) * (eps_hat - eps) * weight, NaNs zeroed: what the latents' gradient should be."""
    w = sds_weighting(alphas_cumprod, t).view(-1, 1, 1, 1)
    return torch.nan_to_num(w * (eps_hat.float() - eps.float()) * weight, nan=0.0, posinf=0.0, neginf=0.0)


def sds_loss(latents: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """0.5 * ||z - sg(z - g)||^2 / B: its gradient with respect to z is g (the batch's mean per view)."""
    target = (latents - gradient).detach()
    return 0.5 * F.mse_loss(latents.float(), target.float(), reduction="sum") / latents.shape[0]

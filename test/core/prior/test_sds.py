"""SDS arithmetic: the gradient's sign and size, the w(t) weighting, timestep annealing, visibility weighting."""

from __future__ import annotations

import math

import pytest
import torch

from dprecon_ros.core.guidance import sds
from dprecon_ros.core.stages.prior.config import PriorConfig


def ddpm_alphas(steps: int = 1000) -> torch.Tensor:
    """Stable Diffusion's scaled-linear schedule."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, steps) ** 2
    return torch.cumprod(1 - betas, dim=0)


def test_loss_gradient_is_the_sds_gradient():
    z = torch.randn(3, 4, 8, 8, requires_grad=True)
    g = torch.randn(3, 4, 8, 8)
    sds.sds_loss(z, g).backward()
    assert torch.allclose(z.grad, g / 3, atol=1e-6)  # 0.5 * ||z - sg(z - g)||^2 / B


def test_descending_the_sds_gradient_moves_the_latents_towards_what_the_model_denoises_to():
    """A denoiser that knows one image x* exactly: eps_hat = (z_t - sqrt(a) x*) / sqrt(1 - a). Gradient
    descent on the SDS loss must bring the latents to x*; with the gradient's sign flipped it drives them away."""
    alphas = ddpm_alphas()
    target = torch.rand(2, 4, 8, 8) * 2 - 1
    z = torch.zeros(2, 4, 8, 8, requires_grad=True)
    opt = torch.optim.SGD([z], lr=2.0)
    generator = torch.Generator().manual_seed(0)
    start = (z - target).norm().item()
    for _ in range(100):
        t = torch.randint(200, 900, (2,), generator=generator)
        eps = torch.randn(z.shape, generator=generator)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * z.detach() + (1 - a).sqrt() * eps
        eps_hat = (noisy - a.sqrt() * target) / (1 - a).sqrt()
        loss = sds.sds_loss(z, sds.sds_gradient(eps_hat, eps, t, alphas, torch.ones(2, 1, 8, 8)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (z - target).norm().item() < 0.05 * start


def test_weighting_is_sqrt_alpha_bar_times_one_minus_alpha_bar():
    alphas = torch.tensor([0.99, 0.5, 0.01])
    w = sds.sds_weighting(alphas, torch.tensor([0, 1, 2]))
    assert torch.allclose(w, torch.tensor([math.sqrt(0.99) * 0.01, math.sqrt(0.5) * 0.5, math.sqrt(0.01) * 0.99]))


def test_timestep_range_anneals_from_wide_to_low_as_the_paper_sets_it():
    cfg = PriorConfig()
    assert sds.timestep_range(cfg.t_min, cfg.t_max, 0.0) == pytest.approx((0.20, 0.98))
    assert sds.timestep_range(cfg.t_min, cfg.t_max, 0.5) == pytest.approx((0.02, 0.40))
    middle = (cfg.t_min[0] + cfg.t_min[3]) / 2
    assert sds.timestep_range(cfg.t_min, cfg.t_max, middle) == pytest.approx((0.11, 0.69))
    generator = torch.Generator().manual_seed(0)
    early = sds.draw_timesteps(4000, cfg.t_min, cfg.t_max, 0.0, 1000, generator, "cpu")
    late = sds.draw_timesteps(4000, cfg.t_min, cfg.t_max, 1.0, 1000, generator, "cpu")
    assert early.min() >= 200 and early.max() <= 980 and early.max() > 900
    assert late.min() >= 20 and late.max() <= 400 and late.float().mean() < 250


def test_visibility_weight_follows_the_papers_code_and_vanishes_where_fully_seen():
    cfg = PriorConfig()
    v = torch.tensor([0.0, 0.25, 0.49, 0.5, 0.75, 1.0])
    w = sds.visibility_weight(v, cfg.visibility_low, cfg.visibility_high)
    assert torch.allclose(w, torch.tensor([20.0, 10.5, 20 - 38 * 0.49, 0.1, 0.05, 0.0]), atol=1e-6)


def test_no_gradient_where_the_visibility_is_one():
    alphas = ddpm_alphas()
    z = torch.randn(2, 4, 8, 8, requires_grad=True)
    cfg = PriorConfig()
    vis = torch.ones(2, 1, 8, 8)
    vis[:, :, :, :4] = 0.0  # the left half was never seen
    weight = sds.visibility_weight(vis, cfg.visibility_low, cfg.visibility_high)
    eps = torch.randn(z.shape)
    sds.sds_loss(z, sds.sds_gradient(eps + 1.0, eps, torch.tensor([500, 600]), alphas, weight)).backward()
    assert torch.all(z.grad[..., 4:] == 0) and torch.all(z.grad[..., :4].abs() > 0)


def test_latents_are_the_maps_resized_and_scaled_to_plus_minus_one():
    maps = torch.zeros(1, 4, 32, 32)
    maps[:, 3] = 1.0
    z = sds.as_latents(maps, 16)
    assert z.shape == (1, 4, 16, 16) and torch.allclose(z[:, :3], torch.tensor(-1.0)) and torch.allclose(z[:, 3], torch.tensor(1.0))


def test_latent_weights_are_the_mean_of_the_pixels_they_cover():
    weight = torch.zeros(1, 1, 4, 4)
    weight[..., :, :1] = 1.0  # one column of four seen as unseen
    assert torch.allclose(sds.latent_weight(weight, 2), torch.tensor([[[[0.5, 0.0], [0.5, 0.0]]]]))

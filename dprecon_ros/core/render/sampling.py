"""VolSDF's error-bounded ray sampling (Yariv et al. 2021), as DP-Recon uses it.

Samples are added where the bound on the opacity error is large until it is below `eps` (or the rounds run
out); a beta+ >= beta that meets the bound on the final set is found by bisection; the returned samples are
drawn from the opacity that beta+ gives, plus extra samples kept from the refined set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dprecon_ros.core.fields.composite import laplace_cdf_density

BISECTION_STEPS = 10
OPEN_INTERVAL = 1e10  # length of the last interval of a ray: it ends on the scene's closure
BETA_PLUS_MAX_FACTOR = 1e3  # upper end of the beta+ bisection, relative to beta


def _min_distance_in_interval(d0: torch.Tensor, d1: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Lower bound of |sdf| inside each interval, from the SDF at its ends (a 1-Lipschitz function)."""
    a, b = d0.abs(), d1.abs()
    first = b**2 >= a**2 + delta**2
    second = a**2 >= b**2 + delta**2
    s = (a + b + delta) / 2
    area = (s * (s - a) * (s - b) * (s - delta)).clamp(min=0).sqrt()
    height = 2 * area / delta.clamp(min=1e-10)
    d_star = torch.where(first, a, torch.where(second, b, height))
    d_star = torch.where((a + b) <= delta, torch.zeros_like(d_star), d_star)
    return torch.where(d0 * d1 < 0, torch.zeros_like(d_star), d_star)


def opacity_error_bound(t: torch.Tensor, sdf: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-ray bound on the opacity error (R,) and per-interval error contributions (R, S-1)."""
    beta = beta.reshape(-1, 1) if beta.dim() else beta
    delta = t[:, 1:] - t[:, :-1]
    d_star = _min_distance_in_interval(sdf[:, :-1], sdf[:, 1:], delta)
    errors = delta**2 / (4 * beta**2) * torch.exp(-d_star / beta)
    sigma = laplace_cdf_density(sdf[:, :-1], beta)
    opacity_before = torch.cumsum(torch.cat([torch.zeros_like(delta[:, :1]), sigma[:, :-1] * delta[:, :-1]], dim=1), dim=1)
    error_before = torch.cumsum(errors, dim=1)
    bound = (torch.exp(error_before).clamp(max=1e6) - 1.0) * torch.exp(-opacity_before)
    return bound.max(dim=1).values, errors * torch.exp(-opacity_before)


def composite_weights(sigma: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha-compositing weights (R, S) and the transmittance before each sample (R, S)."""
    alpha = 1 - torch.exp(-sigma * delta)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1] + 1e-10], dim=1), dim=1)
    return alpha * trans, trans


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, count: int, deterministic: bool) -> torch.Tensor:
    """Inverse-transform samples (R, count) from a piecewise-constant pdf over intervals `bins` (R, S)."""
    pdf = weights + 1e-6
    pdf = pdf / pdf.sum(dim=1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=1)], dim=1)
    if deterministic:
        u = torch.linspace(0.0, 1.0, count, device=bins.device).expand(len(bins), count).contiguous()
    else:
        u = torch.rand(len(bins), count, device=bins.device)
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[1] - 1)
    c0, c1 = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    b0, b1 = bins.gather(1, idx - 1), bins.gather(1, idx)
    frac = ((u - c0) / (c1 - c0).clamp(min=1e-10)).clamp(0.0, 1.0)
    return b0 + frac * (b1 - b0)


def refine_until_bounded(
    sdf_of: Callable[[torch.Tensor], torch.Tensor],
    near: torch.Tensor,
    far: torch.Tensor,
    beta: torch.Tensor,
    n_init: int,
    eps: float,
    rounds: int,
    deterministic: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VolSDF's refinement: samples t (R, S), the SDF there, and per ray a beta+ >= beta for which the opacity
    error bound on those samples is at most `eps` (beta itself where the rounds got there)."""
    with torch.no_grad():
        steps = torch.linspace(0.0, 1.0, n_init, device=near.device)
        t = near[:, None] + (far - near)[:, None] * steps[None]
        sdf = sdf_of(t)
        beta = beta.detach()
        for _ in range(rounds):
            bound, contributions = opacity_error_bound(t, sdf, beta)
            if bool((bound <= eps).all()):
                break
            new_t = sample_pdf(t, contributions, n_init, deterministic)
            new_sdf = sdf_of(new_t)
            t, order = torch.sort(torch.cat([t, new_t], dim=1), dim=1)
            sdf = torch.cat([sdf, new_sdf], dim=1).gather(1, order)
        # beta+ in [beta, beta_hi] with bound(beta+) <= eps, per ray
        lo = beta.expand(len(t)).clone()
        hi = torch.full_like(lo, float(beta) * BETA_PLUS_MAX_FACTOR)
        ok_lo = opacity_error_bound(t, sdf, lo)[0] <= eps
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            ok = opacity_error_bound(t, sdf, mid)[0] <= eps
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
        return t, sdf, torch.where(ok_lo, beta.expand(len(t)), hi)


def error_bounded_samples(
    sdf_of: Callable[[torch.Tensor], torch.Tensor],
    near: torch.Tensor,
    far: torch.Tensor,
    beta: torch.Tensor,
    n_init: int,
    n_final: int,
    n_extra: int,
    eps: float,
    rounds: int,
    deterministic: bool = False,
) -> torch.Tensor:
    """Sorted distances (R, n_final + n_extra + 1) along rays, the last one at `far` (where the scene is
    closed); `sdf_of(t)` gives the scene SDF at (R, S) distances."""
    t, sdf, beta_plus = refine_until_bounded(sdf_of, near, far, beta, n_init, eps, rounds, deterministic)
    with torch.no_grad():
        sigma = laplace_cdf_density(sdf, beta_plus[:, None])
        delta = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], OPEN_INTERVAL)], dim=1)
        weights = composite_weights(sigma, delta)[0][:, :-1]
        final = [sample_pdf(t, weights, n_final, deterministic), far[:, None]]
        if n_extra:
            pick = (
                torch.randint(0, t.shape[1], (len(t), n_extra), device=t.device)
                if not deterministic
                else torch.linspace(0, t.shape[1] - 1, n_extra, device=t.device).long().expand(len(t), n_extra)
            )
            final.append(t.gather(1, pick))
        return torch.sort(torch.cat(final, dim=1), dim=1).values


def guided_samples(
    near: torch.Tensor, far: torch.Tensor, guide: torch.Tensor, n_coarse: int, n_fine: int, half_width: float, generator: torch.Generator
) -> torch.Tensor:
    """Sorted training samples (R, n_coarse + n_fine): stratified over [near, far] (the last at `far`, where the
    scene is closed), and densely within `half_width` of `guide` (a measured depth along the ray, or where
    sphere tracing met the surface). With a measured depth the surface is known to be there: no refinement
    rounds are needed to find it."""
    R, device = len(near), near.device
    jitter = torch.rand((R, n_coarse - 1), generator=generator, device=device)
    coarse = (torch.arange(n_coarse - 1, device=device) + jitter) / (n_coarse - 1)
    coarse = torch.cat([near[:, None] + (far - near)[:, None] * coarse, far[:, None]], dim=1)
    lo = torch.minimum(torch.maximum(guide - half_width, near), far)
    hi = torch.minimum(torch.maximum(guide + half_width, lo), far)
    fine = (torch.arange(n_fine, device=device) + torch.rand((R, n_fine), generator=generator, device=device)) / n_fine
    fine = lo[:, None] + (hi - lo)[:, None] * fine
    return torch.sort(torch.cat([coarse, fine], dim=1), dim=1).values


@torch.no_grad()
def first_surface(sdf_of: Callable[[torch.Tensor], torch.Tensor], near: torch.Tensor, far: torch.Tensor, count: int) -> torch.Tensor:
    """Distance (R,) of each ray's first zero crossing among `count` uniform samples of `sdf_of(t)` (linear
    between the samples that bracket it), or `far` where the ray never enters a surface (the scene's closure
    is there). One batched evaluation instead of many sequential sphere-tracing steps."""
    steps = torch.linspace(0.0, 1.0, count, device=near.device)
    t = near[:, None] + (far - near)[:, None] * steps[None]
    sdf = sdf_of(t)
    inside = sdf <= 0
    first = torch.where(inside.any(dim=1), inside.float().argmax(dim=1), torch.full_like(near, count - 1, dtype=torch.long))
    before = (first - 1).clamp(min=0)
    d0, d1 = sdf.gather(1, before[:, None])[:, 0], sdf.gather(1, first[:, None])[:, 0]
    t0, t1 = t.gather(1, before[:, None])[:, 0], t.gather(1, first[:, None])[:, 0]
    frac = (d0 / (d0 - d1).clamp(min=1e-12)).clamp(0.0, 1.0)
    return torch.where(first > 0, t0 + frac * (t1 - t0), t1)

"""Compositional scene representation: one SDF field per object plus the background, a colour network.

Coordinates are normalised scene units (the scene inside a unit sphere). Objects live in canonical cubes
packed into one tensor per pyramid level; the background is a pyramid over the scene's box, closed by the
bounding sphere as DP-Recon does (its SDF is at most `closure_radius - |x|`), so every ray ends somewhere.
The scene SDF is the minimum over all fields.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dprecon_ros.core.fields.box import BoxedModule, GridBox
from dprecon_ros.core.fields.grid import trilinear
from dprecon_ros.core.fields.pyramid import PackedObjects, PyramidSdf


class LaplaceDensity(nn.Module):
    """VolSDF density: sigma = (1/beta) * Psi_beta(-sdf), Psi the Laplace CDF; beta is learnt."""

    def __init__(self, beta_init: float, beta_min: float = 1e-4) -> None:
        super().__init__()
        self.log_beta = nn.Parameter(torch.tensor(float(beta_init)).log())
        self.beta_min = beta_min

    @property
    def beta(self) -> torch.Tensor:
        return self.log_beta.exp() + self.beta_min


MAX_DENSITY_EXPONENT = 80.0  # exp(-80) ~ 1.8e-35, above float32's smallest normal number (1.2e-38)


def laplace_cdf_density(sdf: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """sigma(sdf) = (1/beta) * (0.5 * exp(sdf/beta) if sdf > 0 else 1 - 0.5 * exp(-sdf/beta)) (sdf > 0 outside)."""
    # one exponential for both branches (no inf * 0 in backward), its exponent capped where float32 would turn
    # denormal: far from surfaces the density is 0 to within 1e-35 either way, and denormals slow CPU steps
    half_tail = 0.5 * torch.exp(-(sdf.abs() / beta).clamp(max=MAX_DENSITY_EXPONENT))
    return (1.0 / beta) * torch.where(sdf > 0, half_tail, 1.0 - half_tail)


FEATURE_INIT_STD = 0.01  # the colour grid's features start as small noise around zero


def reset_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """`nn.Linear`'s own initialisation (Kaiming-uniform weights, uniform bias in ±1/sqrt(fan_in)), drawn from
    `generator` instead of torch's global random state."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        bound = 1 / math.sqrt(layer.in_features)
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


class ColorNetwork(BoxedModule):
    """RGB from a feature grid sample, position, normal and view direction (a small MLP).

    Its initial weights come from `generator` when one is given: from torch's global random state, a run's
    result would depend on whatever drew from it before in the process, and two runs of one map would differ.
    """

    def __init__(self, box: GridBox, feature_dim: int, hidden: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.box = box
        self.features = nn.Parameter(torch.empty(feature_dim, *box.shape).normal_(0, FEATURE_INIT_STD, generator=generator))
        self.mlp = nn.Sequential(nn.Linear(feature_dim + 9, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        if generator is not None:
            for layer in self.mlp:
                if isinstance(layer, nn.Linear):
                    reset_linear(layer, generator)

    def forward(self, x: torch.Tensor, normal: torch.Tensor, view_dir: torch.Tensor) -> torch.Tensor:
        feat, _ = trilinear(self.features, self.box.to_voxel(x))
        h = torch.cat([feat, x, normal, view_dir], dim=-1)
        return torch.sigmoid(self.mlp(h)).float()


class CompositeScene(nn.Module):
    """Fields 0..K-1 are objects, field K is the background."""

    def __init__(
        self,
        objects: PackedObjects | None,
        background: PyramidSdf,
        color: ColorNetwork,
        beta_init: float,
        mixed_precision: bool = False,
        closure_radius: float = 1.0,
    ) -> None:
        super().__init__()
        self.objects = objects
        self.background = background
        self.color = color
        self.density = LaplaceDensity(beta_init)
        self.mixed_precision = mixed_precision  # bf16 autocast of the colour network (CUDA only)
        self.closure_radius = closure_radius

    @property
    def num_objects(self) -> int:
        return 0 if self.objects is None else len(self.objects)

    def background_sdf(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The background field closed by the bounding sphere: (N,) and (N, 3)."""
        value, grad = self.background(x)
        r = x.norm(dim=-1)
        sphere = self.closure_radius - r
        sphere_grad = -x / r.clamp(min=1e-12)[:, None]
        closer = sphere < value
        return torch.where(closer, sphere, value), torch.where(closer[:, None], sphere_grad, grad)

    def sdfs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-field SDF (N, F) and gradients (N, F, 3)."""
        bg, bg_grad = self.background_sdf(x)
        if self.objects is None:
            return bg[:, None], bg_grad[:, None]
        values, grads = self.objects(x)
        return torch.cat([values, bg[:, None]], dim=1), torch.cat([grads, bg_grad[:, None]], dim=1)

    def scene_sdf(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scene SDF = min over fields (N,), its gradient (N, 3), and the per-field SDFs (N, F)."""
        values, grads = self.sdfs(x)
        sdf, grad = nearest_field(values, grads)
        return sdf, grad, values


def nearest_field(values: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum over fields (N, F) and the gradient of the field that attains it (N, 3)."""
    sdf, idx = values.min(dim=1)
    return sdf, grads.gather(1, idx[:, None, None].expand(-1, 1, 3))[:, 0]

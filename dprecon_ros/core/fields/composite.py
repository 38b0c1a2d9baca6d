"""Compositional scene representation: one SDF grid per object plus the background, a colour network.

Coordinates are normalised scene units (the scene inside a unit sphere). Each object's dense SDF grid covers
its box with a margin; outside the grid an object reads its face value plus the distance to the grid, so it is
positive and grows away from the object. The scene SDF is the minimum over all fields.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from dprecon_ros.core.fields.grid import trilinear


@dataclass
class GridBox:
    """An axis-aligned grid: origin of cell (0,0,0) (scene units), cell size, cells per axis."""

    origin: torch.Tensor
    voxel: float
    shape: tuple[int, int, int]

    def to_voxel(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.origin) / self.voxel

    def centers(self) -> torch.Tensor:
        axes = [torch.arange(n, device=self.origin.device, dtype=torch.float32) for n in self.shape]
        ijk = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
        return self.origin + ijk * self.voxel

    @property
    def upper(self) -> torch.Tensor:
        return self.origin + (torch.tensor(self.shape, device=self.origin.device, dtype=torch.float32) - 1) * self.voxel


class BoxedModule(nn.Module):
    """A module on a GridBox: moving the module moves the box's origin with it."""

    box: GridBox

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.box = replace(self.box, origin=fn(self.box.origin))
        return self


class SdfGrid(BoxedModule):
    """One field: a dense SDF grid on a GridBox."""

    def __init__(self, box: GridBox, init: torch.Tensor) -> None:
        super().__init__()
        self.box = box
        self.values = nn.Parameter(init.reshape(1, *box.shape).float().clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SDF (N,) and its gradient (N, 3) at points x (N, 3)."""
        u = self.box.to_voxel(x)
        value, grad = trilinear(self.values, u)
        outside = x - x.clamp(self.box.origin, self.box.upper)
        dist = outside.norm(dim=-1)
        away = torch.where(dist[:, None] > 0, outside / dist.clamp(min=1e-12)[:, None], torch.zeros_like(outside))
        return value[:, 0] + dist, grad[:, 0] / self.box.voxel + away


class LaplaceDensity(nn.Module):
    """VolSDF density: sigma = (1/beta) * Psi_beta(-sdf), Psi the Laplace CDF; beta is learnt."""

    def __init__(self, beta_init: float, beta_min: float = 1e-4) -> None:
        super().__init__()
        self.log_beta = nn.Parameter(torch.tensor(float(beta_init)).log())
        self.beta_min = beta_min

    @property
    def beta(self) -> torch.Tensor:
        return self.log_beta.exp() + self.beta_min


def laplace_cdf_density(sdf: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """sigma(sdf) = (1/beta) * (0.5 * exp(sdf/beta) if sdf > 0 else 1 - 0.5 * exp(-sdf/beta)) (sdf > 0 outside)."""
    half_tail = 0.5 * torch.exp(-sdf.abs() / beta)  # one exponential for both branches: no inf * 0 in backward
    return (1.0 / beta) * torch.where(sdf > 0, half_tail, 1.0 - half_tail)


class ColorNetwork(BoxedModule):
    """RGB from a feature grid sample, position, normal and view direction (a small MLP)."""

    def __init__(self, box: GridBox, feature_dim: int, hidden: int) -> None:
        super().__init__()
        self.box = box
        self.features = nn.Parameter(torch.zeros(feature_dim, *box.shape).normal_(0, 0.01))
        self.mlp = nn.Sequential(nn.Linear(feature_dim + 9, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, x: torch.Tensor, normal: torch.Tensor, view_dir: torch.Tensor) -> torch.Tensor:
        feat, _ = trilinear(self.features, self.box.to_voxel(x))
        h = torch.cat([feat, x, normal, view_dir], dim=-1)
        return torch.sigmoid(self.mlp(h)).float()


class CompositeScene(nn.Module):
    """Fields 0..K-1 are objects, field K is the background."""

    def __init__(
        self, objects: list[SdfGrid], background: SdfGrid, color: ColorNetwork, beta_init: float, mixed_precision: bool = False
    ) -> None:
        super().__init__()
        self.fields = nn.ModuleList([*objects, background])
        self.color = color
        self.density = LaplaceDensity(beta_init)
        self.mixed_precision = mixed_precision  # bf16 autocast of the colour network (CUDA only)

    @property
    def num_objects(self) -> int:
        return len(self.fields) - 1

    def sdfs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-field SDF (N, F) and gradients (N, F, 3)."""
        values, grads = zip(*(field(x) for field in self.fields))
        return torch.stack(values, dim=1), torch.stack(grads, dim=1)

    def scene_sdf(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scene SDF = min over fields (N,), its gradient (N, 3), and the per-field SDFs (N, F)."""
        values, grads = self.sdfs(x)
        sdf, grad = nearest_field(values, grads)
        return sdf, grad, values


def nearest_field(values: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum over fields (N, F) and the gradient of the field that attains it (N, 3)."""
    sdf, idx = values.min(dim=1)
    return sdf, grads.gather(1, idx[:, None, None].expand(-1, 1, 3))[:, 0]

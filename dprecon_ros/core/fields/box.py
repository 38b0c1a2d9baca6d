"""Axis-aligned grids in normalised scene units, and modules that live on one."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn


@dataclass
class GridBox:
    """An axis-aligned grid: origin of node (0,0,0) (scene units), node spacing, nodes per axis."""

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

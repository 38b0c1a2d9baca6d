"""The rasteriser interface and the choice between nvdiffrast and the torch rasteriser."""

from __future__ import annotations

import logging
from typing import Protocol

import torch

log = logging.getLogger("dprecon_ros")


class Rasteriser(Protocol):
    """Rasterise, interpolate and sample textures the way nvdiffrast does (see the package docstring)."""

    name: str

    def rasterize(self, clip: torch.Tensor, faces: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, V, 4) clip positions, (F, 3) int32 faces, (height, width) -> (B, H, W, 4) (u, v, z/w, id + 1)."""
        ...

    def interpolate(self, attributes: torch.Tensor, rast: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, V, C) or (V, C) per-vertex values -> (B, H, W, C); zero on empty pixels."""
        ...

    def texture(self, image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """(B or 1, Ht, Wt, C) texture sampled bilinearly at (B, H, W, 2) uv, clamped at the border."""
        ...


_nvdiffrast_failure: str | None = None


def make_rasteriser(device: torch.device | str) -> Rasteriser:
    """nvdiffrast on a CUDA device where it loads (its plugin compiles on first use), the torch rasteriser
    otherwise; a failed load is logged once and not retried."""
    global _nvdiffrast_failure
    from dprecon_ros.core.raster.torch_raster import TorchRasteriser

    device = torch.device(device)
    if device.type == "cuda" and _nvdiffrast_failure is None:
        try:
            from dprecon_ros.core.raster.nvdiffrast_raster import NvdiffrastRasteriser

            return NvdiffrastRasteriser(device)
        except Exception as exc:  # noqa: BLE001 - any failure to build or load the plugin
            _nvdiffrast_failure = f"{type(exc).__name__}: {exc}"
            log.warning("nvdiffrast unavailable (%s); rasterising with torch on %s", _nvdiffrast_failure, device)
    return TorchRasteriser()

"""nvdiffrast's CUDA rasteriser behind the project's interface.

nvdiffrast compiles its CUDA plugin on first use; newer torch no longer puts the built module on the import
path, so the plugin's build directory is added before the context is made (see the environment notes).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch


def _plugin_on_path() -> None:
    """Put every directory torch built an nvdiffrast plugin into on sys.path (harmless when already
    importable): torch's extension root, per Python and CUDA version, then `nvdiffrast_plugin*`."""
    from torch.utils import cpp_extension

    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root())
    for build_dir in sorted(root.glob("nvdiffrast_plugin*")) + sorted(root.glob("*/nvdiffrast_plugin*")):
        if build_dir.is_dir() and str(build_dir) not in sys.path:
            sys.path.insert(0, str(build_dir))


class NvdiffrastRasteriser:
    name = "nvdiffrast"

    def __init__(self, device: torch.device) -> None:
        import nvdiffrast.torch as dr

        self._dr = dr
        self.device = device
        _plugin_on_path()
        try:
            self._context = dr.RasterizeCudaContext(device=device)
        except ModuleNotFoundError:  # the plugin was built by this call, after the path was set
            _plugin_on_path()
            self._context = dr.RasterizeCudaContext(device=device)

    def rasterize(self, clip: torch.Tensor, faces: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        rast, _ = self._dr.rasterize(self._context, clip.float().contiguous(), faces.int().contiguous(), resolution=list(size))
        return rast

    def interpolate(self, attributes: torch.Tensor, rast: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        values, _ = self._dr.interpolate(attributes.float().contiguous(), rast, faces.int().contiguous())
        return values

    def texture(self, image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        if image.shape[0] == 1 and uv.shape[0] > 1:
            image = image.expand(uv.shape[0], -1, -1, -1)
        return self._dr.texture(image.float().contiguous(), uv.float().contiguous(), filter_mode="linear", boundary_mode="clamp")

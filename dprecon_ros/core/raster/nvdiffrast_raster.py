"""nvdiffrast's CUDA rasteriser behind the project's interface.

nvdiffrast compiles its CUDA plugin on first use; newer torch no longer puts the built module on the import
path, so the plugin's build directory is added before the context is made (see the environment notes).
"""

from __future__ import annotations

import sys

import torch


def _plugin_on_path() -> None:
    """Put the directory torch built nvdiffrast's plugin into on sys.path (harmless when already importable)."""
    import nvdiffrast
    from torch.utils import cpp_extension

    version = nvdiffrast.__version__.replace(".", "_")
    torch_version = torch.__version__.split("+")[0].replace(".", "_")
    name = f"nvdiffrast_plugin_{version}_torch{torch_version}"
    try:
        build_dir = cpp_extension._get_build_directory(name, False)
    except Exception:  # noqa: BLE001 - a private helper: without it, rely on torch's own path handling
        return
    if build_dir not in sys.path:
        sys.path.insert(0, build_dir)


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

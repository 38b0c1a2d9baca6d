"""Triangle rasterisation behind one interface: nvdiffrast on CUDA, a pure-torch rasteriser everywhere else.

Both follow nvdiffrast's conventions, so texture fitting and evaluation renders do not care which one runs:
`rasterize` takes clip-space positions (B, V, 4) and int32 faces (F, 3) and returns (B, H, W, 4) holding
(u, v, z/w, triangle id + 1), zero where no triangle covers the pixel; an attribute interpolates as
u·a0 + v·a1 + (1 − u − v)·a2; textures are sampled bilinearly with uv in [0, 1], texel centres at
(i + 0.5) / size and row 0 at v = 0.
"""

from dprecon_ros.core.raster.base import Rasteriser, make_rasteriser
from dprecon_ros.core.raster.projection import clip_from_opencv, project_to_clip, project_to_square_views, uv_to_clip

__all__ = ["Rasteriser", "clip_from_opencv", "make_rasteriser", "project_to_clip", "project_to_square_views", "uv_to_clip"]

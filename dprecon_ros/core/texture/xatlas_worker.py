"""The xatlas child process of `uv.UnwrapJob`: a mesh (npz on stdin) in, its atlas (npz on stdout) out.

It imports only numpy and xatlas, so it starts in a fraction of a second.
"""

from __future__ import annotations

import sys

import numpy as np

from dprecon_ros.core.texture.uv import pack_arrays, unpack_arrays


def charts(vertices: np.ndarray, faces: np.ndarray, size: int, padding: int, chart_iterations: int) -> dict[str, np.ndarray]:
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.uint32))
    chart_options = xatlas.ChartOptions()
    chart_options.max_iterations = int(chart_iterations)
    pack = xatlas.PackOptions()
    pack.resolution = int(size)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(chart_options, pack)
    if atlas.atlas_count != 1:  # charts that do not fit one page spill onto more: one texture cannot hold them
        raise ValueError(f"the charts need {atlas.atlas_count} atlases of {size}^2")
    source, indices, uv = atlas[0]
    return {"source": source, "faces": indices, "uv": uv}


def main() -> int:
    request = unpack_arrays(sys.stdin.buffer.read())
    size, padding, chart_iterations = (int(x) for x in request["options"])
    sys.stdout.buffer.write(pack_arrays(**charts(request["vertices"], request["faces"], size, padding, chart_iterations)))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

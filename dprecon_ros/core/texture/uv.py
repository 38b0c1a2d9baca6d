"""UV atlases with xatlas: each mesh is cut into charts packed into a square texture of a given size.

xatlas runs in a child process (`python -m dprecon_ros.core.texture.xatlas_worker`, arrays through its stdin
and stdout): it is native code that can crash on some inputs (seen here: a perfectly regular 80k-face icosphere
kills the interpreter with a segmentation fault), and a crash or a hang must cost one object its texture, not
the node its life. A plain child process, unlike a multiprocessing pool, never re-imports the caller's main
module, so scripts without a `__main__` guard unwrap too.
"""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

WORKER_MODULE = "dprecon_ros.core.texture.xatlas_worker"


class UnwrapFailed(RuntimeError):
    """xatlas could not unwrap the mesh (its process crashed, hung or raised)."""


@dataclass
class UvMesh:
    """A mesh split along chart seams: `source` maps each vertex to the one of the input mesh it copies."""

    vertices: np.ndarray  # (N, 3)
    faces: np.ndarray  # (M, 3) int64
    uv: np.ndarray  # (N, 2) float32 in [0, 1], v = 0 at the texture's first row
    source: np.ndarray  # (N,) int64 into the input vertices


def worker_command() -> list[str]:
    return [sys.executable, "-m", WORKER_MODULE]


def pack_arrays(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        return {k: loaded[k] for k in loaded.files}


def unwrap(vertices: np.ndarray, faces: np.ndarray, size: int, padding: int, chart_iterations: int = 0, timeout_s: float = 600.0) -> UvMesh:
    """Charts packed for a `size`² texture with `padding` texels between them (room for seam dilation);
    `chart_iterations` of xatlas' chart refinement (see `texture.chart_iterations`). Raises UnwrapFailed when
    xatlas cannot do it within `timeout_s`."""
    request = pack_arrays(
        vertices=np.asarray(vertices, dtype=np.float32),
        faces=np.asarray(faces, dtype=np.uint32),
        options=np.array([size, padding, chart_iterations], dtype=np.int64),
    )
    try:
        done = subprocess.run(worker_command(), input=request, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise UnwrapFailed(f"xatlas took longer than {timeout_s:g} s") from exc
    if done.returncode != 0:
        why = f"signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
        detail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise UnwrapFailed(f"the xatlas process ended with {why} {detail[0]}".strip())
    out = unpack_arrays(done.stdout)
    source = out["source"].astype(np.int64)
    return UvMesh(np.asarray(vertices, dtype=np.float64)[source], out["faces"].astype(np.int64), out["uv"].astype(np.float32), source)

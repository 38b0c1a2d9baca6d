"""UV atlases with xatlas: each mesh is cut into charts packed into a square texture of a given size.

xatlas runs in a separate worker process: it is native code that can crash on some inputs (seen here: a
perfectly regular 80k-face icosphere kills the interpreter with a segmentation fault), and a crash must cost
one object its texture, not the node its life. The worker imports only numpy and xatlas and is reused across
calls; a crashed worker is replaced on the next call.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np


class UnwrapFailed(RuntimeError):
    """xatlas could not unwrap the mesh (its worker crashed or raised)."""


@dataclass
class UvMesh:
    """A mesh split along chart seams: `source` maps each vertex to the one of the input mesh it copies."""

    vertices: np.ndarray  # (N, 3)
    faces: np.ndarray  # (M, 3) int64
    uv: np.ndarray  # (N, 2) float32 in [0, 1], v = 0 at the texture's first row
    source: np.ndarray  # (N,) int64 into the input vertices


def xatlas_charts(vertices: np.ndarray, faces: np.ndarray, size: int, padding: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source vertex, faces, uv) from xatlas; runs inside the worker process."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(size)
    pack.padding = int(padding)
    pack.bilinear = True
    atlas.generate(xatlas.ChartOptions(), pack)
    if atlas.atlas_count != 1:  # charts that do not fit one page spill onto more: one texture cannot hold them
        raise ValueError(f"the charts need {atlas.atlas_count} atlases of {size}^2")
    source, indices, uv = atlas[0]
    return source, indices, uv


class _Worker:
    """One lazily started xatlas process, replaced after a crash."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def run(self, fn, *args):
        """fn(*args) in the worker process (fn must be importable there)."""
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            pool = self._pool
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool as exc:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            raise UnwrapFailed("the unwrap worker crashed") from exc
        except Exception as exc:  # noqa: BLE001 - whatever xatlas raised, reported as one failure
            raise UnwrapFailed(f"xatlas failed: {exc}") from exc


_worker = _Worker()


def unwrap(vertices: np.ndarray, faces: np.ndarray, size: int, padding: int) -> UvMesh:
    """Charts packed for a `size`² texture with `padding` texels between them (room for seam dilation);
    raises UnwrapFailed when xatlas cannot do it."""
    source, indices, uv = _worker.run(
        xatlas_charts, np.asarray(vertices, dtype=np.float32), np.asarray(faces, dtype=np.uint32), size, padding
    )
    return UvMesh(
        np.asarray(vertices, dtype=np.float64)[source],
        indices.astype(np.int64),
        uv.astype(np.float32),
        source.astype(np.int64),
    )

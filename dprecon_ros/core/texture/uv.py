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
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

WORKER_MODULE = "dprecon_ros.core.texture.xatlas_worker"
POLL_S = 0.2  # how often a running unwrap checks for a cancelled run


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


def _run_worker(request: bytes, timeout_s: float, check_cancelled: Callable[[], None] | None) -> tuple[bytes, bytes, int]:
    """The worker's output, polling `check_cancelled` every POLL_S; the child is killed on a timeout or a cancel.

    The request goes in through a temporary file, not a pipe: `communicate` retried after a timeout no longer
    writes to the child's stdin, so a request larger than a pipe's buffer, sent to a child that had not yet
    started reading when the first poll ended, never arrived and the unwrap hung until its timeout."""
    with tempfile.TemporaryFile() as stdin:
        stdin.write(request)
        stdin.seek(0)
        proc = subprocess.Popen(worker_command(), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                stdout, stderr = proc.communicate(timeout=min(POLL_S, max(0.01, deadline - time.monotonic())))
                return stdout, stderr, proc.returncode
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise UnwrapFailed(f"xatlas took longer than {timeout_s:g} s") from None
                if check_cancelled is not None:
                    check_cancelled()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def unwrap(
    vertices: np.ndarray,
    faces: np.ndarray,
    size: int,
    padding: int,
    chart_iterations: int = 0,
    timeout_s: float = 600.0,
    check_cancelled: Callable[[], None] | None = None,
) -> UvMesh:
    """Charts packed for a `size`² texture with `padding` texels between them (room for seam dilation);
    `chart_iterations` of xatlas' chart refinement (see `texture.chart_iterations`). Raises UnwrapFailed when
    xatlas cannot do it within `timeout_s`; `check_cancelled` is polled while it works (what it raises ends the
    child process and propagates)."""
    request = pack_arrays(
        vertices=np.asarray(vertices, dtype=np.float32),
        faces=np.asarray(faces, dtype=np.uint32),
        options=np.array([size, padding, chart_iterations], dtype=np.int64),
    )
    stdout, stderr, returncode = _run_worker(request, timeout_s, check_cancelled)
    if returncode != 0:
        why = f"signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
        detail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise UnwrapFailed(f"the xatlas process ended with {why} {detail[0]}".strip())
    out = unpack_arrays(stdout)
    source = out["source"].astype(np.int64)
    return UvMesh(np.asarray(vertices, dtype=np.float64)[source], out["faces"].astype(np.int64), out["uv"].astype(np.float32), source)

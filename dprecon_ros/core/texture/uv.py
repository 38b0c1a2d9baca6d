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


class UnwrapJob:
    """One mesh's unwrap, running in its own xatlas process from construction on, so that the stage can unwrap
    the next meshes while the GPU textures this one; `result` waits for it.

    Request, answer and errors go through temporary files, not pipes: `communicate` retried after a timeout no
    longer writes to the child's stdin (a request larger than a pipe's buffer, sent to a child that had not yet
    started reading, never arrived: an unwrap hung on a GPU machine that way), and a finished child waiting
    to be read must not block on a full stdout pipe while its deadline runs."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, size: int, padding: int, chart_iterations: int, timeout_s: float) -> None:
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.timeout_s = timeout_s
        self._timed_out = False
        files: list = []
        try:
            request = pack_arrays(
                vertices=np.asarray(vertices, dtype=np.float32),
                faces=np.asarray(faces, dtype=np.uint32),
                options=np.array([size, padding, chart_iterations], dtype=np.int64),
            )
            for _ in range(2):
                files.append(tempfile.TemporaryFile())
            self._stdout, self._stderr = files
            with tempfile.TemporaryFile() as stdin:
                stdin.write(request)
                stdin.seek(0)
                self._proc = subprocess.Popen(worker_command(), stdin=stdin, stdout=self._stdout, stderr=self._stderr)
        except (OSError, MemoryError) as exc:  # no memory for the request or to fork, no room for it in the temp dir
            for file in files:
                file.close()
            raise UnwrapFailed(f"cannot start the xatlas process: {type(exc).__name__}: {exc}") from exc
        self._deadline = time.monotonic() + timeout_s  # the child's own running time: it counts from its start

    def result(self, check_cancelled: Callable[[], None] | None = None) -> UvMesh:
        """The atlas, polling `check_cancelled` every POLL_S (what it raises ends the child and propagates);
        raises UnwrapFailed when the child crashed, raised, or ran past its timeout (then it is killed)."""
        try:
            while self._timed_out or self._proc.poll() is None:
                if self._timed_out or time.monotonic() >= self._deadline:  # ended by end_if_late, or late now
                    raise UnwrapFailed(f"xatlas took longer than {self.timeout_s:g} s")
                if check_cancelled is not None:
                    check_cancelled()
                try:
                    self._proc.wait(timeout=min(POLL_S, max(0.01, self._deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    pass
            returncode = self._proc.returncode
            if returncode != 0:
                why = f"signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
                detail = _read(self._stderr).decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise UnwrapFailed(f"the xatlas process ended with {why} {detail[0]}".strip())
            out = unpack_arrays(_read(self._stdout))
        finally:
            self.cancel()
        source = out["source"].astype(np.int64)
        return UvMesh(self.vertices[source], out["faces"].astype(np.int64), out["uv"].astype(np.float32), source)

    def end_if_late(self) -> None:
        """Ends the child once it has run past its deadline, before anyone asks for it: a hung unwrap started
        ahead must not hold a core until its turn comes. Its `result` then raises UnwrapFailed."""
        if self._proc.poll() is None and time.monotonic() >= self._deadline:
            self._timed_out = True
            self.cancel()

    def cancel(self) -> None:
        """Ends the child if it still runs and frees its files; idempotent."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._stdout.close()
        self._stderr.close()


def _read(file) -> bytes:
    file.seek(0)
    return file.read()


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
    return UnwrapJob(vertices, faces, size, padding, chart_iterations, timeout_s).result(check_cancelled)


class UnwrapQueue:
    """Meshes unwrapped for a caller that takes them in list order, with up to `ahead` of them started and not
    yet taken besides the one asked for: while the caller textures one mesh (GPU work), xatlas packs others in
    their own processes. The next mesh in the list always goes first, so it is ready when its turn comes; the
    other slots go by `cost`, largest first (the background's large mesh, textured last, then unwraps while
    the objects are textured instead of when its turn comes); list order without `cost`."""

    def __init__(self, start: list[Callable[[], UnwrapJob]], ahead: int, cost: list[float] | None = None) -> None:
        self._start = start
        self._ahead = ahead
        order = list(range(len(start)))
        self._waiting = order if cost is None else sorted(order, key=lambda i: -cost[i])  # not started, by priority
        self._jobs: dict[int, UnwrapJob | UnwrapFailed] = {}

    def job(self, index: int) -> UnwrapJob:
        """Mesh `index`'s job (started now if it was not yet), after starting others ahead; raises UnwrapFailed
        when its process could not start. The caller owns the job it gets (and cancels it if it gives up)."""
        for job in self._started():
            job.end_if_late()
        self._launch(index)
        if self._ahead > 0:
            self._launch(index + 1)
        while self._waiting and len(self._jobs) - 1 < self._ahead:
            self._launch(self._waiting[0])
        job = self._jobs.pop(index)
        if isinstance(job, UnwrapFailed):
            raise job
        return job

    def _launch(self, index: int) -> None:
        if index not in self._waiting:
            return
        self._waiting.remove(index)
        try:
            self._jobs[index] = self._start[index]()
        except UnwrapFailed as exc:  # raised when mesh `index` is asked for, not while an earlier one is
            self._jobs[index] = exc

    def close(self) -> None:
        """Ends the jobs started ahead that nobody asked for (a cancelled or failed run)."""
        for job in self._started():
            job.cancel()
        self._jobs.clear()

    def _started(self) -> list[UnwrapJob]:
        """The jobs held (started, not yet asked for) whose process did start."""
        return [job for job in self._jobs.values() if not isinstance(job, UnwrapFailed)]

"""The thread that keeps the live map in step with the keyframe buffer.

Ingestion only signals it: a keyframe is fused after `add_frame` returned, never on the caller's thread.
Signals that arrive while it is fusing collapse into one more pass, so a burst of keyframes costs one sync
of all of them rather than a queue. After each pass it can mesh what changed (for the live map topic).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Protocol

from dprecon_ros.core.compute import is_out_of_memory, release_device_memory
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.fusion.config import TsdfConfig
from dprecon_ros.core.fusion.fuse import object_box
from dprecon_ros.core.fusion.live_map import LiveMap
from dprecon_ros.core.types import Keyframe, ObjectSeed, TriangleMesh

log = logging.getLogger("dprecon_ros")


EXIT_JOIN_S = 10.0  # at interpreter exit, how long to wait for a pass to notice it must stop
_RUNNING: weakref.WeakSet[LiveFusion] = weakref.WeakSet()
# Every started thread until it has ended. Held strongly and apart from `_RUNNING`: when a mapper is collected
# its LiveFusion goes as soon as the thread leaves its loop, but the thread still winds down for a while.
_THREADS: set[threading.Thread] = set()
_THREADS_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    """A daemon thread still running when the interpreter finalises aborts the process ("terminate called
    without an active exception": it is ended where it next takes the GIL, which may be inside torch). So every
    fusion is told to stop, then every thread is joined, those of already collected mappers included."""
    for fusion in list(_RUNNING):
        fusion.request_stop()
    deadline = time.monotonic() + EXIT_JOIN_S
    with _THREADS_LOCK:
        threads = list(_THREADS)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


class SyncCancelled(Exception):
    """The map was replaced (reset, load) or the process is stopping: the pass is abandoned."""


@dataclass
class LiveMeshes:
    """The live map as meshes: volume id (0 = background) -> mesh, with what it was made from."""

    meshes: dict[int, TriangleMesh]
    keyframe_ids: tuple[int, ...]
    stamp: float  # the newest keyframe's stamp
    made_at: float  # time.monotonic() when meshed
    fused_s: float = 0.0  # the pass's fusion time
    meshed_s: float = 0.0
    labels: dict[int, str] = field(default_factory=dict)


class LiveSource(Protocol):
    """What the fusion thread reads from its owner (the mapper)."""

    def live_snapshot(self) -> tuple[list[Keyframe], list[ObjectSeed], int]:
        """(keyframes with their current object ids, the objects to show, the map's epoch)"""

    def map_epoch(self) -> int:
        """Bumped when the map is replaced: a pass of an older epoch stops and its result is dropped."""

    def mesh_min_weight(self) -> float: ...


class LiveFusion:
    """Holds its owner weakly: an owner that is garbage-collected stops the thread (tests create many)."""

    def __init__(self, config: TsdfConfig, live: LiveMap, owner: LiveSource, counters: EventCounters) -> None:
        self.config = config
        self.live = live
        self._owner = weakref.ref(owner)
        weakref.finalize(owner, self.request_stop)
        self.counters = counters
        self.mesh_after_sync = False  # the live topic wants meshes; off, passes only fuse
        self.latest: LiveMeshes | None = None
        self.passes = 0
        self.synced_keyframes: tuple[int, ...] = ()
        self._wake = threading.Condition()
        self._pending = False
        self._stopping = False
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="dprecon_live_fusion", daemon=True)

    def start(self) -> LiveFusion:
        _RUNNING.add(self)
        with _THREADS_LOCK:  # started and tracked at once for the exit hook; one that failed to start is not joined
            self._thread.start()
            _THREADS.difference_update([t for t in _THREADS if not t.is_alive()])  # tests start hundreds
            _THREADS.add(self._thread)
        return self

    def notify(self) -> None:
        with self._wake:
            self._pending = True
            self._wake.notify_all()

    def request_stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()

    def stop(self, timeout_s: float) -> bool:
        self.request_stop()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def wait_idle(self, timeout_s: float) -> bool:
        """Until no pass is pending or running (tests and benchmarks wait on this, not on quiet periods)."""
        deadline = time.monotonic() + timeout_s
        with self._wake:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(left)
        return True

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                self._pending, self._busy = False, True
            try:
                self.run_pass()
            except SyncCancelled:
                self.counters.count("live_fusion_cancelled", "", logging.DEBUG)
            except Exception as exc:  # a bug must not end the thread: the node keeps ingesting
                if isinstance(exc, RuntimeError) and is_out_of_memory(exc):
                    self.counters.count("gpu_out_of_memory", "the live map ran out of device memory; cleared, runs fuse their own volumes")
                else:
                    self.counters.count("live_fusion_failed", f"live map fusion failed: {exc}; cleared, runs fuse their own volumes")
                    log.exception("live fusion failed")
                self.live.clear()
                self.synced_keyframes = ()
                release_device_memory()
            finally:
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()

    def _source(self) -> LiveSource:
        owner = self._owner()
        if owner is None:
            raise SyncCancelled()
        return owner

    def run_pass(self) -> None:
        keyframes, seeds, epoch = self._source().live_snapshot()

        def check_cancelled() -> None:
            if self._stopping or self._source().map_epoch() != epoch:
                raise SyncCancelled()

        t0 = time.perf_counter()
        report = self.live.sync(keyframes, check_cancelled)
        fused_s = time.perf_counter() - t0
        self.passes += 1
        self.synced_keyframes = tuple(kf.index for kf in keyframes)
        if report.integrated or report.removed:
            self.counters.count("live_keyframes_fused", "", logging.DEBUG, report.integrated)
        if not self.mesh_after_sync:
            return
        check_cancelled()
        t1 = time.perf_counter()
        shown = {s.object_id: s for s in seeds}
        bounds = {oid: object_box(seed, self.config) for oid, seed in shown.items()}
        meshes = self.live.meshes(self._source().mesh_min_weight(), bounds)
        meshes = {oid: m for oid, m in meshes.items() if oid == 0 or oid in shown}
        stamp = max((kf.frame.stamp for kf in keyframes), default=0.0)
        labels = {oid: seed.label for oid, seed in shown.items()}
        if self._source().map_epoch() == epoch:
            self.latest = LiveMeshes(meshes, self.synced_keyframes, stamp, time.monotonic(), fused_s, time.perf_counter() - t1, labels)

"""The mapping pipeline without ROS: frames in, keyframes and objects held, reconstructions out.

The node and the offline tools both drive this class; it owns the keyframe buffer, the object associator
and the backend, and serialises access so ingestion never waits for a reconstruction.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ..config import DpreconConfig
from .association import ObjectAssociator
from .counters import EventCounters
from .device import is_out_of_memory
from .keyframes import KeyframeBuffer
from .tsdf_backend import ObjectSeed, ProgressFn, make_backend
from .types import Frame, Keyframe, Reconstruction

log = logging.getLogger("dprecon_ros")


class Mapper:
    def __init__(self, config: DpreconConfig, counters: EventCounters | None = None) -> None:
        self.config = config
        self.counters = counters or EventCounters()
        self.keyframes = KeyframeBuffer(config.keyframes, self.counters)
        self.associator = ObjectAssociator(config.association)
        self.backend = make_backend(config)
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.latest: Reconstruction | None = None
        self.runs = 0
        self.frames_seen = 0
        if self.keyframes.persist_dir is not None and self.keyframes.persist_dir.is_dir():
            n = self.load(self.keyframes.persist_dir)
            if n:
                log.info("resumed %d keyframes from %s", n, self.keyframes.persist_dir)

    # ------------------------------------------------------------- ingestion
    def add_frame(self, frame: Frame) -> Keyframe | None:
        """Admit the frame as a keyframe if it is new enough and sharp; returns the keyframe or None."""
        self.frames_seen += 1
        if not self.keyframes.consider(frame):
            return None
        with self._lock:
            if frame.depth_m is None:
                self.counters.count("no_depth", "frame has no depth: objects cannot be associated in 3D", logging.INFO)
                mapping = {}
            else:
                mapping = self.associator.associate(frame)
            kf = self.keyframes.add(frame, mapping)
            self._apply_merges()
        return kf

    def _apply_merges(self) -> None:
        for kf in self.keyframes.snapshot():
            kf.instance_to_object = {i: self.associator.resolve(o) for i, o in kf.instance_to_object.items()}

    # ---------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> int:
        return self.keyframes.save(Path(directory))

    def load(self, directory: str | Path) -> int:
        """Replace the buffer with the keyframes in `directory`, re-associating them in order."""
        keyframes = KeyframeBuffer.read_directory(Path(directory))
        with self._lock:
            self.associator = ObjectAssociator(self.config.association)
            for kf in keyframes:
                kf.instance_to_object = self.associator.associate(kf.frame) if kf.frame.depth_m is not None else {}
            self.keyframes.replace(keyframes)
            self._apply_merges()
        return len(keyframes)

    def reset(self) -> None:
        with self._lock:
            self.keyframes.replace([])
            self.associator = ObjectAssociator(self.config.association)
            self.latest = None

    # -------------------------------------------------------- reconstruction
    def seeds(self) -> list[ObjectSeed]:
        with self._lock:
            vs = self.config.association.voxel_size_m
            return [
                ObjectSeed(o.object_id, o.label, *o.bounds(vs), o.observations)
                for o in self.associator.objects.values()
                if o.observations >= self.config.association.min_observations and o.keys.size
            ]

    def reconstruct(self, progress: ProgressFn | None = None) -> Reconstruction | None:
        """Run the backend on a snapshot of the keyframes; None if there is too little data or it failed."""
        if not self._run_lock.acquire(blocking=False):
            self.counters.count("reconstruct_busy", "a reconstruction is already running; request skipped", logging.INFO)
            return None
        try:
            keyframes = self.keyframes.snapshot()
            if len(keyframes) < self.config.reconstruction.min_keyframes:
                self.counters.count(
                    "too_few_keyframes",
                    f"{len(keyframes)} keyframes < {self.config.reconstruction.min_keyframes}; not reconstructing",
                    logging.INFO,
                )
                return None
            seeds = self.seeds()
            t0 = time.perf_counter()
            try:
                recon = self.backend.reconstruct(keyframes, seeds, progress)
            except RuntimeError as exc:
                if not is_out_of_memory(exc):
                    raise
                self.counters.count(
                    "gpu_out_of_memory", f"reconstruction ran out of device memory ({exc}); retrying on the CPU", logging.ERROR
                )
                self._release_device_memory()
                self.backend = self._cpu_backend()
                recon = self.backend.reconstruct(keyframes, seeds, progress)
            recon.timings_s["total"] = time.perf_counter() - t0
            self.latest = recon
            self.runs += 1
            return recon
        finally:
            self._run_lock.release()

    def _cpu_backend(self):
        import copy

        cfg = copy.deepcopy(self.config)
        cfg.tsdf.device = "cpu"
        return make_backend(cfg)

    @staticmethod
    def _release_device_memory() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

"""The mapping system without ROS: frames in, keyframes and objects held, the scene model kept up to date.

The node and the offline tools both drive this class. Ingestion (`add_frame`) never waits for a
reconstruction: runs work on snapshots, in a background job when started with `start`, and commit their
new scene model only if no reset happened meanwhile.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dprecon_ros.core.compute import compute_from_config
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.mapping.association import ObjectAssociator
from dprecon_ros.core.mapping.keyframes import KeyframeBuffer
from dprecon_ros.core.pipeline import Pipeline, reassemble
from dprecon_ros.core.scene_model import SceneModel
from dprecon_ros.core.stages.base import RunCancelled
from dprecon_ros.core.store.manifest import MapFormatError
from dprecon_ros.core.store.map_store import has_association, has_saved_map, load_association, load_map, save_association, save_map
from dprecon_ros.core.types import BACKGROUND_ID, Frame, Keyframe, ObjectSeed, Reconstruction

if TYPE_CHECKING:
    from dprecon_ros.config import DpreconConfig

log = logging.getLogger("dprecon_ros")

RECONSTRUCTED, UNCHANGED, TOO_FEW_KEYFRAMES, CANCELLED, FAILED = "reconstructed", "unchanged", "too_few_keyframes", "cancelled", "failed"


@dataclass
class RunReport:
    """How a run ended. `reconstruction` is the map after it (the previous map when nothing changed)."""

    status: str
    reconstruction: Reconstruction | None = None
    refitted: list[int] = field(default_factory=list)
    duration_s: float = 0.0
    message: str = ""

    @property
    def changed(self) -> bool:
        return self.status == RECONSTRUCTED

    @property
    def refitted_objects(self) -> list[int]:
        """The refitted ids without the background's."""
        return [oid for oid in self.refitted if oid != BACKGROUND_ID]


@dataclass
class Progress:
    stage: str = "idle"
    stage_index: int = 0
    stage_count: int = 0
    fraction: float = 0.0


class RunJob:
    """A reconstruction running in its own thread; cancel it, wait for it, read its progress."""

    def __init__(self, mapper: Mapper, force: bool, stages: list[str] | None, on_done: Callable[[RunJob], None] | None = None) -> None:
        self.cancel_event = threading.Event()
        self.on_done = on_done
        self.progress = Progress(stage="starting")
        self.report: RunReport | None = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(mapper, force, stages), name="dprecon-reconstruction", daemon=True)

    def _on_progress(self, stage: str, index: int, count: int, fraction: float) -> None:
        self.progress = Progress(stage, index, count, fraction)

    def _run(self, mapper: Mapper, force: bool, stages: list[str] | None) -> None:
        try:
            self.report = mapper.reconstruct(force=force, stages=stages, cancel=self.cancel_event, progress=self._on_progress)
        except BaseException as exc:  # reported to whoever waits; the thread must not die silently
            self.error = exc
            self.report = RunReport(FAILED, mapper.latest, message=f"{type(exc).__name__}: {exc}")
        finally:
            if self.on_done is not None:  # before `done`: whoever waits sees the job fully handled
                try:
                    self.on_done(self)
                except Exception:  # a publisher failing must not hide the report
                    log.exception("handling the end of a reconstruction failed")
            self._done.set()

    def start(self) -> RunJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def running(self) -> bool:
        return not self._done.is_set()


class Mapper:
    def __init__(self, config: DpreconConfig, counters: EventCounters | None = None) -> None:
        self.config = config
        self.config_lock = threading.RLock()  # parameter callbacks and run snapshots take it
        self.counters = counters or EventCounters()
        self.keyframes = KeyframeBuffer(config.keyframes, self.counters)
        self.associator = ObjectAssociator(config.association)
        self.pipeline = Pipeline(self.counters)
        self.model = SceneModel()
        self.latest: Reconstruction | None = None
        self.runs = 0
        self.frames_seen = 0
        self._lock = threading.Lock()  # keyframes + association + model commits
        self._run_lock = threading.Lock()
        self._job: RunJob | None = None
        self._epoch = 0  # bumped by reset and load: a run that started before must not commit
        self.persist_dir = Path(config.keyframes.persist_dir) if config.keyframes.persist_dir else None
        if self.persist_dir is not None and self.persist_dir.is_dir():
            self._resume(self.persist_dir)

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
            if self.persist_dir is not None:
                self._persist_association()
        return kf

    def _apply_merges(self) -> None:
        for kf in self.keyframes.snapshot():
            kf.instance_to_object = {i: self.associator.resolve(o) for i, o in kf.instance_to_object.items()}

    def _persist_association(self) -> None:
        try:
            save_association(self.associator, self.persist_dir)
        except OSError as exc:
            self.counters.count("persist_error", f"cannot persist association to {self.persist_dir}: {exc}")

    # ---------------------------------------------------------- persistence
    def _resume(self, directory: Path) -> None:
        """A restarted node: the saved map if there is one; else its keyframes with the association state
        persisted beside them; else the keyframes re-associated in order."""
        if has_saved_map(directory):
            try:
                n = self.load_map(directory)
                log.info("resumed a map of %d keyframes and %d objects from %s", n, len(self.model.objects), directory)
                return
            except MapFormatError as exc:
                self.counters.count("map_unreadable", f"saved map not resumed ({exc}); resuming its keyframes")
        keyframes = KeyframeBuffer.read_directory(directory)
        if keyframes and has_association(directory):
            try:
                associator = load_association(directory, self.config.association)
            except MapFormatError as exc:
                self.counters.count("map_unreadable", f"association state not resumed ({exc}); re-associating")
            else:
                self._replace_map(keyframes, associator, SceneModel())
                log.info("resumed %d keyframes and %d objects from %s", len(keyframes), len(associator.objects), directory)
                return
        self._reassociate(keyframes)
        if keyframes:
            log.info("resumed %d keyframes from %s (re-associated)", len(keyframes), directory)

    def save_map(self, directory: str | Path, rewrite_keyframes: bool | None = None) -> int:
        """Keyframes, association and scene model to `directory`; the number of keyframes written. Keyframe
        files are rewritten except in the persist directory, which already mirrors them (unless asked)."""
        with self._lock:
            keyframes, associator, model = self.keyframes.snapshot(), copy.deepcopy(self.associator), self.model
        if rewrite_keyframes is None:
            rewrite_keyframes = self.persist_dir is None or Path(directory).resolve() != self.persist_dir.resolve()
        save_map(directory, keyframes, associator, model, rewrite_keyframes=rewrite_keyframes)
        return len(keyframes)

    def load_map(self, directory: str | Path) -> int:
        """Replace everything with the map in `directory` (MapFormatError if it cannot be read); a running
        job is cancelled. Returns the number of keyframes."""
        saved = load_map(directory, self.config.association)
        if saved.missing_keyframes:
            self.counters.count(
                "map_keyframes_missing",
                f"{len(saved.missing_keyframes)} keyframes of the map in {directory} are gone; their objects will be refitted",
            )
        self._replace_map(saved.keyframes, saved.associator, saved.model)
        if self.persist_dir is not None and Path(directory).resolve() != self.persist_dir.resolve():
            self._autosave(rewrite_keyframes=True)  # the persist directory mirrors the loaded map, not the old one
        return len(saved.keyframes)

    def load_keyframes(self, directory: str | Path) -> int:
        """Replace the buffer with the keyframe files in `directory`, re-associating them in order."""
        keyframes = KeyframeBuffer.read_directory(Path(directory))
        self._reassociate(keyframes)
        return len(keyframes)

    def _reassociate(self, keyframes: list[Keyframe]) -> None:
        """A new map of `keyframes`, their masks associated afresh in order."""
        associator = ObjectAssociator(self.config.association)
        for kf in keyframes:
            kf.instance_to_object = associator.associate(kf.frame) if kf.frame.depth_m is not None else {}
        self._replace_map(keyframes, associator, SceneModel())

    def _replace_map(self, keyframes: list[Keyframe], associator: ObjectAssociator, model: SceneModel) -> None:
        """The one way the whole map changes hands (load, resume, reset): a running job is cancelled and,
        through the epoch, cannot commit over it."""
        self._cancel_running()
        with self._lock:
            self._epoch += 1
            self.associator = associator
            self.keyframes.replace(keyframes)
            self._apply_merges()  # keyframe files keep the ids they were written with
            self.model = model
            self.latest = reassemble(model, self.config) if model.states() else None

    def reset(self) -> None:
        """Forget everything, on disk too; a running job is cancelled and its result discarded."""
        self._replace_map([], ObjectAssociator(self.config.association), SceneModel())
        self._autosave(rewrite_keyframes=True)  # an empty map: a restart must not bring the old one back

    # -------------------------------------------------------- reconstruction
    def seeds(self) -> list[ObjectSeed]:
        with self._lock:
            vs = self.config.association.voxel_size_m
            return [
                ObjectSeed(o.object_id, o.label, *o.bounds(vs), o.observations)
                for o in sorted(self.associator.objects.values(), key=lambda o: o.object_id)
                if o.observations >= self.config.association.min_observations and o.keys.size
            ]

    def reconstruct(
        self, force: bool = False, stages: list[str] | None = None, cancel: threading.Event | None = None, progress=None
    ) -> RunReport:
        """Run the pipeline now, in this thread, on snapshots of the keyframes, objects and configuration."""
        with self._run_lock:
            t0 = time.perf_counter()
            with self.config_lock:
                config = copy.deepcopy(self.config)
            with self._lock:  # copies of the keyframes: a merge rewrites their object ids while the run reads them
                keyframes = [replace(kf, instance_to_object=dict(kf.instance_to_object)) for kf in self.keyframes.snapshot()]
                model, epoch = self.model, self._epoch
            seeds = self.seeds()
            if len(keyframes) < config.reconstruction.min_keyframes:
                message = f"{len(keyframes)} keyframes < {config.reconstruction.min_keyframes}; not reconstructing"
                self.counters.count("too_few_keyframes", message, logging.INFO)
                return RunReport(TOO_FEW_KEYFRAMES, self.latest, message=message)
            try:
                outcome = self.pipeline.run(
                    model, keyframes, seeds, config, compute_from_config(config.compute), stages, force, cancel, progress
                )
            except RunCancelled as exc:
                self.counters.count("run_cancelled", f"reconstruction {exc}", logging.INFO)
                return RunReport(CANCELLED, self.latest, duration_s=time.perf_counter() - t0, message=str(exc))
            duration = time.perf_counter() - t0
            if outcome is None:
                self.counters.count("run_unchanged", "", logging.DEBUG)
                return RunReport(UNCHANGED, self.latest, duration_s=duration, message="nothing changed since the last run")
            outcome.reconstruction.timings_s["total"] = duration
            with self._lock:
                if self._epoch != epoch:
                    return RunReport(CANCELLED, self.latest, duration_s=duration, message="the map was reset or replaced during the run")
                self.model, self.latest = outcome.model, outcome.reconstruction
                self.runs += 1
            self._autosave()
            recon = outcome.reconstruction
            report = RunReport(RECONSTRUCTED, recon, outcome.refitted, duration)
            report.message = (
                f"{len(recon.objects)} objects ({len(report.refitted_objects)} refitted), "
                f"{len(recon.scene_graph.relations)} relations in {duration:.2f} s"
            )
            return report

    def _autosave(self, rewrite_keyframes: bool = False) -> None:
        if self.persist_dir is None:
            return
        try:
            self.save_map(self.persist_dir, rewrite_keyframes)
        except OSError as exc:
            self.counters.count("persist_error", f"cannot persist the map to {self.persist_dir}: {exc}")

    # ------------------------------------------------------------------ jobs
    def start(self, force: bool = False, stages: list[str] | None = None, on_done: Callable[[RunJob], None] | None = None) -> RunJob | None:
        """Start a run in the background; None if one is running already. `on_done(job)` runs in the job's
        thread when it ends, whatever the outcome (the node publishes from there)."""
        with self._lock:
            if self._job is not None and self._job.running:
                return None
            self._job = RunJob(self, force, stages, on_done).start()
            return self._job

    @property
    def job(self) -> RunJob | None:
        return self._job

    def _cancel_running(self) -> None:
        job = self._job
        if job is not None and job.running:
            job.cancel()

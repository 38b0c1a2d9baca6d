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
from dprecon_ros.core.fusion.live_map import LiveMap
from dprecon_ros.core.heap import release_free_memory
from dprecon_ros.core.mapping.association import ObjectAssociator
from dprecon_ros.core.mapping.keyframe_files import LOGGED_REASONS, scan_directory
from dprecon_ros.core.mapping.keyframes import KeyframeBuffer
from dprecon_ros.core.mapping.live_fusion import LiveFusion
from dprecon_ros.core.pipeline import EditRefused, Pipeline, reassemble
from dprecon_ros.core.scene_model import SceneModel
from dprecon_ros.core.stages.base import RunCancelled
from dprecon_ros.core.store.manifest import MapFormatError
from dprecon_ros.core.store.map_store import (
    SavedMap,
    clear_map,
    has_association,
    has_saved_map,
    load_association,
    load_map,
    save_association,
    save_map,
)
from dprecon_ros.core.types import BACKGROUND_ID, Frame, Keyframe, ObjectSeed, Reconstruction

if TYPE_CHECKING:
    from dprecon_ros.config import DpreconConfig

log = logging.getLogger("dprecon_ros")

RECONSTRUCTED, UNCHANGED, TOO_FEW_KEYFRAMES, CANCELLED, FAILED = "reconstructed", "unchanged", "too_few_keyframes", "cancelled", "failed"
REFUSED = "refused"  # an edit that cannot run (no such object, no fitted field, no prior here)


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
class MapLoad:
    """What a load left in the mapper, and what it could not take: damaged files skipped (one line each)
    and keyframes dropped to stay within the buffer's bounds."""

    keyframes: int
    objects: int
    skipped: list[str] = field(default_factory=list)
    dropped: int = 0

    def summary(self) -> str:
        text = f"{self.keyframes} keyframes and {self.objects} objects"
        if self.skipped:
            more = f"; and {len(self.skipped) - LOGGED_REASONS} more" if len(self.skipped) > LOGGED_REASONS else ""
            text += f"; {len(self.skipped)} damaged keyframe files skipped ({'; '.join(self.skipped[:LOGGED_REASONS])}{more})"
        if self.dropped:
            text += f"; {self.dropped} keyframes dropped to stay within keyframes.max_keyframes / max_memory_mb"
        return text


@dataclass
class Progress:
    stage: str = "idle"
    stage_index: int = 0
    stage_count: int = 0
    fraction: float = 0.0


class RunJob:
    """A reconstruction running in its own thread; cancel it, wait for it, read its progress."""

    def __init__(
        self,
        mapper: Mapper,
        force: bool,
        stages: list[str] | None,
        on_done: Callable[[RunJob], None] | None = None,
        edits: dict[int, str] | None = None,
    ) -> None:
        self.edits = dict(edits or {})
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
            self.report = mapper.reconstruct(
                force=force, stages=stages, cancel=self.cancel_event, progress=self._on_progress, edits=self.edits
            )
        except BaseException as exc:  # reported to whoever waits; the thread must not die silently
            self.error = exc
            self.report = RunReport(FAILED, mapper.latest, message=f"{type(exc).__name__}: {exc}")
        finally:
            if self.on_done is not None:  # before `done`: whoever waits sees the job fully handled
                try:
                    self.on_done(self)
                except Exception:  # a publisher failing must not hide the report
                    log.exception("handling the end of a reconstruction failed")
            release_free_memory()  # the run's temporaries, freed on this thread, go back to the OS
            self._done.set()

    def start(self) -> RunJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread itself to end (shutdown: no job may be left inside torch at exit)."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self.thread_alive

    @property
    def thread_alive(self) -> bool:
        return self._thread.is_alive()

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
        self._persist_lock = threading.Lock()  # map saves to and clears of the persist directory; taken before _lock
        self._run_lock = threading.Lock()
        self._job: RunJob | None = None
        self._stopped = False  # the process is shutting down: no job starts any more
        self._epoch = 0  # bumped by reset and load: a run that started before must not commit
        self.persist_dir = Path(config.keyframes.persist_dir) if config.keyframes.persist_dir else None
        self.live_map = LiveMap(config.tsdf, compute_from_config(config.compute).device)
        self.live_fusion = LiveFusion(config.tsdf, self.live_map, self, self.counters)
        if config.tsdf.live:
            self.live_fusion.start()
        if self.persist_dir is not None and self.persist_dir.is_dir():
            self._resume(self.persist_dir)

    # ------------------------------------------------------------- live map
    def live_snapshot(self) -> tuple[list[Keyframe], list[ObjectSeed], int]:
        with self._lock:
            keyframes = [replace(kf, instance_to_object=dict(kf.instance_to_object)) for kf in self.keyframes.snapshot()]
            epoch = self._epoch
        return keyframes, self.seeds(), epoch

    def map_epoch(self) -> int:
        return self._epoch

    def mesh_min_weight(self) -> float:
        with self.config_lock:
            return self.config.mesh.min_weight

    def _notify_live(self) -> None:
        if self.config.tsdf.live:
            self.live_fusion.notify()

    # ------------------------------------------------------------- ingestion
    def add_frame(self, frame: Frame) -> Keyframe | None:
        """Admit the frame as a keyframe if it is new enough and sharp; returns the keyframe or None."""
        self.frames_seen += 1
        self.counters.count("considered", "", logging.DEBUG)
        epoch = self._epoch
        if not self.keyframes.consider(frame):
            return None
        with self._lock:
            if self._epoch != epoch:  # a reset or load landed since the checks: the frame was judged against the old map
                self.counters.count("frame_of_replaced_map", "", logging.DEBUG)
                return None
            if frame.depth_m is None:
                self.counters.count("no_depth", "frame has no depth: objects cannot be associated in 3D", logging.INFO)
                mapping = {}
            else:
                mapping = self.associator.associate(frame)
            keys = self.associator.frame_keys if frame.depth_m is not None else {}
            kf, evicted = self.keyframes.add(frame, mapping, keys)
            self.counters.count("accepted", "", logging.DEBUG)
            self._apply_merges()
            if evicted:
                self._forget(evicted)
            if self.persist_dir is not None:
                self._persist_association()
        self._notify_live()
        return kf

    def _forget(self, evicted: list[Keyframe]) -> None:
        """Association forgets what only evicted keyframes saw: the objects they showed are rebuilt from the
        keyframes still held, and dropped where none shows them."""
        touched = {self.associator.resolve(o) for kf in evicted for o in kf.instance_to_object.values()}
        if not touched:
            return
        held = self.keyframes.snapshot()
        for kf in held:
            if kf.instance_keys is None:  # read back from disk
                kf.instance_keys = self.associator.instance_keys(kf.frame)
        dropped = self.associator.rebuild([(kf.instance_to_object, kf.instance_keys) for kf in held], touched)
        if dropped:
            self.counters.count("object_forgotten", f"objects {dropped} are in no keyframe left; dropped", logging.INFO, len(dropped))

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
        persisted beside them; else the keyframes re-associated in order. Damaged files are moved aside
        (the directory is this node's own), and the buffer's bounds apply to what is read."""
        if has_saved_map(directory):
            try:
                loaded = self._load(directory, move_aside=True)
                log.info("resumed a map of %s from %s", loaded.summary(), directory)
                return
            except MapFormatError as exc:
                self.counters.count("map_unreadable", f"saved map not resumed ({exc}); resuming its keyframes")
        keyframes = scan_directory(directory, self.counters, move_aside=True).keyframes
        if keyframes and has_association(directory):
            try:
                associator = load_association(directory, self.config.association)
            except MapFormatError as exc:
                self.counters.count("map_unreadable", f"association state not resumed ({exc}); re-associating")
            else:
                self._replace_map(keyframes, associator, SceneModel(), source=directory)
                log.info("resumed %d keyframes and %d objects from %s", len(self.keyframes), len(associator.objects), directory)
                return
        self._reassociate(keyframes, source=directory)
        if keyframes:
            log.info("resumed %d keyframes from %s (re-associated)", len(self.keyframes), directory)

    def _is_persist_dir(self, directory: str | Path) -> bool:
        return self.persist_dir is not None and Path(directory).resolve() == self.persist_dir.resolve()

    def save_map(self, directory: str | Path, rewrite_keyframes: bool | None = None) -> int:
        """Keyframes, association and scene model to `directory`; the number of keyframes written. Keyframe
        files are rewritten except in the persist directory, which already mirrors them (unless asked)."""
        if rewrite_keyframes is None:
            rewrite_keyframes = not self._is_persist_dir(directory)
        if self._is_persist_dir(directory):
            # keyframe files there change as frames arrive: hold ingestion while stale ones are pruned, or a
            # keyframe added after the snapshot would be pruned as stale
            with self._lock:
                keyframes = self.keyframes.snapshot()
                save_map(directory, keyframes, self.associator, self.model, rewrite_keyframes)
            return len(keyframes)
        with self._lock:
            keyframes, associator, model = self.keyframes.snapshot(), copy.deepcopy(self.associator), self.model
        save_map(directory, keyframes, associator, model, rewrite_keyframes=True)
        return len(keyframes)

    def load_map(self, directory: str | Path) -> MapLoad:
        """Replace everything with the map in `directory`; a running job is cancelled. MapFormatError, and
        nothing changes, if it cannot be read or holds no readable keyframe. Damaged keyframe files are
        skipped and counted, never moved (the directory is the caller's)."""
        return self.install_map(self.read_map(directory), directory)

    def read_map(self, directory: str | Path, move_aside: bool = False) -> SavedMap:
        """The map in `directory`, read without touching this one: a caller that serialises map changes reads
        first, outside its lock (a slow or hung file system then blocks nobody), and installs after."""
        return load_map(directory, self.config.association, self.counters, move_aside)

    def _load(self, directory: str | Path, move_aside: bool) -> MapLoad:
        return self.install_map(self.read_map(directory, move_aside), directory)

    def install_map(self, saved: SavedMap, directory: str | Path) -> MapLoad:
        """Replace everything with a map from read_map()."""
        if saved.missing_keyframes:
            self.counters.count(
                "map_keyframes_missing",
                f"{len(saved.missing_keyframes)} keyframes of the map in {directory} are gone; their objects will be refitted",
            )
        epoch, dropped = self._replace_map(saved.keyframes, saved.associator, saved.model, source=directory)
        if not self._is_persist_dir(directory):
            self._autosave(rewrite_keyframes=True, epoch=epoch)  # the persist directory mirrors the loaded map, not the old one
        return MapLoad(len(self.keyframes), len(self.model.objects), saved.damaged_keyframes, len(dropped))

    def _reassociate(self, keyframes: list[Keyframe], source: str | Path | None = None) -> None:
        """A new map of `keyframes`, their masks associated afresh in order."""
        associator = ObjectAssociator(self.config.association)
        for kf in keyframes:
            kf.instance_to_object = associator.associate(kf.frame) if kf.frame.depth_m is not None else {}
            kf.instance_keys = associator.frame_keys if kf.frame.depth_m is not None else {}  # counted by the memory bound
        self._replace_map(keyframes, associator, SceneModel(), source=source)

    def _replace_map(
        self,
        keyframes: list[Keyframe],
        associator: ObjectAssociator,
        model: SceneModel,
        source: str | Path | None = None,
        clear_persisted: bool = False,
    ) -> tuple[int, list[Keyframe]]:
        """The one way the whole map changes hands (load, resume, reset): a running job is cancelled and,
        through the epoch, cannot commit or save over it. The buffer's bounds apply to `keyframes`; returns
        the new epoch and the keyframes dropped to keep them."""
        self._cancel_running()
        with self._lock:
            self._epoch += 1
            epoch = self._epoch
            self.associator = associator
            dropped = self.keyframes.replace(keyframes)
            self._apply_merges()  # keyframe files keep the ids they were written with
            # objects only the keyframes left out (or long evicted ones) showed are not part of this map
            shown = {o for kf in self.keyframes.snapshot() for o in kf.instance_to_object.values()}
            if forgotten := self.associator.drop_unshown(shown):
                self.counters.count(
                    "object_forgotten", f"objects {forgotten} are in no keyframe kept; dropped", logging.INFO, len(forgotten)
                )
            self.model = model
            self.latest = reassemble(model, self.config) if model.states() else None
            self.live_fusion.latest = None
            if clear_persisted and self.persist_dir is not None:
                try:  # under the lock: a keyframe admitted just after the reset must keep its file
                    clear_map(self.persist_dir)
                except OSError as exc:
                    self.counters.count("persist_error", f"cannot clear the persisted map in {self.persist_dir}: {exc}")
        # outside the lock: a fusion pass of the old map ends at its next keyframe (the epoch changed) and
        # ingestion must not wait for that
        self.live_map.clear()
        self._notify_live()
        if dropped:
            kcfg = self.config.keyframes
            self.counters.count(
                "keyframes_over_limit",
                f"kept {len(keyframes) - len(dropped)} of the {len(keyframes)} keyframes read from {source}: the {len(dropped)} "
                f"most redundant were dropped (keyframes.max_keyframes={kcfg.max_keyframes}, max_memory_mb={kcfg.max_memory_mb})",
            )
        return epoch, dropped

    def reset(self) -> None:
        """Forget everything, on disk too (the persisted map is removed, so a restart starts empty); a running
        job is cancelled and its result discarded."""
        with self._persist_lock:  # a save in progress finishes first; one that starts later sees the new epoch
            self._replace_map([], ObjectAssociator(self.config.association), SceneModel(), clear_persisted=True)

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
        self,
        force: bool = False,
        stages: list[str] | None = None,
        cancel: threading.Event | None = None,
        progress=None,
        edits: dict[int, str] | None = None,
    ) -> RunReport:
        """Run the pipeline now, in this thread, on snapshots of the keyframes, objects and configuration.
        `edits` (object id -> prompt) runs a text-driven edit of those objects instead."""
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
                    model,
                    keyframes,
                    seeds,
                    config,
                    compute_from_config(config.compute),
                    stages,
                    force,
                    cancel,
                    progress,
                    edits,
                    self.live_map,
                )
            except EditRefused as exc:
                self.counters.count("edit_refused", f"edit refused: {exc}", logging.WARNING)
                return RunReport(REFUSED, self.latest, duration_s=time.perf_counter() - t0, message=str(exc))
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
            self._autosave(epoch=epoch)
            recon = outcome.reconstruction
            report = RunReport(RECONSTRUCTED, recon, outcome.refitted, duration)
            report.message = (
                f"{len(recon.objects)} objects ({len(report.refitted_objects)} refitted), "
                f"{len(recon.scene_graph.relations)} relations in {duration:.2f} s"
            )
            return report

    def _autosave(self, epoch: int, rewrite_keyframes: bool = False) -> None:
        """Save the map of `epoch` to the persist directory, unless a reset or load replaced it meanwhile."""
        if self.persist_dir is None:
            return
        with self._persist_lock:
            if epoch != self._epoch:
                return
            try:
                self.save_map(self.persist_dir, rewrite_keyframes)
            except OSError as exc:
                self.counters.count("persist_error", f"cannot persist the map to {self.persist_dir}: {exc}")

    # ------------------------------------------------------------------ jobs
    def start(
        self,
        force: bool = False,
        stages: list[str] | None = None,
        on_done: Callable[[RunJob], None] | None = None,
        edits: dict[int, str] | None = None,
    ) -> RunJob | None:
        """Start a run in the background; None if one is running already. `on_done(job)` runs in the job's
        thread when it ends, whatever the outcome (the node publishes from there)."""
        with self._lock:
            if self._stopped or (self._job is not None and self._job.running):
                return None
            self._job = RunJob(self, force, stages, on_done, edits).start()
            return self._job

    def stop(self, timeout_s: float) -> bool:
        """Process shutdown: no job starts any more, the running one is cancelled and its thread joined.
        False if it did not end within `timeout_s` (a stage not checking for cancellation)."""
        with self._lock:
            self._stopped = True
            job = self._job
        started = time.monotonic()
        fusion_stopped = self.live_fusion.stop(timeout_s)
        if job is None:
            return fusion_stopped
        job.cancel()
        return job.join(max(0.0, timeout_s - (time.monotonic() - started))) and fusion_stopped

    @property
    def job(self) -> RunJob | None:
        return self._job

    def _cancel_running(self) -> None:
        job = self._job
        if job is not None and job.running:
            job.cancel()

"""A reconstruction run: a stage list over the scene model, on a configuration snapshot, then one result.

The pipeline decides what must be refitted (objects whose keyframes, box or stage configuration changed since
their last fit), forks the model, runs the stages on the fork (retrying a stage on the CPU at a reduced size
when the device runs out of memory), and returns the new model with its assembled reconstruction. A run
with nothing to refit returns None and leaves the model alone.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dprecon_ros.config_fields import fingerprinted
from dprecon_ros.core.compute import Compute, is_out_of_memory, release_device_memory
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.guidance.base import guidance_available
from dprecon_ros.core.result import assemble
from dprecon_ros.core.scene_model import BACKGROUND_ID, ObjectState, SceneModel
from dprecon_ros.core.stages.base import ProgressFn, RunContext, Stage
from dprecon_ros.core.stages.catalog import make_stages
from dprecon_ros.core.stages.prior.config import prompt_overrides
from dprecon_ros.core.types import Keyframe, ObjectSeed, Reconstruction

if TYPE_CHECKING:
    from dprecon_ros.config import DpreconConfig
    from dprecon_ros.core.fusion.live_map import LiveMap

log = logging.getLogger("dprecon_ros")
BOUNDS_DECIMALS = 5  # box corners are compared to 10 µm: float noise must not trigger a refit
EDIT_STAGES = ("prior", "mesh", "texture")  # what an edit re-runs, in the configured order


class EditRefused(RuntimeError):
    """An edit that cannot run (no such object, no fitted field, no prior here); the message says why."""


@dataclass
class RunOutcome:
    model: SceneModel
    reconstruction: Reconstruction
    refitted: list[int]  # object ids (0 = background) refitted in this run


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def keyframes_seeing(keyframes: list[Keyframe], seeds: list[ObjectSeed]) -> dict[int, tuple[int, ...]]:
    """Object id -> indices of the keyframes in which one of its masks was associated to it."""
    return {s.object_id: tuple(kf.index for kf in keyframes if s.object_id in kf.instance_to_object.values()) for s in seeds}


def fingerprints(
    config: DpreconConfig, stages: list[Stage], keyframes: list[Keyframe], seeds: list[ObjectSeed], seen: dict[int, tuple[int, ...]]
) -> dict[int, str]:
    """What each object's fit depends on: the stage list and its configuration, the object's box, label and
    observations, and the keyframes that saw it (all keyframes for the background)."""
    sections = sorted({s for stage in stages for s in stage.config_sections})
    values = {s: fingerprinted(getattr(config, s)) for s in sections}
    # a per-object prompt belongs to that object's fingerprint alone: overriding one prompt refits one object
    prompts = prompt_overrides(values["prior"].pop("prompts")) if "prior" in values else {}
    if "prior" in values:  # weights that appear later must refit what was fitted without them
        values["prior"]["available"] = guidance_available(config.prior)
    shared = {"stages": [s.name for s in stages], "config": values}
    out = {}
    for seed in seeds:
        box = np.round(np.concatenate([seed.lo, seed.hi]), BOUNDS_DECIMALS).tolist()
        own = [seed.label, box, seed.observations, list(seen[seed.object_id])]
        out[seed.object_id] = _digest([shared, *own, prompts[seed.object_id]] if seed.object_id in prompts else [shared, *own])
    masks = [[kf.index, sorted(kf.instance_to_object)] for kf in keyframes]
    out[BACKGROUND_ID] = _digest([shared, masks])
    return out


def usable_keyframes(keyframes: list[Keyframe]) -> list[Keyframe]:
    usable = [kf for kf in keyframes if kf.frame.depth_m is not None]
    if len(usable) < len(keyframes):
        log.warning("reconstruction: %d keyframes without depth are skipped", len(keyframes) - len(usable))
    return usable


def prepare_states(
    model: SceneModel, seeds: list[ObjectSeed], keyframes: list[Keyframe], seen: dict[int, tuple[int, ...]], dirty: set[int]
) -> None:
    """Bring the fork's states in line with the seeds: new objects appear, refitted ones take their new box."""
    for seed in seeds:
        if seed.object_id in dirty:
            state = model.objects.get(seed.object_id) or ObjectState(seed.object_id, seed.label)
            state.label, state.seed, state.observation_count = seed.label, seed, seed.observations
            state.keyframe_ids = seen[seed.object_id]
            model.objects[seed.object_id] = state
    if model.background is None:
        model.background = ObjectState(BACKGROUND_ID, "background")
    if BACKGROUND_ID in dirty:
        model.background.keyframe_ids = tuple(kf.index for kf in keyframes)
        model.background.observation_count = len(keyframes)


class Pipeline:
    def __init__(self, counters: EventCounters | None = None) -> None:
        self.counters = counters or EventCounters()

    def run(
        self,
        model: SceneModel,
        keyframes: list[Keyframe],
        seeds: list[ObjectSeed],
        config: DpreconConfig,
        compute: Compute,
        stage_names: list[str] | None = None,
        force: bool = False,
        cancel: threading.Event | None = None,
        progress: ProgressFn | None = None,
        edits: dict[int, str] | None = None,
        live: LiveMap | None = None,
    ) -> RunOutcome | None:
        """Run the stages over `model`; None when nothing needs refitting. `config` must be the caller's
        snapshot: stages read it for the whole run. `edits` (object id -> prompt) runs a text-driven edit of
        those objects instead (see `run_edit`). `live`: volumes fused as keyframes arrived, used where they
        hold exactly this run's keyframes."""
        if edits:
            return self.run_edit(model, keyframes, config, compute, edits, cancel, progress, live)
        names = list(stage_names) if stage_names else config.reconstruction.stage_names()
        stages = make_stages(names)
        usable = usable_keyframes(keyframes)
        seen = keyframes_seeing(usable, seeds)
        prints = fingerprints(config, stages, usable, seeds, seen)
        current = {s.object_id: s.fingerprint for s in model.states()}
        dirty = {oid for oid, fp in prints.items() if force or current.get(oid) != fp}
        removed = set(model.objects) - {s.object_id for s in seeds}
        assembly = _digest(dataclasses.asdict(config.scene_graph))
        if not dirty and not removed:
            if assembly == model.assembly_fingerprint:
                return None
            work = model.fork()  # only the scene graph's parameters changed: a new result, nothing refitted
            work.assembly_fingerprint, work.revision = assembly, work.revision + 1
            return RunOutcome(work, assemble(work, config, names, set(), set(), {}), [])
        work = model.fork()
        for oid in removed:
            del work.objects[oid]
        prepare_states(work, seeds, usable, seen, dirty)
        ctx = RunContext(config, compute, usable, seeds, dirty, names, self.counters, cancel or threading.Event(), progress)
        ctx.live = live
        work = self.run_stages(stages, work, ctx)
        for oid in ctx.dirty:
            state = work.state(oid)
            if state is not None:
                state.fingerprint = prints[oid]
        work.revision += 1
        work.assembly_fingerprint = assembly
        work.stamp = max((kf.frame.stamp for kf in keyframes), default=0.0)
        work.keyframe_ids = tuple(kf.index for kf in keyframes)
        recon = assemble(work, config, names, ctx.dirty, removed, ctx.timings)
        return RunOutcome(work, recon, sorted(ctx.dirty))

    def run_stages(self, stages: list[Stage], work: SceneModel, ctx: RunContext) -> SceneModel:
        """The stages in order over the fork; then the refitted states count one more version."""
        for index, stage in enumerate(stages):
            ctx.stage, ctx.stage_index = stage.name, index
            ctx.check_cancelled()
            t0 = time.perf_counter()
            work = self.run_stage(stage, work, ctx)
            ctx.compute.synchronize()
            ctx.timings[stage.name] = time.perf_counter() - t0
            ctx.progress(1.0)
        for oid in ctx.dirty:
            state = work.state(oid)
            if state is not None:
                state.version += 1
                state.volume = None  # volumes are rebuilt when needed; the model keeps fields and meshes
        return work

    def run_edit(
        self,
        model: SceneModel,
        keyframes: list[Keyframe],
        config: DpreconConfig,
        compute: Compute,
        edits: dict[int, str],
        cancel: threading.Event | None,
        progress: ProgressFn | None,
        live: LiveMap | None = None,
    ) -> RunOutcome:
        """A text-driven edit: the prior (and the stages after it) for the named objects only, with their new
        prompts; their fingerprints stay, so later runs keep the edit until their observations change."""
        missing = sorted(oid for oid in edits if model.state(oid) is None or model.state(oid).field is None)
        if missing:
            raise EditRefused(f"objects {missing} have no fitted field to edit (run a reconstruction with the full backend first)")
        names = [n for n in config.reconstruction.stage_names() if n in EDIT_STAGES]
        if "prior" not in names:  # a node running the tsdf or neural preset still edits through the prior
            names = ["prior", *(names or ["mesh"])]
        work = model.fork()
        usable = usable_keyframes(keyframes)
        seeds = [s.seed for s in work.objects.values() if s.seed is not None]
        ctx = RunContext(config, compute, usable, seeds, set(edits), names, self.counters, cancel or threading.Event(), progress)
        ctx.edits = dict(edits)
        ctx.live = live
        work = self.run_stages(make_stages(names), work, ctx)
        if not work.prior_status.startswith("on"):
            raise EditRefused(f"the prior cannot run: {work.prior_status.removeprefix('off: ')}")
        for oid in edits:  # its new shape comes from the prompt, not the cameras: nothing of it counts as observed
            mesh = work.state(oid).mesh
            if mesh is not None and mesh.observed is not None:
                mesh.observed = np.zeros_like(mesh.observed)
        work.revision += 1
        recon = assemble(work, config, names, set(edits), set(), ctx.timings)
        return RunOutcome(work, recon, sorted(edits))

    def run_stage(self, stage: Stage, model: SceneModel, ctx: RunContext) -> SceneModel:
        """One stage; out of device memory, once more on the CPU at a reduced size."""
        try:
            return stage.run(model, ctx)
        except RuntimeError as exc:
            if not is_out_of_memory(exc) or ctx.compute.is_fallback or not ctx.config.compute.cpu_fallback:
                raise
            del exc  # the traceback holds the failed attempt's tensors
        for state in model.states():  # fused volumes of the failed device are rebuilt on the CPU when needed
            state.volume = None
        release_device_memory()
        ctx.compute = ctx.compute.cpu_fallback(ctx.config.compute.cpu_fallback_scale)
        self.counters.count(
            "gpu_out_of_memory",
            f"stage {stage.name!r} ran out of device memory; retrying on the CPU at {ctx.compute.scale:.2f}x size",
            logging.ERROR,
        )
        move_model(model, ctx.compute.device)
        return stage.run(model, ctx)


def move_model(model: SceneModel, device) -> None:
    """Put every module of the model on `device` (fields and the appearance network)."""
    for state in model.states():
        if state.field is not None:
            state.field = copy.deepcopy(state.field).to(device)
    if model.appearance is not None:
        model.appearance = model.appearance.to(device)


def reassemble(model: SceneModel, config: DpreconConfig) -> Reconstruction:
    """The reconstruction of a model that was loaded rather than run: every object counts as changed."""
    names = config.reconstruction.stage_names()
    return assemble(model, config, names, {s.object_id for s in model.states()}, set(), {})

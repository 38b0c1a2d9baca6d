"""What every stage shares: the run context it works in, and the registry stages are found in by name.

A stage is `run(model, ctx) -> model`: it reads the keyframes, the configuration snapshot and the device from
`ctx`, refits the objects named in `ctx.dirty`, and writes its products into the (forked) scene model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from dprecon_ros.core.compute import Compute
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.fusion.fuse import fuse_background, fuse_object
from dprecon_ros.core.fusion.sparse_tsdf import SparseTsdfVolume
from dprecon_ros.core.scene_model import SceneModel
from dprecon_ros.core.types import Keyframe, ObjectSeed

if TYPE_CHECKING:
    from dprecon_ros.config import DpreconConfig
    from dprecon_ros.core.fusion.live_map import LiveMap

# stage name, its index in the run's list, the list's length, progress of that stage in [0, 1]
ProgressFn = Callable[[str, int, int, float], None]


class RunCancelled(Exception):
    """The run was cancelled (a cancel request or a reset); the scene model is left as it was."""


@dataclass
class RunContext:
    """Everything a stage may read: a configuration snapshot taken when the run started (live parameter
    changes apply to the next run), the compute device, the keyframes with depth, the objects to reconstruct
    and the ids among them (0 = background) that must be refitted."""

    config: DpreconConfig
    compute: Compute
    keyframes: list[Keyframe]
    seeds: list[ObjectSeed]
    dirty: set[int]
    stage_names: list[str]
    counters: EventCounters = field(default_factory=EventCounters)
    cancel: threading.Event = field(default_factory=threading.Event)
    on_progress: ProgressFn | None = None
    stage: str = ""
    stage_index: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    edits: dict[int, str] = field(default_factory=dict)  # object id -> new prompt: a text-driven edit of those objects only
    live: LiveMap | None = None  # volumes fused as the keyframes arrived; used where they hold this run's keyframes

    def progress(self, fraction: float) -> None:
        if self.on_progress is not None:
            self.on_progress(self.stage, self.stage_index, len(self.stage_names), float(min(max(fraction, 0.0), 1.0)))

    def check_cancelled(self) -> None:
        """Stages call this between units of work (an object, an optimisation step)."""
        if self.cancel.is_set():
            raise RunCancelled(f"cancelled during stage {self.stage!r}")

    def scaled(self, size: int, minimum: int = 1) -> int:
        """A size (rays, cells) reduced for a CPU retry after the device ran out of memory."""
        return max(minimum, int(round(size * self.compute.scale)))

    def dirty_seeds(self) -> list[ObjectSeed]:
        return [s for s in self.seeds if s.object_id in self.dirty]

    def fused_volume(self, volume_id: int, seed: ObjectSeed | None = None) -> SparseTsdfVolume | None:
        """The TSDF volume of an object (with its seed) or of the background (id 0) for this run's keyframes:
        the live map's, copied and brought to exactly them, where it has one on this run's device with this
        run's settings; else fused now."""
        if self.live is not None and self.live.device == self.compute.device:
            volume = self.live.volume_for(volume_id, self.keyframes, self.config.tsdf, self.check_cancelled)
            if volume is not None:
                self.counters.count("live_volume_used", "", logging.DEBUG)
                return volume
        if seed is None:
            return fuse_background(self.keyframes, self.config.tsdf, self.compute.device, self.check_cancelled)
        return fuse_object(seed, self.keyframes, self.config.tsdf, self.compute.device, self.check_cancelled)


class Stage:
    """Base of the stages. `config_sections` name the configuration sections whose values change what the
    stage produces: an object is refitted when one of them changed since its last fit."""

    name: ClassVar[str] = ""
    config_sections: ClassVar[tuple[str, ...]] = ()

    def run(self, model: SceneModel, ctx: RunContext) -> SceneModel:
        raise NotImplementedError


STAGES: dict[str, type[Stage]] = {}


def register_stage(cls: type[Stage]) -> type[Stage]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    STAGES[cls.name] = cls
    return cls

"""The persistent scene model: what runs produce and what later stages and later runs need.

A run forks the model, lets its stages write into the fork, and commits the fork only when every stage
finished; a cancelled or failed run leaves the model as it was. Each object keeps the fingerprint of what it
was fitted to (its keyframes, its box, the configuration of the stages), so the next run refits only objects
whose fingerprint changed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np
from torch import nn

from dprecon_ros.core.types import BACKGROUND_ID, ObjectSeed, SceneNormalisation, TriangleMesh

__all__ = ["BACKGROUND_ID", "ObjectState", "SceneModel", "VoxelGrid"]


@dataclass
class VoxelGrid:
    """Values on a regular grid: corner of cell (0,0,0) and cell size in the frame the owner states."""

    origin: np.ndarray
    voxel: float
    values: np.ndarray
    # device copies of `values` for reads (device -> (the array copied, tensor)); never persisted
    device_copies: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass
class ObjectState:
    """One object (or the background, id 0) as the stages left it.

    volume: the fused TSDF (in memory only; the fuse stage rebuilds it when needed); field: the geometry
    stage's SDF (scene units); mesh: map frame. `version` counts refits; `fingerprint` is what the last
    refit saw.
    """

    object_id: int
    label: str
    seed: ObjectSeed | None = None
    fingerprint: str = ""
    version: int = 0
    keyframe_ids: tuple[int, ...] = ()
    observation_count: int = 0
    volume: object | None = None
    field: nn.Module | None = None
    mesh: TriangleMesh | None = None
    prompt: str = ""  # the prompt of the object's last text-driven edit; later prior runs keep it

    @property
    def is_background(self) -> bool:
        return self.object_id == BACKGROUND_ID


@dataclass
class SceneModel:
    objects: dict[int, ObjectState] = field(default_factory=dict)
    background: ObjectState | None = None
    normalisation: SceneNormalisation | None = None
    appearance: nn.Module | None = None  # the geometry stage's colour network, shared by all fields
    log_beta: float | None = None  # the geometry stage's VolSDF sharpness, shared by all fields
    visibility: VoxelGrid | None = None  # transmittance reached per cell (map frame), from the prior stage
    prior_status: str = ""  # "on: <guidance>" or "off: <why>" after a run with the prior stage; "" without it
    revision: int = 0
    assembly_fingerprint: str = ""  # the scene-graph configuration the last result was assembled with
    stamp: float = 0.0
    keyframe_ids: tuple[int, ...] = ()
    history: list[dict[str, float]] = field(default_factory=list)

    def states(self) -> list[ObjectState]:
        """Objects in id order, then the background."""
        out = [self.objects[k] for k in sorted(self.objects)]
        return out + ([self.background] if self.background is not None else [])

    def state(self, object_id: int) -> ObjectState | None:
        return self.background if object_id == BACKGROUND_ID else self.objects.get(object_id)

    def fork(self) -> SceneModel:
        """A copy whose states can be replaced or reassigned without touching this model; large arrays and
        modules are shared until a stage replaces them (stages never modify them in place)."""
        forked = replace(self, objects={k: replace(v) for k, v in self.objects.items()}, history=list(self.history))
        forked.background = replace(self.background) if self.background is not None else None
        if self.appearance is not None:
            forked.appearance = copy.deepcopy(self.appearance)
        return forked

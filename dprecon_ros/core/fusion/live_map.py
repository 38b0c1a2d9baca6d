"""The instant map: the background and every object fused keyframe by keyframe, as the keyframes arrive.

Each volume remembers which keyframes it holds and through which instance ids (its contributions). `sync`
brings the volumes in line with the keyframe buffer: new contributions are integrated, contributions whose
keyframe left the buffer (or whose instances now belong to another object, after a merge) are taken out
again, exactly, by integrating them with weight -1. An object merge therefore touches the merged objects
only: the absorbed object's volume is dropped and the surviving one takes in the absorbed instances.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from dprecon_ros.core.fusion.block_mesh import BlockMesher
from dprecon_ros.core.fusion.config import TsdfConfig
from dprecon_ros.core.fusion.sparse_tsdf import DepthView, SparseTsdfVolume
from dprecon_ros.core.types import BACKGROUND_ID, Keyframe, TriangleMesh

log = logging.getLogger("dprecon_ros")

Contribution = tuple[int, frozenset[int]]  # (keyframe index, the instance ids whose pixels are this volume's surface)


def voxel_size(config: TsdfConfig, volume_id: int) -> float:
    """The background's voxels are coarse, an object's fine."""
    return config.background_voxel_m if volume_id == BACKGROUND_ID else config.object_voxel_m


def make_volume(config: TsdfConfig, volume_id: int, device: torch.device) -> SparseTsdfVolume:
    """An empty volume for an object or the background (id 0). An object's has fine voxels and is carved by
    every other reading the views saw through; the background's has coarse voxels and is updated only in the
    blocks around each view's surface."""
    return SparseTsdfVolume(
        voxel_size(config, volume_id),
        config.truncation_voxels,
        config.block_voxels,
        device,
        config.free_space_weight,
        carve_in_frustum=volume_id != BACKGROUND_ID,
        max_depth_m=config.max_depth_m,
        allocation_samples_per_block=config.allocation_samples_per_block,
    )


def expected_contributions(keyframes: list[Keyframe]) -> dict[int, set[Contribution]]:
    """Volume id (0 = background) -> what it must hold for these keyframes: an object its instances in each
    keyframe that saw it, the background every keyframe with depth (its surface: pixels of no object)."""
    out: dict[int, set[Contribution]] = {BACKGROUND_ID: set()}
    for kf in keyframes:
        if kf.frame.depth_m is None:
            continue
        by_object: dict[int, set[int]] = {}
        for instance, object_id in kf.instance_to_object.items():
            by_object.setdefault(object_id, set()).add(instance)
        for object_id, instances in by_object.items():
            out.setdefault(object_id, set()).add((kf.index, frozenset(instances)))
        out[BACKGROUND_ID].add((kf.index, frozenset(kf.instance_to_object)))
    return out


def crop_mesh(mesh: TriangleMesh, lo: np.ndarray, hi: np.ndarray) -> TriangleMesh:
    """The faces whose centroid lies in the box, with their vertices."""
    if mesh.is_empty:
        return mesh
    centroid = mesh.vertices[mesh.faces].mean(axis=1)
    faces = mesh.faces[np.all((centroid >= lo) & (centroid <= hi), axis=1)]
    used, inverse = np.unique(faces, return_inverse=True)
    return TriangleMesh(mesh.vertices[used], inverse.reshape(-1, 3), mesh.vertex_colors[used])


def surface_mask(kf: Keyframe, contribution: Contribution, is_background: bool) -> np.ndarray:
    instances = list(contribution[1])
    if is_background:
        return ~np.isin(kf.frame.instance, instances)
    return np.isin(kf.frame.instance, instances)


@dataclass
class FusedVolume:
    """One volume and what it holds; `contributions` keeps their keyframes (a keyframe that left the buffer
    is still needed to take it out again); `settings` are the tsdf.* values it was made with."""

    volume: SparseTsdfVolume
    contributions: dict[Contribution, Keyframe] = field(default_factory=dict)
    settings: tuple = ()
    mesher: BlockMesher | None = None
    integrations: int = 0  # keyframes integrated into it (with either sign) since it was created


def volume_settings(config: TsdfConfig, volume_id: int) -> tuple:
    """The configuration a volume's contents depend on: another value means fusing it again."""
    return (
        voxel_size(config, volume_id),
        config.truncation_voxels,
        config.block_voxels,
        config.free_space_weight,
        config.max_depth_m,
        config.allocation_samples_per_block,
    )


def new_fused_volume(config: TsdfConfig, volume_id: int, device: torch.device) -> FusedVolume:
    return FusedVolume(make_volume(config, volume_id, device), settings=volume_settings(config, volume_id))


def view_cache(device: torch.device) -> Callable[[Keyframe], DepthView]:
    """Views built once per keyframe and shared by the background and every object it shows."""
    views: dict[int, DepthView] = {}

    def view_of(kf: Keyframe) -> DepthView:
        if kf.index not in views:
            views[kf.index] = DepthView.of(kf.frame, device, kf.index)
        return views[kf.index]

    return view_of


def reconcile(
    fused: FusedVolume,
    volume_id: int,
    wanted: set[Contribution],
    keyframes: list[Keyframe],
    view_of: Callable[[Keyframe], DepthView],
    check_cancelled: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Take out the contributions `wanted` lacks, then integrate the ones it adds; (removed, added)."""
    is_background = volume_id == BACKGROUND_ID
    device = fused.volume.device
    by_index = {kf.index: kf for kf in keyframes}

    def integrate(kf: Keyframe, contribution: Contribution, sign: int) -> None:
        if check_cancelled is not None:
            check_cancelled()
        surface = torch.as_tensor(surface_mask(kf, contribution, is_background), device=device)

        def history():  # only read when a carving volume allocates blocks
            for c, other in sorted(fused.contributions.items(), key=lambda item: item[0]):
                yield view_of(other), torch.as_tensor(surface_mask(other, c, is_background), device=device)

        fused.volume.integrate(view_of(kf), surface, sign, history)
        fused.integrations += 1

    gone = sorted(set(fused.contributions) - wanted)
    for contribution in gone:
        integrate(fused.contributions.pop(contribution), contribution, -1)
    new = sorted(wanted - set(fused.contributions))
    for contribution in new:
        integrate(by_index[contribution[0]], contribution, 1)
        fused.contributions[contribution] = by_index[contribution[0]]
    return len(gone), len(new)


@dataclass
class SyncReport:
    integrated: int = 0
    removed: int = 0
    dropped_volumes: list[int] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)


class LiveMap:
    """Thread-safe: `sync` (the fusion worker) and the readers (runs, the live topic) take one lock."""

    def __init__(self, config: TsdfConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.volumes: dict[int, FusedVolume] = {}
        self.lock = threading.RLock()
        self.revision = 0  # bumped by every sync that changed a volume

    def clear(self) -> None:
        with self.lock:
            self.volumes.clear()
            self.revision += 1

    def sync(self, keyframes: list[Keyframe], check_cancelled: Callable[[], None] | None = None) -> SyncReport:
        """Fuse what `keyframes` add, take out what they no longer hold. A volume fused with other settings
        (a live change of tsdf.*) is fused again from the start."""
        report = SyncReport()
        expected = expected_contributions(keyframes)
        view_of = view_cache(self.device)
        with self.lock:
            for volume_id in [v for v in self.volumes if v not in expected]:
                del self.volumes[volume_id]
                report.dropped_volumes.append(volume_id)
            for volume_id, wanted in sorted(expected.items()):
                settings = volume_settings(self.config, volume_id)
                fused = self.volumes.get(volume_id)
                if fused is None or fused.settings != settings:
                    if not wanted:
                        self.volumes.pop(volume_id, None)
                        continue
                    fused = self.volumes[volume_id] = new_fused_volume(self.config, volume_id, self.device)
                removed, added = reconcile(fused, volume_id, wanted, keyframes, view_of, check_cancelled)
                report.removed += removed
                report.integrated += added
                if removed or added:
                    report.touched.add(volume_id)
            if report.touched or report.dropped_volumes:
                self.revision += 1
        return report

    # ------------------------------------------------------------ readers
    def holds(self, volume_id: int, keyframes: list[Keyframe]) -> bool:
        """Whether the volume holds exactly what `keyframes` give it."""
        with self.lock:
            fused = self.volumes.get(volume_id)
            wanted = expected_contributions(keyframes).get(volume_id, set())
            return fused is not None and set(fused.contributions) == wanted and bool(wanted)

    def volume_for(
        self, volume_id: int, keyframes: list[Keyframe], config: TsdfConfig, check_cancelled: Callable[[], None] | None = None
    ) -> SparseTsdfVolume | None:
        """A copy of the volume brought to exactly what `keyframes` give it (the live map may be a keyframe
        ahead or behind a run: the copy takes the difference in or out), or None when there is none fused
        with `config`'s settings."""
        with self.lock:
            fused = self.volumes.get(volume_id)
            if fused is None or fused.settings != volume_settings(config, volume_id):
                return None
            copy = FusedVolume(fused.volume.copy(), dict(fused.contributions), fused.settings)
        wanted = expected_contributions(keyframes).get(volume_id, set())
        reconcile(copy, volume_id, wanted, keyframes, view_cache(self.device), check_cancelled)
        return copy.volume

    def meshes(self, min_weight: float, bounds: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[int, TriangleMesh]:
        """The current mesh of every volume (map frame), re-marching only blocks changed since the last call;
        an object with `bounds` keeps the part inside its box."""
        out = {}
        with self.lock:
            for volume_id, fused in self.volumes.items():
                if fused.mesher is None or fused.mesher.min_weight != min_weight:
                    fused.mesher = BlockMesher(fused.volume, min_weight)
                mesh = TriangleMesh(*fused.mesher.mesh())
                box = (bounds or {}).get(volume_id)  # boxes grow with most keyframes: crop the cached mesh
                out[volume_id] = crop_mesh(mesh, *box) if box is not None else mesh
        return out

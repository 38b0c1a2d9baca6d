"""Stage `mesh`: a triangle mesh (map frame) for every refitted object and the background.

From the object's fitted SDF field where the `geometry` stage left one (largest component, coloured by the
appearance network), otherwise from its fused TSDF volume (observed voxels only, coloured by fusion).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dprecon_ros.config_fields import config_field
from dprecon_ros.core.fusion.block_mesh import extract_block_mesh
from dprecon_ros.core.fusion.fuse import object_box
from dprecon_ros.core.meshing import clean_mesh, drop_small_components, sdf_grid_surface, simplify
from dprecon_ros.core.provenance import vertex_observedness
from dprecon_ros.core.scene_model import ObjectState, SceneModel
from dprecon_ros.core.stages.base import RunContext, Stage, register_stage
from dprecon_ros.core.types import TriangleMesh


@dataclass
class MeshConfig:
    target_faces: int = config_field(20000, "object meshes are simplified to about this many faces", (100, 10_000_000))
    background_target_faces: int = config_field(60000, "background mesh face budget", (100, 10_000_000))
    min_component_fraction: float = config_field(
        0.05, "drop object mesh components smaller than this fraction of the largest (1 = largest only)", (0.0, 1.0)
    )
    min_weight: float = config_field(0.5, "voxels observed with less total weight are treated as unknown", (0.0, 1000.0))
    observed_threshold: float = config_field(
        0.5, "provenance: a vertex counts as observed where the visibility grid outside it is at least this", (0.0, 1.0)
    )
    observed_offset_cells: float = config_field(
        1.0, "provenance: the visibility grid is read this many of its cells outside each vertex, along its normal", (0.0, 10.0)
    )


log = logging.getLogger("dprecon_ros")


@register_stage
class MeshStage(Stage):
    name = "mesh"
    config_sections = ("mesh", "tsdf")

    def run(self, model: SceneModel, ctx: RunContext) -> SceneModel:
        states = [s for s in model.states() if s.object_id in ctx.dirty]
        for i, state in enumerate(states):
            ctx.check_cancelled()
            ctx.progress(i / max(1, len(states)))
            state.mesh = self.mesh_state(model, state, ctx)
            if model.visibility is not None and not state.mesh.is_empty:
                m = state.mesh
                m.observed = vertex_observedness(model.visibility, m.vertices, m.faces, ctx.config.mesh.observed_offset_cells)
            if state.mesh.is_empty and not state.is_background:
                log.info("object %d (%s) produced no surface", state.object_id, state.label)
        return model

    def mesh_state(self, model: SceneModel, state: ObjectState, ctx: RunContext) -> TriangleMesh:
        cfg = ctx.config.mesh
        faces_budget = cfg.background_target_faces if state.is_background else cfg.target_faces
        component = 0.0 if state.is_background else cfg.min_component_fraction
        if state.field is not None and model.normalisation is not None:
            return mesh_field(model, state, faces_budget, component)
        # after an out-of-memory retry the volume is fused again
        volume = (
            state.volume if state.volume is not None else ctx.fused_volume(state.object_id, None if state.is_background else state.seed)
        )
        if volume is None:
            return TriangleMesh.empty()
        bounds = None if state.is_background else object_box(state.seed, ctx.config.tsdf)
        return TriangleMesh(*clean_mesh(*extract_block_mesh(volume, cfg.min_weight, bounds), faces_budget, component))


def mesh_field(model: SceneModel, state: ObjectState, target_faces: int, min_component_fraction: float) -> TriangleMesh:
    field, norm = state.field, model.normalisation
    values = field.node_values().float().cpu().numpy()
    verts, faces = sdf_grid_surface(values, field.box.origin.cpu().numpy(), field.box.voxel)
    if len(faces) == 0:
        return TriangleMesh.empty()
    v, f = drop_small_components(norm.to_map(verts), faces, min_component_fraction)
    v, f = simplify(v, f, target_faces)
    return TriangleMesh(v, f, field_vertex_colors(model, state, norm.to_scene(v)))


@torch.no_grad()
def field_vertex_colors(model: SceneModel, state: ObjectState, scene_pts: np.ndarray) -> np.ndarray:
    """Colours the appearance network gives each vertex, seen head-on along its normal."""
    if len(scene_pts) == 0 or model.appearance is None:
        return np.full((len(scene_pts), 4), 255, np.uint8)
    device = state.field.box.origin.device
    x = torch.as_tensor(scene_pts, dtype=torch.float32, device=device)
    _, grad = state.field(x)
    n = F.normalize(grad, dim=-1)
    rgb = model.appearance(x, n, -n).clamp(0, 1).cpu().numpy()
    return np.concatenate([(rgb * 255).astype(np.uint8), np.full((len(rgb), 1), 255, np.uint8)], axis=1)

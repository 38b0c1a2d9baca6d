"""Result assembly, once after the stages: meshes become objects with boxes, a scene graph, a stamp."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dprecon_ros.core.boxes import oriented_box
from dprecon_ros.core.provenance import observed_share
from dprecon_ros.core.scene_graph import build_scene_graph
from dprecon_ros.core.scene_model import ObjectState, SceneModel
from dprecon_ros.core.types import ObjectReconstruction, Reconstruction, texel_observed_share

if TYPE_CHECKING:
    from dprecon_ros.config import DpreconConfig


def object_result(state: ObjectState, observed_threshold: float) -> ObjectReconstruction | None:
    mesh = state.mesh
    if mesh is None or mesh.is_empty:
        return None
    v = mesh.vertices
    completeness = observed_share(v, mesh.faces, mesh.observed, observed_threshold) if mesh.observed is not None else 0.0
    return ObjectReconstruction(
        state.object_id,
        state.label,
        v,
        mesh.faces,
        mesh.vertex_colors,
        v.mean(axis=0),
        oriented_box(v),
        state.observation_count,
        completeness,
        mesh.observed,
        mesh.uv,
        mesh.texture,
        texel_observed_share(mesh.texel_provenance) if mesh.texel_provenance is not None else 0.0,
        texel_provenance=mesh.texel_provenance,
    )


def assemble(
    model: SceneModel, config: DpreconConfig, stage_names: list[str], changed: set[int], removed: set[int], timings: dict[str, float]
) -> Reconstruction:
    threshold = config.mesh.observed_threshold
    objects = [r for s in model.objects.values() if (r := object_result(s, threshold)) is not None]
    objects.sort(key=lambda o: o.object_id)
    background = object_result(model.background, threshold) if model.background is not None else None
    graph = build_scene_graph(objects, background, config.scene_graph)
    return Reconstruction(
        objects,
        background,
        graph,
        model.stamp,
        timings,
        backend=config.reconstruction.backend if not config.reconstruction.stages else "+".join(stage_names),
        history=list(model.history),
        stages=list(stage_names),
        changed=set(changed),
        removed=set(removed),
        revision=model.revision,
        versions={s.object_id: s.version for s in model.states() if s.mesh is not None and not s.mesh.is_empty},
        prior_status=model.prior_status if "prior" in stage_names else "",
    )

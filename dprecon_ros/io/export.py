"""Write reconstructions to disk: a GLB per object, the whole scene as one GLB, and the scene graph JSON.

glTF is y-up (+Y up, +Z forward, right-handed) while the map frame is z-up (REP-103), so meshes are rotated
on the way out: a map point (x, y, z) is written as (x, z, -y). Viewers (Blender, three.js, Foxglove) then
show the floor as a floor. `to_trimesh` stays in the map frame for evaluation against map-frame ground truth.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image
from trimesh.visual import TextureVisuals
from trimesh.visual.material import PBRMaterial

from dprecon_ros.core.observedness import has_provenance
from dprecon_ros.core.scene_graph import scene_graph_to_dict
from dprecon_ros.core.types import TEXEL_OBSERVED, ObjectReconstruction, Reconstruction, texel_at

# rows: glTF axes in map coordinates; a rotation (det +1), so face winding and normals stay outward
GLTF_FROM_MAP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
GLTF_AXES = "glTF y-up: a map point (x, y, z) is stored as (x, z, -y)"
BACKGROUND_NAME = "background"
# glTF custom vertex attribute (application-specific names start with "_"): how observed each vertex was, in
# [0, 1], float32 SCALAR; written only for meshes with provenance
OBSERVED_ATTRIBUTE = "_OBSERVED"
# ... and, for textured meshes, whether the texel under each vertex was coloured from keyframes (1) or filled or
# generated (0), float32 SCALAR: the texture's provenance where a viewer can read it
COLOR_OBSERVED_ATTRIBUTE = "_COLOR_OBSERVED"


def vertex_attributes(obj: ObjectReconstruction) -> dict[str, np.ndarray]:
    """Custom per-vertex attributes trimesh writes to glTF: the observedness where the object has it, and
    whether its texture was observed under each vertex where it is textured."""
    if len(obj.vertices) == 0:  # an empty accessor has no min/max to write
        return {}
    out = {}
    if has_provenance(obj):
        out[OBSERVED_ATTRIBUTE] = np.asarray(obj.vertex_observed, dtype=np.float32)
    if obj.is_textured and obj.texel_provenance is not None:
        out[COLOR_OBSERVED_ATTRIBUTE] = (texel_at(obj.texel_provenance, obj.uv) == TEXEL_OBSERVED).astype(np.float32)
    return out


def to_trimesh(obj: ObjectReconstruction) -> trimesh.Trimesh:
    """The object's mesh in the map frame (z-up, metres)."""
    return trimesh.Trimesh(
        obj.vertices, obj.faces, vertex_colors=obj.vertex_colors, vertex_attributes=vertex_attributes(obj), process=False
    )


def pbr_material(obj: ObjectReconstruction, name: str) -> PBRMaterial:
    """A rough, non-metallic PBR material whose base colour is the object's texture: what viewers render by
    default (Blender, three.js, game engines), lit by the viewer instead of carrying baked light."""
    return PBRMaterial(
        name=name,
        baseColorTexture=Image.fromarray(np.ascontiguousarray(obj.texture[..., :3])),
        baseColorFactor=[255, 255, 255, 255],
        metallicFactor=0.0,
        roughnessFactor=1.0,
        doubleSided=False,
    )


def to_gltf_mesh(obj: ObjectReconstruction, name: str | None = None) -> trimesh.Trimesh:
    """The object's mesh in glTF axes (y-up, metres): textured with a PBR material after the texture stage,
    vertex-coloured before it."""
    vertices = np.asarray(obj.vertices, dtype=np.float64) @ GLTF_FROM_MAP.T
    if obj.is_textured:
        # trimesh stores uv with v up (OpenGL) and flips v on glTF export; ours has v = 0 at the first row, as
        # glTF does, so it is flipped once here to come out unchanged
        uv = np.column_stack([obj.uv[:, 0], 1.0 - obj.uv[:, 1]])
        visual = TextureVisuals(uv=uv, material=pbr_material(obj, name or object_name(obj)))
        return trimesh.Trimesh(vertices, obj.faces, visual=visual, vertex_attributes=vertex_attributes(obj), process=False)
    return trimesh.Trimesh(vertices, obj.faces, vertex_colors=obj.vertex_colors, vertex_attributes=vertex_attributes(obj), process=False)


def load_glb_in_map_frame(path: str | Path) -> trimesh.Trimesh:
    """A GLB written here, back in the map frame (for evaluation against map-frame ground truth)."""
    mesh = trimesh.load(path, force="mesh", process=False)
    mesh.vertices = np.asarray(mesh.vertices) @ GLTF_FROM_MAP  # the inverse of a rotation is its transpose
    return mesh


def object_name(obj: ObjectReconstruction) -> str:
    """`<id>_<label>`, with the label reduced to characters safe in file names."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", obj.label).strip("_") or "object"
    return f"{obj.object_id}_{safe}"


def object_filename(obj: ObjectReconstruction) -> str:
    return f"{object_name(obj)}.glb"


def _add(scene: trimesh.Scene, obj: ObjectReconstruction, name: str) -> None:
    """Mesh and node share the name, so a viewer's outliner lists `3_mug`, not `geometry_0`."""
    scene.add_geometry(to_gltf_mesh(obj, name), geom_name=name, node_name=name)


def glb_bytes(obj: ObjectReconstruction, name: str | None = None) -> bytes:
    scene = trimesh.Scene()
    _add(scene, obj, name or object_name(obj))
    return scene.export(file_type="glb")


def export_reconstruction(recon: Reconstruction, directory: str | Path, frame_id: str = "map") -> list[Path]:
    """Write objects/<id>_<label>.glb, background.glb, scene.glb (all y-up; meshes with provenance carry the
    `_OBSERVED` vertex attribute) and scene_graph.json (boxes and centroids in `frame_id`, each object's
    provenance and the run's prior status); returns the paths."""
    out = Path(directory)
    (out / "objects").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    mesh_paths: dict[int, str] = {}
    scene = trimesh.Scene()
    for obj in recon.objects:
        path = out / "objects" / object_filename(obj)
        path.write_bytes(glb_bytes(obj))
        mesh_paths[obj.object_id] = str(path.relative_to(out))
        _add(scene, obj, object_name(obj))
        written.append(path)
    if recon.background is not None:
        path = out / f"{BACKGROUND_NAME}.glb"
        path.write_bytes(glb_bytes(recon.background, BACKGROUND_NAME))
        mesh_paths[recon.background.object_id] = path.name
        _add(scene, recon.background, BACKGROUND_NAME)
        written.append(path)
    scene_path = out / "scene.glb"
    scene_path.write_bytes(scene.export(file_type="glb") if scene.geometry else b"")
    written.append(scene_path)
    graph = scene_graph_to_dict(recon.scene_graph, recon.background, frame_id, recon.stamp, mesh_paths)
    graph["mesh_axes"] = GLTF_AXES
    graph["backend"] = recon.backend
    graph["prior_status"] = recon.prior_status
    graph["timings_s"] = recon.timings_s
    graph_path = out / "scene_graph.json"
    graph_path.write_text(json.dumps(graph, indent=2))
    written.append(graph_path)
    return written

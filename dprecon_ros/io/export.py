"""Write reconstructions to disk: a GLB per object, the whole scene as one GLB, and the scene graph JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import trimesh

from dprecon_ros.core.scene_graph import scene_graph_to_dict
from dprecon_ros.core.types import ObjectReconstruction, Reconstruction


def to_trimesh(obj: ObjectReconstruction) -> trimesh.Trimesh:
    return trimesh.Trimesh(obj.vertices, obj.faces, vertex_colors=obj.vertex_colors, process=False)


def glb_bytes(obj: ObjectReconstruction) -> bytes:
    return trimesh.Scene(to_trimesh(obj)).export(file_type="glb")


def object_filename(obj: ObjectReconstruction) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", obj.label).strip("_") or "object"
    return f"{obj.object_id}_{safe}.glb"


def export_reconstruction(recon: Reconstruction, directory: str | Path, frame_id: str = "map") -> list[Path]:
    """Write objects/<id>_<label>.glb, background.glb, scene.glb and scene_graph.json; returns the paths."""
    out = Path(directory)
    (out / "objects").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    mesh_paths: dict[int, str] = {}
    scene = trimesh.Scene()
    for obj in recon.objects:
        path = out / "objects" / object_filename(obj)
        path.write_bytes(glb_bytes(obj))
        mesh_paths[obj.object_id] = str(path.relative_to(out))
        scene.add_geometry(to_trimesh(obj), node_name=f"{obj.object_id}_{obj.label}")
        written.append(path)
    if recon.background is not None:
        path = out / "background.glb"
        path.write_bytes(glb_bytes(recon.background))
        mesh_paths[recon.background.object_id] = path.name
        scene.add_geometry(to_trimesh(recon.background), node_name="background")
        written.append(path)
    scene_path = out / "scene.glb"
    scene_path.write_bytes(scene.export(file_type="glb") if scene.geometry else b"")
    written.append(scene_path)
    graph = scene_graph_to_dict(recon.scene_graph, recon.background, frame_id, recon.stamp, mesh_paths)
    graph["backend"] = recon.backend
    graph["timings_s"] = recon.timings_s
    graph_path = out / "scene_graph.json"
    graph_path.write_text(json.dumps(graph, indent=2))
    written.append(graph_path)
    return written

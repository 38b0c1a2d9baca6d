"""glTF export: files are y-up as glTF requires (REP-103 map z becomes glTF +Y), and meshes and nodes carry
the object's `<id>_<label>` name, in the per-object files and in the scene."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from dprecon_ros.core.types import ObjectReconstruction, OrientedBox, Reconstruction, Relation, SceneGraph
from dprecon_ros.io.export import OBSERVED_ATTRIBUTE, export_reconstruction
from dprecon_ros.testing import gltf_validator

TABLE_TOP_M = 0.75
MUG_HEIGHT_M = 0.10
MUG_XY = np.array([0.4, 1.2])  # off the origin in y, so a missing axis swap shows in glTF z as well


def as_object(object_id: int, label: str, mesh: trimesh.Trimesh) -> ObjectReconstruction:
    lo, hi = mesh.bounds
    colors = np.full((len(mesh.vertices), 4), 200, np.uint8)
    box = OrientedBox((lo + hi) / 2, 0.0, hi - lo)
    return ObjectReconstruction(object_id, label, mesh.vertices.copy(), mesh.faces.copy(), colors, mesh.vertices.mean(0), box, 5)


def mug_on_table() -> Reconstruction:
    """A map-frame (z-up) table whose top is at 0.75 m, and a 10 cm mug standing on it."""
    table = trimesh.creation.box(extents=(1.2, 0.8, TABLE_TOP_M))
    table.apply_translation([0.0, 1.0, TABLE_TOP_M / 2])
    mug = trimesh.creation.cylinder(radius=0.04, height=MUG_HEIGHT_M, sections=24)
    mug.apply_translation([*MUG_XY, TABLE_TOP_M + MUG_HEIGHT_M / 2])
    floor = trimesh.creation.box(extents=(4.0, 4.0, 0.02))
    floor.apply_translation([0.0, 0.0, -0.01])
    objects = [as_object(2, "table", table), as_object(3, "mug", mug)]
    graph = SceneGraph(objects, [Relation(3, "on", 2, 1.0)])
    return Reconstruction(objects, as_object(0, "background", floor), graph, stamp=1.0)


def gltf_json(path: Path) -> dict:
    """The JSON chunk of a GLB (header: magic, version, length; then chunk length, chunk type, data)."""
    data = path.read_bytes()
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2
    length, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON"
    return json.loads(data[20 : 20 + length])


def test_object_glb_is_y_up_with_the_map_height_on_plus_y(tmp_path):
    recon = mug_on_table()
    export_reconstruction(recon, tmp_path)
    mug_map = recon.objects[1].vertices
    mug = trimesh.load(tmp_path / "objects" / "3_mug.glb", force="mesh")
    lo, hi = mug.bounds
    # height is on +Y and equals the map-frame z extent; it stands on the table top, not beside it
    assert np.isclose(hi[1] - lo[1], MUG_HEIGHT_M, atol=1e-6)
    assert np.isclose(lo[1], TABLE_TOP_M, atol=1e-6) and np.isclose(hi[1], TABLE_TOP_M + MUG_HEIGHT_M, atol=1e-6)
    # map (x, y, z) -> glTF (x, z, -y), vertex for vertex
    expected = np.stack([mug_map[:, 0], mug_map[:, 2], -mug_map[:, 1]], axis=1)
    assert np.allclose(np.sort(mug.vertices, axis=0), np.sort(expected, axis=0), atol=1e-6)
    assert np.isclose(mug.vertices[:, 2].mean(), -MUG_XY[1], atol=1e-3)
    # a rotation, not a mirror: outward normals stay outward (the volume stays positive)
    assert mug.volume > 0


def test_scene_glb_is_y_up_and_the_mug_stands_on_the_table(tmp_path):
    export_reconstruction(mug_on_table(), tmp_path)
    scene = trimesh.load(tmp_path / "scene.glb")
    meshes = {name: scene.geometry[geom] for name, geom in ((n, scene.graph[n][1]) for n in scene.graph.nodes_geometry)}
    mug, table = meshes["3_mug"], meshes["2_table"]
    assert np.isclose(mug.bounds[0][1], table.bounds[1][1], atol=1e-6)  # mug bottom on the table top, along +Y
    assert np.isclose(table.bounds[1][1], TABLE_TOP_M, atol=1e-6)


def test_glb_meshes_and_nodes_are_named_id_label(tmp_path):
    export_reconstruction(mug_on_table(), tmp_path)
    for stem in ("3_mug", "2_table"):
        doc = gltf_json(tmp_path / "objects" / f"{stem}.glb")
        assert [m["name"] for m in doc["meshes"]] == [stem]
        assert [n["name"] for n in doc["nodes"] if "mesh" in n] == [stem]
    doc = gltf_json(tmp_path / "background.glb")
    assert [m["name"] for m in doc["meshes"]] == ["background"]
    scene = gltf_json(tmp_path / "scene.glb")
    assert sorted(m["name"] for m in scene["meshes"]) == ["2_table", "3_mug", "background"]
    assert sorted(n["name"] for n in scene["nodes"] if "mesh" in n) == ["2_table", "3_mug", "background"]


PRIOR_OFF = "off: no weights"
GL_FLOAT = 5126  # glTF componentType of float32


COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}


def glb_binary(path: Path) -> tuple[dict, bytes, int]:
    """The GLB's JSON, its bytes and where its BIN chunk's data starts."""
    data = path.read_bytes()
    json_length = struct.unpack_from("<I", data, 12)[0]
    return gltf_json(path), data, 20 + json_length + 8  # after the JSON chunk and the BIN chunk's length and type


def glb_attribute(path: Path, mesh_name: str, attribute: str) -> np.ndarray | None:
    """A float32 vertex attribute of the named mesh (N,) or (N, C), read from the GLB's own chunks (JSON, then
    BIN); None where the mesh has no such attribute."""
    doc, data, bin_start = glb_binary(path)
    (mesh,) = [m for m in doc["meshes"] if m["name"] == mesh_name]
    attributes = mesh["primitives"][0]["attributes"]
    if attribute not in attributes:
        return None
    accessor = doc["accessors"][attributes[attribute]]
    assert accessor["componentType"] == GL_FLOAT
    assert accessor["count"] == doc["accessors"][attributes["POSITION"]]["count"]
    view = doc["bufferViews"][accessor["bufferView"]]
    start = bin_start + view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    width = COMPONENTS[accessor["type"]]
    values = np.frombuffer(data, "<f4", count=accessor["count"] * width, offset=start)
    return values if width == 1 else values.reshape(-1, width)


def glb_base_colour(path: Path, mesh_name: str) -> tuple[dict, np.ndarray]:
    """The named mesh's material and its base-colour texture as an RGB array, decoded from the GLB's image."""
    doc, data, bin_start = glb_binary(path)
    (mesh,) = [m for m in doc["meshes"] if m["name"] == mesh_name]
    material = doc["materials"][mesh["primitives"][0]["material"]]
    texture = doc["textures"][material["pbrMetallicRoughness"]["baseColorTexture"]["index"]]
    image = doc["images"][texture["source"]]
    view = doc["bufferViews"][image["bufferView"]]
    start = bin_start + view.get("byteOffset", 0)
    decoded = Image.open(io.BytesIO(data[start : start + view["byteLength"]])).convert("RGB")
    return material, np.asarray(decoded)


def with_provenance(recon: Reconstruction) -> Reconstruction:
    """The mug observed from one side (observedness rising with map x), the table without provenance."""
    mug = recon.objects[1]
    x = mug.vertices[:, 0]
    mug.vertex_observed = ((x - x.min()) / np.ptp(x)).astype(np.float32)
    mug.completeness = float(np.mean(mug.vertex_observed >= 0.5))
    recon.prior_status = PRIOR_OFF
    return recon


def test_glb_carries_observedness_as_a_custom_vertex_attribute_only_where_known(tmp_path):
    recon = with_provenance(mug_on_table())
    export_reconstruction(recon, tmp_path)
    mug = recon.objects[1]
    for path in (tmp_path / "objects" / "3_mug.glb", tmp_path / "scene.glb"):
        written = glb_attribute(path, "3_mug", OBSERVED_ATTRIBUTE)
        assert written is not None and len(written) == len(mug.vertices), path
        assert np.allclose(written, mug.vertex_observed, atol=1e-6), path
    assert glb_attribute(tmp_path / "objects" / "2_table.glb", "2_table", OBSERVED_ATTRIBUTE) is None
    assert glb_attribute(tmp_path / "scene.glb", "2_table", OBSERVED_ATTRIBUTE) is None
    assert glb_attribute(tmp_path / "background.glb", "background", OBSERVED_ATTRIBUTE) is None


def test_scene_graph_json_records_the_prior_and_each_objects_provenance(tmp_path):
    recon = with_provenance(mug_on_table())
    export_reconstruction(recon, tmp_path)
    graph = json.loads((tmp_path / "scene_graph.json").read_text())
    assert graph["prior_status"] == PRIOR_OFF
    nodes = {n["label"]: n for n in graph["objects"]}
    assert nodes["mug"]["provenance"] is True and np.isclose(nodes["mug"]["generated_share"], 1 - recon.objects[1].completeness)
    assert nodes["table"]["provenance"] is False and nodes["table"]["generated_share"] == 0.0


def with_textures(recon: Reconstruction) -> Reconstruction:
    """The mug and the background textured (a pattern no two texels share), the table left vertex-coloured."""
    from dprecon_ros.core.texture.uv import unwrap

    rng = np.random.default_rng(0)
    for obj in (recon.objects[1], recon.background):
        atlas = unwrap(obj.vertices, obj.faces, 64, 2)
        obj.vertices, obj.faces, obj.uv = atlas.vertices, atlas.faces, atlas.uv
        obj.vertex_colors = np.full((len(atlas.vertices), 4), 90, np.uint8)
        obj.texture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return recon


def test_textured_glbs_carry_a_pbr_material_with_the_texture_and_uv_as_stored(tmp_path):
    recon = with_provenance(with_textures(mug_on_table()))
    export_reconstruction(recon, tmp_path)
    mug, background = recon.objects[1], recon.background
    for path, name, obj in (
        (tmp_path / "objects" / "3_mug.glb", "3_mug", mug),
        (tmp_path / "scene.glb", "3_mug", mug),
        (tmp_path / "background.glb", "background", background),
    ):
        material, image = glb_base_colour(path, name)
        assert np.array_equal(image, obj.texture), path  # lossless (PNG)
        assert material["pbrMetallicRoughness"]["metallicFactor"] == 0.0
        uv = glb_attribute(path, name, "TEXCOORD_0")
        assert np.allclose(uv, obj.uv, atol=1e-6), path  # glTF's v = 0 is the image's first row, as ours
        assert glb_attribute(path, name, "COLOR_0") is None  # it would tint the texture
    assert np.allclose(glb_attribute(tmp_path / "objects" / "3_mug.glb", "3_mug", OBSERVED_ATTRIBUTE), mug.vertex_observed)
    table = gltf_json(tmp_path / "objects" / "2_table.glb")
    assert "COLOR_0" in table["meshes"][0]["primitives"][0]["attributes"]  # untextured meshes keep vertex colours


def test_exported_glbs_pass_the_khronos_validator(tmp_path):
    missing = gltf_validator.validator_missing()
    if missing:
        pytest.fail(f"the glTF validator must run here: {missing}")
    recon = with_provenance(with_textures(mug_on_table()))
    paths = [p for p in export_reconstruction(recon, tmp_path) if p.suffix == ".glb"]
    assert len(paths) == 4
    reports = gltf_validator.validate(paths)
    assert len(reports) == 4
    for report in reports:
        assert report["issues"]["numErrors"] == 0, gltf_validator.errors(report)
        assert report["info"]["totalVertexCount"] > 0

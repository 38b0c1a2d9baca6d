"""Textured GLBs for viewers: one file per object version, the previous version deleted, nothing reused
across maps (viewers cache by URI), stale files of earlier processes removed."""

from urllib.parse import unquote, urlparse

import numpy as np
import trimesh
from PIL import Image

from dprecon_ros.core.boxes import oriented_box
from dprecon_ros.core.types import ObjectReconstruction, Reconstruction, SceneGraph
from dprecon_ros.io.mesh_resources import MeshResources, mesh_resource_dir


def textured(oid: int, shade: int) -> ObjectReconstruction:
    mesh = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    v = np.asarray(mesh.vertices)
    o = ObjectReconstruction(oid, "mug", v, np.asarray(mesh.faces), np.full((len(v), 4), 200, np.uint8), v.mean(0), oriented_box(v), 3)
    o.uv = np.tile(np.array([[0.5, 0.5]], np.float32), (len(v), 1))
    o.texture = np.full((4, 4, 3), shade, np.uint8)
    return o


def recon(objects, versions) -> Reconstruction:
    r = Reconstruction(objects, None, SceneGraph(objects, []), 1.0)
    r.versions = versions
    return r


def path_of(uri: str):
    from pathlib import Path

    return Path(unquote(urlparse(uri).path))


def texture_in(uri: str) -> int:
    scene = trimesh.load(path_of(uri), process=False)
    (mesh,) = scene.geometry.values()
    image = mesh.visual.material.baseColorTexture
    return int(np.asarray(Image.fromarray(np.asarray(image)))[0, 0, 0])


def test_each_version_gets_its_own_file_and_the_previous_one_goes(tmp_path):
    res = MeshResources(tmp_path)
    first = res.update(recon([textured(3, 10)], {3: 1}))[3]
    assert path_of(first).is_file() and first.startswith("file://") and ".v1." in first
    assert res.update(recon([textured(3, 10)], {3: 1}))[3] == first  # same version: same file, not rewritten
    second = res.update(recon([textured(3, 20)], {3: 2}))[3]
    assert second != first and path_of(second).is_file() and not path_of(first).exists()
    assert texture_in(second) == 20
    untextured = textured(3, 20)
    untextured.uv = untextured.texture = None
    assert res.update(recon([untextured], {3: 3})) == {} and not path_of(second).exists() and untextured.mesh_uri == ""
    res.update(recon([textured(3, 30)], {3: 4}))
    assert res.update(recon([], {})) == {} and not any(tmp_path.glob("*.glb"))  # gone from the map: file deleted


def test_a_new_map_never_reuses_an_old_uri_and_stale_files_are_removed(tmp_path):
    old = MeshResources(tmp_path)
    old_uri = old.update(recon([textured(3, 10)], {3: 1}))[3]
    (tmp_path / "notes.txt").write_text("not ours")
    new = MeshResources(tmp_path)  # after a reset or a restart: versions start again at 1
    assert not path_of(old_uri).exists()  # the earlier map's file is stale
    new_uri = new.update(recon([textured(3, 99)], {3: 1}))[3]
    assert new_uri != old_uri and texture_in(new_uri) == 99
    assert (tmp_path / "notes.txt").exists()  # only files of its own naming are touched
    new.clear()
    assert not any(tmp_path.glob("*.glb"))


def test_the_directory_follows_the_config(config, tmp_path):
    assert mesh_resource_dir(config) == ""
    config.reconstruction.export_dir = str(tmp_path)
    assert mesh_resource_dir(config) == str(tmp_path / "mesh_resources")
    config.topics.mesh_resource_dir = str(tmp_path / "elsewhere")
    assert mesh_resource_dir(config) == str(tmp_path / "elsewhere")
    config.topics.mesh_resources = False
    assert mesh_resource_dir(config) == ""

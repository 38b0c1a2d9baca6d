"""Texture fitting on a cube whose faces have known colours, seen by keyframes from one side only: the atlas,
the baked colours, occlusion, the fill of unseen texels and the visibility split."""

import sys

import numpy as np
import pytest
import torch
import trimesh

from dprecon_ros.config import DpreconConfig
from dprecon_ros.core.compute import Compute
from dprecon_ros.core.raster import project_to_clip, uv_to_clip
from dprecon_ros.core.raster.torch_raster import TorchRasteriser
from dprecon_ros.core.scene_model import ObjectState, SceneModel, VoxelGrid
from dprecon_ros.core.stages import texture as texture_stage
from dprecon_ros.core.stages.base import RunContext
from dprecon_ros.core.texture import uv as uv_module
from dprecon_ros.core.texture.bake import bake_keyframes, texel_surface
from dprecon_ros.core.texture.fill import push_pull
from dprecon_ros.core.texture.uv import UnwrapFailed, unwrap
from dprecon_ros.core.types import TEXEL_FILLED, TEXEL_GUTTER, TEXEL_OBSERVED, TriangleMesh
from dprecon_ros.testing import raster_scene
from dprecon_ros.testing.raster_scene import CUBE_INTRINSICS as K
from dprecon_ros.testing.raster_scene import CUBE_SEEN as SEEN
from dprecon_ros.testing.raster_scene import CUBE_SIDE_COLOURS as SIDE_COLOURS
from dprecon_ros.testing.raster_scene import FAR_M, NEAR_M


@pytest.fixture(scope="module")
def cube_keyframes():
    return raster_scene.cube_keyframes()


@pytest.fixture(scope="module")
def cube_mesh():
    return raster_scene.cube_mesh()


def test_the_atlas_keeps_the_surface_and_packs_it_inside_the_unit_square(cube_mesh):
    vertices, faces = cube_mesh
    atlas = unwrap(vertices, faces, 64, 2)
    assert np.array_equal(atlas.vertices, vertices[atlas.source])
    assert len(atlas.faces) == len(faces)
    assert np.allclose(atlas.vertices[atlas.faces], vertices[faces])  # the same triangles, seams split
    assert atlas.uv.min() >= 0 and atlas.uv.max() <= 1
    uv = atlas.uv[atlas.faces]
    a, b = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    area = np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]) / 2
    assert (area > 0).all() and area.sum() <= 1.0


def test_a_crashing_or_hanging_unwrap_process_is_reported_not_fatal(cube_mesh, monkeypatch):
    vertices, faces = cube_mesh
    monkeypatch.setattr(uv_module, "worker_command", lambda: [sys.executable, "-c", "import os; os.abort()"])
    with pytest.raises(UnwrapFailed, match="signal 6"):
        unwrap(vertices, faces, 64, 2)
    monkeypatch.setattr(uv_module, "worker_command", lambda: [sys.executable, "-c", "import time; time.sleep(30)"])
    with pytest.raises(UnwrapFailed, match="longer than"):
        unwrap(vertices, faces, 64, 2, timeout_s=0.5)
    monkeypatch.undo()
    assert len(unwrap(vertices, faces, 64, 2).faces) == len(faces)  # and the next one works


def test_a_large_mesh_reaches_a_worker_that_starts_slowly(monkeypatch):
    """The request is written while the child starts: a mesh larger than a pipe's buffer (64 KiB) must reach a
    worker that reads its stdin only after several polls (seen on a GPU machine, where an unwrap hung)."""
    sphere = trimesh.creation.icosphere(subdivisions=4)  # 5,120 faces, 2,562 vertices: about 90 KB of request
    vertices = sphere.vertices + np.random.default_rng(0).normal(0, 0.01, sphere.vertices.shape)
    faces = np.asarray(sphere.faces)
    assert len(uv_module.pack_arrays(vertices=vertices.astype(np.float32), faces=faces.astype(np.uint32))) > 2**16
    slow_start = (
        f"import time, runpy; time.sleep({5 * uv_module.POLL_S}); runpy.run_module('{uv_module.WORKER_MODULE}', run_name='__main__')"
    )
    monkeypatch.setattr(uv_module, "worker_command", lambda: [sys.executable, "-c", slow_start])
    atlas = unwrap(vertices, faces, 256, 2, timeout_s=30.0)
    assert len(atlas.faces) == len(faces)


def test_keyframe_colours_land_on_the_sides_they_saw_and_nowhere_else(cube_mesh, cube_keyframes):
    vertices, faces = cube_mesh
    atlas = unwrap(vertices, faces, 128, 2)
    surface = texel_surface(TorchRasteriser(), atlas, 128, torch.device("cpu"))
    views = texture_stage.keyframe_views(cube_keyframes, ObjectState(1, "thing"))
    baked = bake_keyframes(surface, views, depth_tolerance_m=0.02, tolerance_per_m=0.0, min_facing=0.2, facing_power=2.0)
    normals = surface.normals.numpy()
    sides = np.round(normals).astype(int)
    weight, colour = baked.weight.numpy(), baked.colour.numpy() * 255
    for side, rgb in SIDE_COLOURS.items():
        on_side = (sides == np.array(side)).all(axis=1) & (np.abs(normals @ np.array(side)) > 0.99)
        assert on_side.sum() > 100
        if side in SEEN:
            assert (weight[on_side] > 0).mean() > 0.95, side
            assert np.abs(colour[on_side][weight[on_side] > 0] - rgb).mean() < 6, side
        else:  # facing away from every keyframe, or hidden behind the cube: never coloured
            assert (weight[on_side] == 0).all(), side


def test_occluded_texels_take_no_colour_from_the_occluder(cube_mesh, cube_keyframes):
    # a second, hidden cube right behind the seen one (along -x): the keyframes' depth shows the front cube
    vertices, faces = cube_mesh
    hidden = vertices - np.array([0.6, 0.0, 0.0])
    atlas = unwrap(hidden, faces, 64, 2)
    surface = texel_surface(TorchRasteriser(), atlas, 64, torch.device("cpu"))
    views = texture_stage.keyframe_views(cube_keyframes, ObjectState(1, "thing"))
    for v in views:
        v.mask[:] = True  # even a mask that claims every pixel does not let the front cube colour the hidden one
    baked = bake_keyframes(surface, views, depth_tolerance_m=0.02, tolerance_per_m=0.0, min_facing=0.2, facing_power=2.0)
    facing_plus_x = surface.normals.numpy()[:, 0] > 0.99
    assert (baked.weight.numpy()[facing_plus_x] == 0).all()


def test_push_pull_keeps_known_texels_and_fills_holes_from_their_neighbours():
    image = torch.zeros(32, 32, 3)
    image[:, :16] = torch.tensor([1.0, 0.0, 0.0])
    image[:, 16:] = torch.tensor([0.0, 0.0, 1.0])
    known = torch.ones(32, 32, dtype=torch.bool)
    known[8:24, 12:20] = False
    filled = push_pull(image * known.unsqueeze(-1), known)
    assert torch.equal(filled[known], image[known])
    assert torch.allclose(filled[:, :, 1], torch.zeros(32, 32))  # only colours that were there
    assert float(filled[16, 12, 0]) > float(filled[16, 19, 0])  # nearer the red side, redder
    assert torch.allclose(filled.sum(dim=-1)[~known], torch.ones(int((~known).sum())), atol=1e-5)  # blends of the two


def run_texture_stage(vertices, faces, keyframes, visibility=None, size=64, object_id=1):
    config = DpreconConfig()
    config.compute.device = "cpu"
    config.texture.cpu.object_size = size
    model = SceneModel(visibility=visibility)
    config.texture.cpu.background_size = size
    state = ObjectState(object_id, "thing", mesh=TriangleMesh(vertices, faces, np.full((len(vertices), 4), 255, np.uint8)))
    if object_id == 0:
        model.background = state
    else:
        model.objects[object_id] = state
    ctx = RunContext(config, Compute(torch.device("cpu")), keyframes, [], {object_id}, ["texture"])
    texture_stage.TextureStage().run(model, ctx)
    return state.mesh, ctx


def texel_sides(mesh: TriangleMesh) -> tuple[np.ndarray, np.ndarray]:
    """Per texel: the outward side it lies on (0 where on no surface) and the texel indices, via a UV raster."""
    size = mesh.texture.shape[0]
    r = TorchRasteriser()
    faces = torch.as_tensor(mesh.faces, dtype=torch.int32)
    rast = r.rasterize(uv_to_clip(torch.as_tensor(mesh.uv))[None], faces, (size, size))[0]
    face_normals = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).face_normals
    tri = rast[..., 3].long().numpy() - 1
    return np.where(tri[..., None] >= 0, np.round(face_normals[np.maximum(tri, 0)]), 0), tri >= 0


def test_the_stage_textures_the_mesh_with_observed_and_filled_texels(cube_mesh, cube_keyframes):
    vertices, faces = cube_mesh
    mesh, _ = run_texture_stage(vertices, faces, cube_keyframes)
    assert mesh.is_textured and mesh.texture.shape == (64, 64, 3)
    assert np.allclose(mesh.vertices[mesh.faces], vertices[faces])
    sides, on_surface = texel_sides(mesh)
    prov = mesh.texel_provenance
    assert (prov[~on_surface] == TEXEL_GUTTER).mean() > 0.9  # chart borders may differ by a texel between rasters
    for side, rgb in SIDE_COLOURS.items():
        on_side = (sides == np.array(side)).all(axis=-1)
        if side in SEEN:
            assert (prov[on_side] == TEXEL_OBSERVED).mean() > 0.9, side
            seen = on_side & (prov == TEXEL_OBSERVED)
            assert np.abs(mesh.texture[seen].astype(float) - rgb).mean() < 8, side
        else:
            assert (prov[on_side] == TEXEL_FILLED).all(), side
    # the vertex colours, for viewers without textures, come from the texture
    assert mesh.vertex_colors.shape == (len(mesh.vertices), 4) and len(np.unique(mesh.vertex_colors[:, :3], axis=0)) > 3


def test_where_the_visibility_grid_says_unseen_keyframe_colours_are_not_used(cube_mesh, cube_keyframes):
    vertices, faces = cube_mesh
    # transmittance 1 everywhere but the slab in front of the +x side (x > 0.2): there the grid says unseen
    voxel = 0.02
    origin = np.array([-0.6, -0.6, -0.4])
    values = np.ones((61, 61, 61), np.float32)
    xs = origin[0] + voxel * np.arange(61)
    values[xs > 0.2 + voxel / 2] = 0.0
    mesh, _ = run_texture_stage(vertices, faces, cube_keyframes, VoxelGrid(origin, voxel, values))
    sides, _ = texel_sides(mesh)
    prov = mesh.texel_provenance
    plus_x = (sides == np.array((1, 0, 0))).all(axis=-1)
    plus_y = (sides == np.array((0, 1, 0))).all(axis=-1)
    assert (prov[plus_x] == TEXEL_FILLED).mean() > 0.9  # seen by keyframes, but the grid rules
    assert (prov[plus_y] == TEXEL_OBSERVED).mean() > 0.9


def test_a_failed_unwrap_leaves_the_vertex_coloured_mesh_and_counts(cube_mesh, cube_keyframes, monkeypatch):
    def fail(*_args):
        raise UnwrapFailed("the unwrap worker crashed")

    monkeypatch.setattr(texture_stage, "start_unwrap", fail)
    vertices, faces = cube_mesh
    mesh, ctx = run_texture_stage(vertices, faces, cube_keyframes)
    assert not mesh.is_textured and len(mesh.vertices) == len(vertices)
    assert ctx.counters.get("texture_unwrap_failed") == 1


def test_a_textured_render_from_a_keyframe_reproduces_its_image(cube_mesh, cube_keyframes):
    vertices, faces = cube_mesh
    mesh, _ = run_texture_stage(vertices, faces, cube_keyframes, size=128)
    kf = cube_keyframes[1]
    r = TorchRasteriser()
    f = torch.as_tensor(mesh.faces, dtype=torch.int32)
    clip = project_to_clip(torch.as_tensor(mesh.vertices, dtype=torch.float32), kf.frame.T_world_camera, K, NEAR_M, FAR_M)
    rast = r.rasterize(clip[None], f, (K.height, K.width))
    uv = r.interpolate(torch.as_tensor(mesh.uv), rast, f)
    rendered = r.texture(torch.as_tensor(mesh.texture, dtype=torch.float32)[None] / 255, uv)[0].numpy() * 255
    covered = (rast[0, ..., 3] > 0).numpy() & (kf.frame.instance > 0)
    mse = ((rendered[covered] - kf.frame.rgb[covered].astype(float)) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 25

"""The texture stage's cases beyond the plain bake: nothing observed, the background's threshold, the facing,
mask and cos^p terms of the bake, cancellation of an unwrap, and the stage's output through the glTF validator."""

import numpy as np
import pytest
import torch
import trimesh
from test_texture_bake import run_texture_stage

from dprecon_ros.core.raster.torch_raster import TorchRasteriser
from dprecon_ros.core.result import object_result
from dprecon_ros.core.scene_model import ObjectState, VoxelGrid
from dprecon_ros.core.texture.bake import KeyframeView, bake_keyframes, texel_surface
from dprecon_ros.core.texture.uv import unwrap
from dprecon_ros.core.types import TEXEL_FILLED, TEXEL_GUTTER, TEXEL_OBSERVED, Keyframe, Reconstruction, SceneGraph
from dprecon_ros.io.export import COLOR_OBSERVED_ATTRIBUTE, export_reconstruction
from dprecon_ros.testing import gltf_validator, raster_scene
from dprecon_ros.testing.raster_scene import CUBE_CENTRE as CENTRE
from dprecon_ros.testing.raster_scene import CUBE_INTRINSICS as K
from dprecon_ros.testing.raster_scene import CUBE_SIDE_COLOURS as SIDE_COLOURS
from dprecon_ros.testing.raster_scene import look_at, render_keyframe


@pytest.fixture(scope="module")
def cube_keyframes():
    return raster_scene.cube_keyframes()


@pytest.fixture(scope="module")
def cube_mesh():
    return raster_scene.cube_mesh()


def test_an_object_no_keyframe_observed_keeps_its_own_colours(cube_mesh):
    vertices, faces = cube_mesh
    mesh, _ = run_texture_stage(vertices, faces, [])
    assert (mesh.texel_provenance != TEXEL_OBSERVED).all()
    assert np.allclose(mesh.texture, 255, atol=1)  # the incoming vertex colours (white), not black
    assert np.allclose(mesh.vertex_colors[:, :3], 255, atol=1)


def test_unseen_sides_and_gutters_are_filled_from_observed_colours(cube_mesh, cube_keyframes):
    vertices, faces = cube_mesh
    mesh, _ = run_texture_stage(vertices, faces, cube_keyframes)
    seen = np.array([SIDE_COLOURS[s] for s in ((1, 0, 0), (0, 1, 0), (0, 0, 1))], float)
    filled = mesh.texture[mesh.texel_provenance == TEXEL_FILLED].astype(float)
    assert filled.min() >= seen.min() - 20 and filled.max() <= seen.max() + 10  # blends of what was seen
    assert filled.sum(axis=1).min() > 150  # never the empty black
    gutter = mesh.texture[mesh.texel_provenance == TEXEL_GUTTER].astype(float)
    assert gutter.sum(axis=1).mean() > 150  # dilated from the charts


def test_vertex_colours_follow_the_texture_on_each_seen_side(cube_mesh, cube_keyframes):
    vertices, faces = cube_mesh
    mesh, _ = run_texture_stage(vertices, faces, cube_keyframes)
    offset = mesh.vertices - CENTRE
    for side in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
        axis = int(np.argmax(side))
        across = np.delete(np.abs(offset), axis, axis=1)
        on_side = (np.abs(offset[:, axis] - 0.2) < 1e-6) & (across.max(axis=1) < 0.15)  # away from the edges
        assert on_side.sum() > 3
        assert np.abs(mesh.vertex_colors[on_side, :3].astype(float) - SIDE_COLOURS[side]).mean() < 12, side


def test_the_background_uses_its_own_lower_visibility_threshold(cube_mesh, cube_keyframes):
    vertices, faces = cube_mesh
    grid = VoxelGrid(np.array([-0.6, -0.6, -0.4]), 0.02, np.full((61, 61, 61), 0.2, np.float32))  # between 0.1 and 0.3
    as_object, _ = run_texture_stage(vertices, faces, cube_keyframes, grid)
    assert (as_object.texel_provenance == TEXEL_OBSERVED).sum() == 0  # 0.2 < 0.3: objects treat it as unseen
    background_frames = [Keyframe(k.index, k.frame, {}) for k in cube_keyframes]  # no objects: every pixel is background
    as_background, _ = run_texture_stage(vertices, faces, background_frames, grid, object_id=0)
    assert (as_background.texel_provenance == TEXEL_OBSERVED).sum() > 500  # 0.2 >= 0.1


def plane_views(colour_of: dict[int, tuple], eyes: list[np.ndarray], mask_right_half: bool = False) -> tuple:
    """A 0.4 m square in z = 0 facing +z, seen from `eyes`, flat-coloured per view; its atlas surface."""
    quad = trimesh.creation.box((0.4, 0.4, 1e-3)).subdivide()
    quad = trimesh.Trimesh(quad.vertices, quad.faces)
    top = quad.faces[quad.face_normals[:, 2] > 0.99]
    vertices, faces = np.asarray(quad.vertices), np.asarray(top)
    views = []
    for i, eye in enumerate(eyes):
        kf = render_keyframe(vertices, faces, np.tile(np.array(colour_of[i], float), (len(vertices), 1)), look_at(eye, np.zeros(3)), K, i)
        mask = kf.frame.instance > 0
        if mask_right_half:
            mask[:, K.width // 2 :] = False
        views.append(KeyframeView(kf.frame.rgb, kf.frame.depth_m, mask, K, kf.frame.T_world_camera))
    atlas = unwrap(vertices, faces, 64, 2)
    return texel_surface(TorchRasteriser(), atlas, 64, torch.device("cpu")), views


def test_a_surface_seen_from_behind_takes_no_colour():
    surface, views = plane_views({0: (200, 30, 30)}, [np.array([0.05, 0.02, -1.0])])  # below the upward-facing square
    baked = bake_keyframes(surface, views, 0.02, 0.0, min_facing=0.2, facing_power=2.0)
    assert float(baked.weight.max()) == 0.0


def test_only_pixels_in_the_objects_mask_colour_it():
    surface, views = plane_views({0: (200, 30, 30)}, [np.array([0.0, 0.01, 1.0])], mask_right_half=True)
    baked = bake_keyframes(surface, views, 0.02, 0.0, min_facing=0.2, facing_power=2.0)
    seen = baked.weight > 0
    assert 0.2 < float(seen.float().mean()) < 0.8
    # the camera's x axis: image columns right of centre are world points on one side of the square
    x_cam = torch.as_tensor(views[0].T_world_camera[:3, 0], dtype=torch.float32)
    assert float(((surface.points @ x_cam) > 0.01)[seen].float().mean()) == 0.0


def test_head_on_views_outweigh_grazing_ones():
    head_on, grazing = np.array([0.0, 0.01, 1.0]), np.array([1.0, 0.0, 0.25])
    surface, views = plane_views({0: (250, 0, 0), 1: (0, 0, 250)}, [head_on, grazing])
    baked = bake_keyframes(surface, views, 0.05, 0.0, min_facing=0.2, facing_power=2.0)
    both = baked.weight > 0
    colour = baked.colour[both].mean(dim=0) * 255
    assert float(colour[0]) > 3 * float(colour[2])  # cos^2: about 1 against 0.06


def test_a_cancelled_run_ends_a_running_unwrap(cube_mesh, monkeypatch):
    import sys

    from dprecon_ros.core.texture import uv as uv_module

    monkeypatch.setattr(uv_module, "worker_command", lambda: [sys.executable, "-c", "import time; time.sleep(30)"])
    calls = []

    def cancel():
        calls.append(1)
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        unwrap(*cube_mesh, 64, 2, timeout_s=20, check_cancelled=cancel)
    assert calls


def test_the_stages_textured_output_passes_the_khronos_validator(cube_mesh, cube_keyframes, tmp_path):
    missing = gltf_validator.validator_missing()
    if missing:
        pytest.fail(f"the glTF validator must run here: {missing}")
    vertices, faces = cube_mesh
    mesh, _ = run_texture_stage(vertices, faces, cube_keyframes)
    state = ObjectState(1, "thing", mesh=mesh)
    obj = object_result(state, 0.5)
    paths = [p for p in export_reconstruction(Reconstruction([obj], None, SceneGraph([obj], []), 1.0), tmp_path) if p.suffix == ".glb"]
    for report in gltf_validator.validate(paths):
        assert report["issues"]["numErrors"] == 0, gltf_validator.errors(report)
    loaded = trimesh.load(tmp_path / "objects" / "1_thing.glb", force="mesh", process=False)
    flags = np.asarray(loaded.vertex_attributes[COLOR_OBSERVED_ATTRIBUTE])
    assert len(flags) == len(mesh.vertices) and 0 < flags.mean() < 1  # seen sides 1, the filled ones 0

import numpy as np
import pytest
import trimesh

from dprecon_ros.config import DpreconConfig
from dprecon_ros.eval.evaluation import evaluate, match_objects
from dprecon_ros.eval.metrics import compare_meshes
from dprecon_ros.io.bags import read_frames, write_frames


def test_identical_meshes_score_perfectly():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
    m = compare_meshes(sphere, sphere, samples=5000)
    assert m.fscore > 0.999 and m.chamfer_cm < 0.5 and m.normal_consistency > 0.95


def test_shifted_mesh_metrics_follow_the_shift():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
    moved = sphere.copy()
    moved.apply_translation([0.1, 0, 0])
    m = compare_meshes(moved, sphere, samples=5000)
    assert 2.0 < m.chamfer_cm < 10.0 and m.fscore < 0.7
    assert compare_meshes(None, sphere, samples=100).fscore == 0.0


def test_partial_mesh_has_precision_but_not_recall():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
    half = sphere.submesh([np.where(sphere.triangles_center[:, 0] > 0)[0]], append=True)
    m = compare_meshes(half, sphere, samples=5000)
    assert m.precision > 0.99 and 0.4 < m.recall < 0.7


def test_objects_match_by_label_and_position():
    a = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    b = a.copy()
    b.apply_translation([1, 0, 0])
    gt = {"1_cup": a, "2_cup": b, "3_vase": a}
    pred = {10: ("cup", b.copy()), 11: ("cup", a.copy())}
    assert match_objects(pred, gt) == {"1_cup": 11, "2_cup": 10, "3_vase": None}
    scores = {s.gt_name: s for s in evaluate(pred, gt, samples=2000)}
    assert scores["1_cup"].metrics.fscore > 0.99 and scores["3_vase"].metrics.fscore == 0.0


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip_gives_back_the_frames(sim_frames, tmp_path, storage):
    frames = [f for f, _ in sim_frames[0][:5]]
    cfg = DpreconConfig()
    cfg.frames.min_mask_pixels = 1  # keep every instance, however small, so the masks compare exactly
    n = write_frames(tmp_path / "bag", frames, cfg, storage)
    assert n == 5 * 7
    back = list(read_frames(tmp_path / "bag", cfg))
    assert [f.stamp for f in back] == pytest.approx([f.stamp for f in frames])
    for a, b in zip(frames, back):
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.instance, b.instance) and a.labels == b.labels
        assert np.allclose(a.T_world_camera, b.T_world_camera, atol=1e-9)
        assert np.allclose(np.nan_to_num(a.depth_m), np.nan_to_num(b.depth_m))


def test_unseen_completeness_of_a_sphere_seen_from_one_side():
    from dprecon_ros.core.geometry import look_at
    from dprecon_ros.core.types import CameraIntrinsics, Frame
    from dprecon_ros.eval.evaluation import unseen_completeness, visible_in_any

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.2)
    K = CameraIntrinsics(200.0, 200.0, 79.5, 59.5, 160, 120)
    T = look_at(np.array([1.0, 0, 0]), np.zeros(3))
    # true z-depth of the sphere from this view (ray-sphere intersection)
    v, u = np.mgrid[0:120, 0:160].astype(float)
    dirs = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1).reshape(-1, 3) @ T[:3, :3].T
    o = T[:3, 3]
    a, b, c = (dirs**2).sum(1), 2 * dirs @ o, o @ o - 0.2**2
    disc = b * b - 4 * a * c
    depth = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.nan).astype(np.float32)
    frame = Frame(0.0, np.zeros((120, 160, 3), np.uint8), depth.reshape(120, 160), np.zeros((120, 160), np.int32), {}, K, T)
    pts = np.array([[0.2, 0, 0], [-0.2, 0, 0], [0, 0, 0.2]])
    assert visible_in_any(pts, [frame]).tolist() == [True, False, False]
    front = sphere.submesh([np.where(sphere.triangles_center[:, 0] > 0.05)[0]], append=True)
    score = unseen_completeness(front, sphere, [frame], samples=4000)
    assert 0.55 < score.unseen_fraction < 0.75  # a camera at 1 m sees less than the near half
    assert score.unseen_recall < 0.6
    assert unseen_completeness(sphere, sphere, [frame], samples=4000).unseen_recall > 0.99

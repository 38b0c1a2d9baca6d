"""Where an object's field may hold matter at the start: its grown box and its carved hull."""

from __future__ import annotations

import numpy as np
import torch
from conftest import make_frame

from dprecon_ros.core.fields.composite import laplace_cdf_density
from dprecon_ros.core.fields.init import carve_hull
from dprecon_ros.core.geometry import make_transform
from dprecon_ros.core.stages.geometry.stage import grown_box
from dprecon_ros.core.types import Keyframe, ObjectSeed

LOOK_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # optical z along world -z


def seen_from(positions, object_id=7) -> list[Keyframe]:
    return [Keyframe(i, make_frame(stamp=float(i), T=make_transform(np.eye(3), p)), {1: object_id}) for i, p in enumerate(positions)]


def test_a_box_grows_away_from_one_sided_views_and_not_when_seen_from_all_round():
    seed = ObjectSeed(7, "mug", np.array([-0.05, -0.05, 0.7]), np.array([0.05, 0.05, 0.8]), 3)
    one_side = seen_from([[-1.0, y, 1.2] for y in (-0.2, 0.0, 0.2)])
    lo, hi = grown_box(seed, one_side, 0.0, 0.5, 0.04)
    assert hi[0] - seed.hi[0] > 0.035 and np.allclose(lo, seed.lo)  # the far side (+x) grew, close to the 4 cm cap
    assert np.isclose(hi[2], seed.hi[2])  # never up or down
    around = seen_from([[np.cos(a), np.sin(a), 1.2] for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)])
    lo, hi = grown_box(seed, around, 0.0, 0.5, 0.04)
    assert np.allclose(lo, seed.lo, atol=1e-3) and np.allclose(hi, seed.hi, atol=1e-3)
    # a y-up map: the growth stays off the y axis
    lo, hi = grown_box(seed, seen_from([[-1.0, 1.2, z] for z in (0.55, 0.75, 0.95)]), 0.0, 0.5, 0.04, up=1)
    assert np.isclose(hi[1], seed.hi[1]) and np.isclose(lo[1], seed.lo[1]) and hi[0] - seed.hi[0] > 0.035


def test_the_hull_of_a_top_seen_from_above_stops_at_its_depth_limit_and_where_views_saw_through():
    frame = make_frame(stamp=0.0, T=make_transform(LOOK_DOWN, [0.0, 0.0, 1.75]))  # a plane at z = 0.75 under it
    keyframes = [Keyframe(0, frame, {1: 7})]
    heights = torch.tensor([0.85, 0.74, 0.70, 0.55])
    points = torch.stack([torch.zeros(4), torch.zeros(4), heights], dim=1)
    limited = carve_hull(points, keyframes, 7, margin_m=0.015, max_depth_m=0.1)
    assert limited.tolist() == [False, True, True, False]  # in front: seen through; 20 cm under the top: beyond the limit
    unlimited = carve_hull(points, keyframes, 7, margin_m=0.015)
    assert unlimited.tolist() == [False, True, True, True]
    assert not carve_hull(points, keyframes, 8, margin_m=0.015, max_depth_m=0.1).any()  # another object's mask


def test_the_density_never_turns_denormal():
    beta = torch.tensor(0.01)
    outside = torch.tensor([0.95, 5.0])  # 95 and 500 beta: exp(-95) would be a float32 denormal, exp(-500) zero
    density = laplace_cdf_density(outside, beta)
    assert torch.all(density >= torch.finfo(torch.float32).tiny)

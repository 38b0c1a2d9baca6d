"""SDF fields: the C1 B-spline read, pyramids, packed object cubes, and initial fields that are true distances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dprecon_ros.core.fields.box import GridBox
from dprecon_ros.core.fields.bspline import bspline
from dprecon_ros.core.fields.grid import trilinear
from dprecon_ros.core.fields.init import redistance, signed_distance
from dprecon_ros.core.fields.pyramid import PackedObjects, PyramidSdf, level_shapes


def sphere_field(center=(0.0, 0.0, 0.0), radius=0.2, lo=-0.5, hi=0.5, n=24, levels=1) -> PyramidSdf:
    box = GridBox(torch.full((3,), lo) + torch.tensor(center), (hi - lo) / (n - 1), (n, n, n))
    return PyramidSdf.from_values(box, (box.centers() - torch.tensor(center)).norm(dim=-1) - radius, levels)


def test_bspline_gradient_is_the_derivative_of_the_values_and_grid_gradients_are_exact():
    g = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    u = torch.rand(40, 3, dtype=torch.float64) * torch.tensor([3.0, 4.0, 5.0], dtype=torch.float64) + 0.5
    u[:4] = torch.tensor([3.5, 4.5, 5.5], dtype=torch.float64)  # the domain's upper corner: the last node is read
    u[4:8] = 0.5  # and its lower one
    which = torch.randint(0, 2, (40,))
    value, grad = bspline(g, which, u)
    h = 1e-6
    for axis in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[axis] = h
        numeric = (bspline(g, which, u + step)[0] - bspline(g, which, u - step)[0]) / (2 * h)
        assert torch.allclose(numeric, grad[:, axis], atol=1e-6)
    alone, _ = bspline(g[1:], None, u)
    assert torch.allclose(value[which == 1], alone[which == 1])
    # the hand-written backward (to the grid values) against autograd's numerical check
    assert torch.autograd.gradcheck(
        lambda grid: torch.cat([t.reshape(-1) for t in bspline(grid, which, u)]), (g.clone().requires_grad_(True),)
    )


def test_bspline_reproduces_a_plane_and_its_gradient_is_continuous_across_cells():
    ijk = torch.stack(torch.meshgrid(*[torch.arange(8.0, dtype=torch.float64)] * 3, indexing="ij"), -1)
    normal = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    plane = ((ijk - 3.3) * normal).sum(-1)[None]
    u = torch.rand(50, 3, dtype=torch.float64) * 6 + 0.5
    value, grad = bspline(plane, None, u)
    assert torch.allclose(value, ((u - 3.3) * normal).sum(-1)) and torch.allclose(grad, normal.expand(50, 3))  # |grad| = 1
    # a curved field: across a cell face (u = 3.5 along x) the B-spline's gradient is continuous, trilinear's jumps
    curved = (ijk**2).sum(-1)[None] / 10
    face = torch.tensor([[3.5 - 1e-7, 2.3, 4.1], [3.5 + 1e-7, 2.3, 4.1]], dtype=torch.float64)
    _, g_spline = bspline(curved, None, face)
    _, g_linear = trilinear(curved, face - torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64))  # trilinear's faces are at integers
    assert (g_spline[0] - g_spline[1]).norm() < 1e-5
    assert (g_linear[0, 0] - g_linear[1, 0]).norm() > 0.05


def test_pyramid_of_a_sphere_is_a_distance_and_grows_outside_the_grid():
    field = sphere_field(levels=3)
    assert [tuple(p.shape) for p in field.levels] == level_shapes((24, 24, 24), 3) == [(24,) * 3, (15,) * 3, (9,) * 3]
    x = torch.tensor([[0.2, 0.0, 0.0], [0.0, 0.0, -0.1], [2.0, 0.0, 0.0]])
    sdf, grad = (t.detach() for t in field(x))
    assert abs(sdf[0]) < 0.01 and sdf[1].item() == pytest.approx(-0.1, abs=0.01)
    assert sdf[2].item() == pytest.approx(1.8, abs=0.03)  # border value + distance to the grid
    assert torch.allclose(grad[0], torch.tensor([1.0, 0, 0]), atol=0.05) and torch.allclose(grad[2], torch.tensor([1.0, 0, 0]), atol=0.05)


def test_a_coarse_level_couples_an_update_over_many_cells():
    """An update at one point moves the field far beyond the finest cell it fell in (no per-cell speckle)."""
    single, pyramid = sphere_field(levels=1), sphere_field(levels=3)
    probe = torch.tensor([[0.2, 0.0, 0.0]])
    far = torch.tensor([[0.2, 0.12, 0.0]])  # three finest cells away
    for field in (single, pyramid):
        field(probe)[0].sum().backward()
        with torch.no_grad():
            for p in field.levels:
                p -= 0.01 * p.grad.sign()
    moved = [float((field(far)[0] - sphere_field(levels=1)(far)[0]).abs().detach()) for field in (single, pyramid)]
    assert moved[0] < 1e-6 and moved[1] > 0.005


def test_packed_objects_read_like_their_fields_and_frozen_ones_get_no_gradient():
    a, b = sphere_field((-0.3, 0.0, 0.0), 0.1, levels=2), sphere_field((0.4, 0.0, 0.0), 0.15, lo=-0.4, hi=0.4, levels=2)
    packed = PackedObjects([a, b], trainable=[True, False])
    x = torch.rand(500, 3) * 2 - 1
    values, grads = packed(x)
    for k, field in enumerate((a, b)):
        inside = ((x - field.box.origin >= 0) & (x <= field.box.upper)).all(-1)
        v, g = field(x[inside])
        assert torch.allclose(values[inside, k], v, atol=1e-5) and torch.allclose(grads[inside, k], g, atol=1e-4)
        assert (values[~inside, k] > 0).all()  # outside its cube an object is empty
    values.sum().backward()
    assert packed.levels[0].grad[0].abs().sum() > 0 and packed.levels[0].grad[1].abs().sum() == 0
    for k, field in enumerate((a, b)):
        restored = packed.unpack(k)
        assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(restored.levels, field.levels))


def truncated_sphere_tsdf(n: int, radius_cells: float, trunc_cells: float) -> np.ndarray:
    ijk = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1)
    r = np.linalg.norm(ijk - (n - 1) / 2, axis=-1)
    return np.clip((r - radius_cells) / trunc_cells, -1, 1), r


def test_redistancing_turns_a_truncated_or_staircase_field_into_a_true_distance():
    """After initialisation |grad d| is within 0.1 of 1 inside the grid (a known sphere)."""
    n, radius, voxel = 40, 12.0, 0.01
    tsdf, r = truncated_sphere_tsdf(n, radius, 3.0)
    staircase = np.round(tsdf * 3.0)  # nearest-voxel reads of a coarser TSDF: flat steps
    box = GridBox(torch.zeros(3), voxel, (n, n, n))
    inner = ((r > 4) & (r < 17)).ravel()
    pts = box.centers().reshape(-1, 3)[torch.from_numpy(inner)] + (torch.rand(int(inner.sum()), 3) - 0.5) * voxel
    for raw in (tsdf * 3.0, staircase):
        field = PyramidSdf.from_values(box, torch.from_numpy(redistance(raw.astype(np.float32), voxel)), 1)
        sdf, grad = field(pts)
        residual = (grad.norm(dim=-1) - 1).abs().detach()
        assert residual.mean() < 0.1 and torch.quantile(residual, 0.9) < 0.2
        true = (pts - (n - 1) / 2 * voxel).norm(dim=-1) - radius * voxel
        assert (sdf.detach() - true).abs().mean() < 0.6 * voxel
    # without redistancing the staircase is flat within steps and far too steep across them
    _, grad = PyramidSdf.from_values(box, torch.from_numpy(staircase.astype(np.float32) * voxel), 1)(pts)
    assert (grad.norm(dim=-1) - 1).abs().mean() > 0.3


def test_signed_distance_of_a_ball():
    n = 31
    ijk = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1)
    r = np.linalg.norm(ijk - 15, axis=-1)
    sdf = signed_distance(r <= 10, voxel=0.1)
    assert sdf[15, 15, 15] == pytest.approx(-1.05, abs=0.1)
    assert sdf[15, 15, 30] == pytest.approx(0.5, abs=0.1)
    assert np.all(np.sign(sdf[r < 9.5]) < 0) and np.all(np.sign(sdf[r > 10.5]) > 0)

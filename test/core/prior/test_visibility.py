"""The visibility grid: what the keyframes' rays reached, with an occluder casting a shadow; box growth."""

from __future__ import annotations

import numpy as np
import torch

from dprecon_ros.core.stages.prior.visibility_fit import grow_box, mean_in_box
from dprecon_ros.core.visibility import dense_transmittance, empty_grid, gaussian_smooth, ray_visibility, read_grid, splat_max

OCCLUDER_X = (0.0, 0.2)  # an opaque slab between the cameras (x = -2) and the space behind it
OCCLUDER_HALF = 0.5  # its half extent in y and z


def occluded_grid(sigma: float = 0.5) -> object:
    """Rays from cameras at x = -2 along +x over y, z in [-1, 1]: T = 1 until they enter the slab, 0 after."""
    grid = empty_grid(np.array([-1.5, -1.0, -1.0]), np.array([1.5, 1.0, 1.0]), 60)
    values = torch.zeros(grid.values.shape)
    ys, zs = torch.meshgrid(torch.linspace(-1, 1, 81), torch.linspace(-1, 1, 81), indexing="ij")
    o = torch.stack([torch.full_like(ys, -2.0), ys, zs], dim=-1).reshape(-1, 3)
    t = torch.linspace(0.0, 4.0, 9)[None].expand(len(o), -1)  # coarse samples: dense_transmittance fills between them
    blocked = (o[:, 1].abs() <= OCCLUDER_HALF) & (o[:, 2].abs() <= OCCLUDER_HALF)
    x = o[:, :1] + t
    trans = torch.where(blocked[:, None] & (x > OCCLUDER_X[0]), 0.0, 1.0)
    fine_t, fine_T = dense_transmittance(t, trans, grid.voxel / 2)
    points = o[:, None] + fine_t[..., None] * torch.tensor([1.0, 0.0, 0.0])
    splat_max(values, torch.as_tensor(grid.origin, dtype=torch.float32), grid.voxel, points.reshape(-1, 3), fine_T.reshape(-1))
    grid.values = gaussian_smooth(values, sigma, 5).numpy()
    return grid


def test_space_in_front_of_an_occluder_is_seen_and_its_shadow_is_not():
    grid = occluded_grid()
    probe = torch.tensor(
        [
            [-0.8, 0.0, 0.0],  # in front of the slab
            [0.8, 0.0, 0.0],  # in its shadow
            [0.8, 0.0, 0.2],
            [0.8, 0.85, 0.0],  # behind, but beside the slab: rays passed there
            [0.8, 0.0, -0.85],
        ]
    )
    v = read_grid(grid, probe)
    assert v[0] > 0.95 and v[1] < 0.05 and v[2] < 0.05 and v[3] > 0.95 and v[4] > 0.95
    assert read_grid(grid, torch.tensor([[5.0, 0.0, 0.0]])).item() == 0.0  # outside the grid nothing was seen


def test_coarse_samples_still_mark_the_free_space_between_them():
    grid = occluded_grid(sigma=0.0)
    cells = grid.values[: int(1.4 / grid.voxel), :, :]  # x < -0.1: only free space the rays crossed
    assert cells[:, 10:-10, 10:-10].min() == 1.0


def test_rendered_visibility_of_empty_space_is_that_of_the_space_crossed():
    seen = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    weights = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    vis = ray_visibility(weights, seen, 1 - weights.sum(dim=1))
    assert torch.allclose(vis, torch.tensor([1.0, 0.0, 0.0]))  # seen empty; unseen; a surface hidden behind seen air


def test_boxes_grow_into_the_shadow_and_not_into_seen_space():
    grid = occluded_grid()
    lo, hi = np.array([0.2, -0.3, -0.3]), np.array([0.4, 0.3, 0.3])  # an object just behind the slab
    glo, ghi = grow_box(lo, hi, grid, threshold=0.5, max_m=0.3)
    assert ghi[0] > hi[0] + 0.25  # further back into the shadow, up to the limit
    assert glo[0] == lo[0]  # towards the cameras the slab was seen
    for axis in (1, 2):  # sideways and downwards while in shadow, never into the rays that passed beside the slab
        assert -OCCLUDER_HALF - grid.voxel <= glo[axis] < lo[axis] and hi[axis] < ghi[axis] <= OCCLUDER_HALF + grid.voxel
    seen = grow_box(np.array([-1.0, -0.2, -0.2]), np.array([-0.8, 0.2, 0.2]), grid, threshold=0.5, max_m=0.3)
    assert np.allclose(seen[0], [-1.0, -0.2, -0.2]) and np.allclose(seen[1], [-0.8, 0.2, 0.2])  # in seen space: no growth
    assert mean_in_box(grid, np.array([-1.0, -0.2, -0.2]), np.array([-0.5, 0.2, 0.2])) > 0.95


def test_a_sample_raises_all_eight_nodes_around_it_so_its_own_read_is_at_least_its_transmittance():
    grid = empty_grid(np.zeros(3), np.ones(3), 4)
    values = torch.zeros(grid.values.shape)
    point = torch.tensor([[0.37, 0.52, 0.61]])
    splat_max(values, torch.zeros(3), grid.voxel, point, torch.tensor([0.7]))
    grid.values = values.numpy()
    assert (values > 0).sum() == 8 and read_grid(grid, point).item() >= 0.7 - 1e-6
    splat_max(values, torch.zeros(3), grid.voxel, point, torch.tensor([0.2]))  # a lower one never lowers a node
    assert values.max() == 0.7


def test_smoothing_is_a_normalised_gaussian_of_the_configured_width():
    delta = torch.zeros(9, 9, 9)
    delta[4, 4, 4] = 1.0
    out = gaussian_smooth(delta, 0.5, 5)
    w0 = 1.0 / (1 + 2 * np.exp(-2.0) + 2 * np.exp(-8.0))
    assert abs(out.sum().item() - 1.0) < 1e-5 and abs(out[4, 4, 4].item() - w0**3) < 1e-6
    assert abs(out[5, 4, 4].item() - w0**3 * np.exp(-2.0)) < 1e-6

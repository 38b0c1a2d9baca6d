"""The fill of unseen texels from observed ones in 3D: inverse-distance means of the nearest observed texels,
and colours taken from the surface beside a hole, not from one across the room."""

import numpy as np
import torch

from dprecon_ros.core.texture.fill import surface_fill


def scattered_texels(count: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    points = torch.as_tensor(rng.uniform(-1, 1, (count, 3)), dtype=torch.float32)
    colour = torch.as_tensor(rng.uniform(0, 1, (count, 3)), dtype=torch.float32)
    observed = torch.as_tensor(rng.uniform(size=count) < 0.4)
    return colour, points, observed


def brute_force_fill(colour, points, observed, k):
    """The same fill written the plain way: every distance, a full sort, inverse-distance weights."""
    known, unseen = points[observed].double(), points[~observed].double()
    distance = torch.cdist(unseen, known)
    nearest, index = distance.topk(k, dim=1, largest=False)
    weight = 1.0 / nearest.clamp(min=1e-6)
    weight = weight / weight.sum(dim=1, keepdim=True)
    filled = colour.clone()
    filled[~observed] = (colour[observed].double()[index] * weight[..., None]).sum(dim=1).float()
    return filled


def test_the_fill_is_the_inverse_distance_mean_of_the_nearest_observed_texels():
    colour, points, observed = scattered_texels()
    filled = surface_fill(colour, points, observed, neighbours=8)
    assert torch.equal(filled[observed], colour[observed])  # what was seen stays
    assert torch.allclose(filled, brute_force_fill(colour, points, observed, 8), atol=1e-5)
    assert not torch.allclose(filled, brute_force_fill(colour, points, observed, 4), atol=1e-3)  # the count matters
    assert torch.allclose(surface_fill(colour, points, observed, neighbours=3), brute_force_fill(colour, points, observed, 3), atol=1e-5)


def test_an_unseen_texel_on_top_of_an_observed_one_takes_its_colour():
    points = torch.tensor([[0.0, 0, 0], [0.0, 0, 0], [1.0, 0, 0]])
    colour = torch.tensor([[1.0, 0, 0], [0.0, 0, 0], [0.0, 0, 1.0]])
    observed = torch.tensor([True, False, True])
    filled = surface_fill(colour, points, observed, neighbours=2)
    assert bool(torch.isfinite(filled).all())
    assert float(filled[1, 0]) > 0.999 and float(filled[1, 2]) < 1e-3


def test_a_hole_takes_the_colour_of_the_surface_around_it_not_of_one_across_the_room():
    grid = torch.stack(torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 40), indexing="ij"), -1).reshape(-1, 2)
    red_wall = torch.cat([grid, torch.zeros(len(grid), 1)], dim=1)  # z = 0
    blue_wall = torch.cat([grid, torch.full((len(grid), 1), 3.0)], dim=1)  # 3 m away
    points = torch.cat([red_wall, blue_wall])
    colour = torch.cat([torch.tensor([1.0, 0, 0]).expand(len(grid), 3), torch.tensor([0, 0, 1.0]).expand(len(grid), 3)])
    hole = (red_wall[:, :2] - 0.5).norm(dim=1) < 0.2  # unseen patch in the middle of the red wall
    observed = torch.cat([~hole, torch.ones(len(grid), dtype=torch.bool)])
    filled = surface_fill(torch.where(observed[:, None], colour, torch.zeros(3)), points, observed, 8)
    assert torch.allclose(filled[: len(grid)][hole], torch.tensor([1.0, 0, 0]).expand(int(hole.sum()), 3))


def test_nothing_or_everything_seen_leaves_the_colours_as_they_were():
    colour, points, _ = scattered_texels(100)
    for observed in (torch.zeros(100, dtype=torch.bool), torch.ones(100, dtype=torch.bool)):
        assert torch.equal(surface_fill(colour, points, observed, 8), colour)

"""The stage-1 losses: gradients, and that each term measures what the paper means by it."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from dprecon_ros.core.stages.geometry import losses


def dbl(*shape, positive=False):
    t = torch.rand(*shape, dtype=torch.float64) if positive else torch.randn(*shape, dtype=torch.float64)
    return t.requires_grad_(True)


def test_rgb_loss_gradient():
    assert gradcheck(lambda p: losses.rgb_loss(p, torch.full((6, 3), 0.5, dtype=torch.float64)), (dbl(6, 3),))


def test_metric_depth_loss_ignores_rays_without_a_reading():
    target = torch.tensor([1.0, 2.0, float("nan"), 3.0], dtype=torch.float64)
    valid = torch.isfinite(target)
    assert gradcheck(lambda p: losses.metric_depth_loss(p, target, valid), (dbl(4) + 2,))
    pred = torch.tensor([1.5, 2.0, 100.0, 3.0], dtype=torch.float64)
    assert losses.metric_depth_loss(pred, target, valid).item() == pytest.approx(0.5 / 3)
    assert losses.metric_depth_loss(pred, target, torch.zeros(4, dtype=torch.bool)).item() == 0.0


def test_scale_and_shift_are_fitted_per_image_not_per_batch():
    target = torch.rand(20, dtype=torch.float64) + 1
    image = torch.tensor([0] * 10 + [1] * 10)
    valid = torch.ones(20, dtype=torch.bool)
    pred = torch.where(image == 0, 3 * target + 0.5, 0.5 * target - 0.2).detach()  # each image its own scale and shift
    assert losses.scale_shift_invariant_depth_loss(pred, target, valid, image, 2) < 1e-10
    assert losses.scale_shift_invariant_depth_loss(pred, target, valid, torch.zeros(20, dtype=torch.long), 1) > 1e-3
    assert gradcheck(lambda p: losses.scale_shift_invariant_depth_loss(p, target, valid, image, 2), (dbl(20),))


def test_normal_losses_only_on_valid_rays():
    target = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float64), dim=-1)
    valid = torch.tensor([True] * 6 + [False])
    assert gradcheck(lambda p: losses.normal_losses(p, target, valid)[0], (dbl(7, 3),))
    assert gradcheck(lambda p: losses.normal_losses(p, target, valid)[1], (dbl(7, 3),))
    pred = (target * 2).clone()
    pred[6] = -pred[6]  # a ray that does not cross the surface: ignored
    l1, cos = losses.normal_losses(pred, target, valid)
    assert l1 < 1e-12 and cos < 1e-12


def test_mask_loss_is_binary_cross_entropy_averaged_over_rays_and_objects():
    opacity = torch.tensor([[0.9, 0.2, 0.1], [0.3, 0.6, 0.9]], dtype=torch.float64)  # 2 objects + background column
    target = torch.tensor([0, 2])  # ray 0 on object 0, ray 1 on the background
    expected = (
        -(torch.log(torch.tensor(0.9)) + torch.log(torch.tensor(0.8)) + torch.log(torch.tensor(0.7)) + torch.log(torch.tensor(0.4))) / 4
    )
    assert losses.mask_loss(opacity, target, 2).item() == pytest.approx(expected.item(), rel=1e-6)
    assert gradcheck(lambda p: losses.mask_loss(p, target, 2), (dbl(2, 3, positive=True) * 0.8 + 0.1,))
    more_fields = torch.cat([opacity[:, :2], torch.zeros(2, 3, dtype=torch.float64), opacity[:, 2:]], dim=1)
    assert losses.mask_loss(more_fields, torch.tensor([0, 5]), 5) < losses.mask_loss(opacity, target, 2)  # a mean, not a sum


def test_eikonal_loss_averages_per_field():
    grads = torch.cat([torch.full((2, 3), 1.0), torch.tensor([[1.0, 0.0, 0.0]]).repeat(98, 1)]).double()
    owner = torch.tensor([0, 0] + [1] * 98)
    per_field = ((3**0.5 - 1) ** 2 + 0.0) / 2  # field 0 is all wrong, field 1 all right: each counts half
    assert losses.eikonal_loss(grads, owner, 2).item() == pytest.approx(per_field)
    keep = torch.tensor([False, False] + [True] * 98)
    assert losses.eikonal_loss(grads, owner, 2, keep).item() == pytest.approx(0.0)
    assert gradcheck(lambda g: losses.eikonal_loss(g, torch.tensor([0, 1, 1, 2, 2]), 3), (dbl(5, 3),))


def test_smoothness_loss_gradient():
    assert gradcheck(lambda a, b: losses.smoothness_loss(a, b), (dbl(6, 3), dbl(6, 3)))


def test_overlap_loss_is_dp_recons_violation_term():
    sdf = torch.tensor([[-0.3, -0.2, 0.5], [-0.1, 0.4, 0.2], [0.2, 0.3, 0.1]], dtype=torch.float64, requires_grad=True)
    # a point 0.3 deep in object 0 is at least 0.3 from any other object: object 1 (0.2 deep) violates by
    # relu(0.2 + 0.3) = 0.5, object 2 (0.5 away) not at all; points 1 and 2 are fine
    assert losses.overlap_loss(sdf).item() == pytest.approx(0.5 / 3)
    deep = torch.tensor([[-0.3, -0.4, 0.5], [-0.1, 0.05, 0.2]], dtype=torch.float64, requires_grad=True)
    # point 0: deepest in object 1, object 0 violates by 0.7; point 1: object 1 is only 0.05 away, violation 0.05
    assert losses.overlap_loss(deep).item() == pytest.approx((0.7 + 0.05) / 2)
    losses.overlap_loss(deep).backward()
    assert deep.grad[1, 1] < 0 and deep.grad[1, 0] == 0  # only the intruder is pushed out


def test_patch_smoothness_is_zero_on_a_flat_patch_and_positive_on_a_bump():
    depth = torch.full((1, 4, 4), 2.0, dtype=torch.float64)
    normal = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(1, 4, 4, 3)
    assert losses.patch_smoothness_loss(depth, normal).item() == 0.0
    bump = depth.clone()
    bump[0, 1, 1] = 1.5
    assert losses.patch_smoothness_loss(bump, normal) > 0
    rows, cols = torch.meshgrid(torch.arange(4.0, dtype=torch.float64), torch.arange(4.0, dtype=torch.float64), indexing="ij")
    slant = (1.0 + 0.3 * rows + 0.2 * cols)[None]  # a plane at a slant along both image axes
    assert losses.patch_smoothness_loss(slant, normal).item() == pytest.approx(0.0)
    assert gradcheck(lambda d, n: losses.patch_smoothness_loss(d, n), (dbl(2, 3, 3), dbl(2, 3, 3, 3)))


def test_free_space_loss_penalises_solid_where_a_depth_ray_passed():
    sdf = torch.tensor([[0.2, -0.1], [0.3, 0.4], [-0.5, 0.1]], dtype=torch.float64, requires_grad=True)
    free = torch.tensor([True, True, False])  # the third sample lies beyond the measured depth
    assert losses.free_space_loss(sdf, free).item() == pytest.approx(0.1 / 2)
    assert gradcheck(lambda s: losses.free_space_loss(s, free), (sdf,))

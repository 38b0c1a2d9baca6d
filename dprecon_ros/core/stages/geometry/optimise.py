"""The optimisation of stage 1: batches of keyframe rays, the paper's loss terms, Adam over the fields.

Only the fields being refitted (and the shared density and colour network) are optimised; fields kept from
an earlier run take part in rendering, frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dprecon_ros.core.fields.composite import CompositeScene
from dprecon_ros.core.render.rays import RayPool
from dprecon_ros.core.render.volume import RayBatch, render_rays, sphere_bounds
from dprecon_ros.core.schedules import schedule_value
from dprecon_ros.core.stages.base import RunContext
from dprecon_ros.core.stages.geometry import losses
from dprecon_ros.core.stages.geometry.config import GeometryConfig

OBJECT_RAY_SHARE = 0.5  # half of each batch comes from object pixels: objects are small in the images
LOSS_NAMES = ("rgb", "depth", "normal_l1", "normal_cos", "mask", "eikonal", "smooth", "overlap", "background")


def sample_batch(pool: RayPool, n: int, generator: torch.Generator) -> torch.Tensor:
    n_obj = min(int(n * OBJECT_RAY_SHARE), len(pool.object_pixels))
    pick_obj = pool.object_pixels[
        torch.randint(0, max(1, len(pool.object_pixels)), (n_obj,), generator=generator, device=pool.field.device)
    ]
    pick_all = torch.randint(0, len(pool), (n - n_obj,), generator=generator, device=pool.field.device)
    return torch.cat([pick_obj, pick_all])


def box_points(scene: CompositeScene, count: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform points in the fields' grids (objects and background), for the eikonal term."""
    per = max(1, count // len(scene.fields))
    pts = []
    for field in scene.fields:
        r = torch.rand((per, 3), generator=generator, device=field.box.origin.device)
        pts.append(field.box.origin + r * (field.box.upper - field.box.origin))
    return torch.cat(pts)


def loss_terms(
    cfg: GeometryConfig, scene: CompositeScene, pool: RayPool, idx: torch.Tensor, metric_depth: bool, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    o, d = pool.origins[idx], pool.directions[idx]
    near, far = sphere_bounds(o, d, min_near=pool.near)
    out = render_rays(
        scene, RayBatch(o, d, near, far), cfg.samples_init, cfg.samples_final, cfg.samples_extra, cfg.sampling_eps, cfg.sampling_iters
    )
    dist, field = pool.distance[idx], pool.field[idx]
    has_depth = torch.isfinite(dist)
    depth_fn = losses.metric_depth_loss if metric_depth else losses.scale_shift_invariant_depth_loss
    normal_l1, normal_cos = losses.normal_losses(out.normal, pool.normal[idx], pool.normal_valid[idx])
    K = scene.num_objects
    # points on observed object surfaces: the background must be empty there; normals vary smoothly there
    on_object = has_depth & (field < K)
    surface = (o + d * torch.nan_to_num(dist)[:, None])[on_object]
    if len(surface):
        offset = F.normalize(torch.randn(surface.shape, generator=generator, device=surface.device), dim=-1) * cfg.smooth_offset
        _, grad_a, values = scene.scene_sdf(surface)
        _, grad_b, _ = scene.scene_sdf(surface + offset)
        smooth = losses.smoothness_loss(grad_a, grad_b)
        background = losses.background_loss(values[:, K])
    else:
        smooth = background = out.rgb.sum() * 0.0
    _, eik_grads = scene.sdfs(box_points(scene, len(idx), generator))
    return {
        "rgb": losses.rgb_loss(out.rgb, pool.rgb[idx]),
        "depth": depth_fn(out.distance, torch.nan_to_num(dist), has_depth),
        "normal_l1": normal_l1,
        "normal_cos": normal_cos,
        "mask": losses.mask_loss(out.field_opacity, field),
        "eikonal": losses.eikonal_loss(torch.cat([out.field_grad.reshape(-1, 3), eik_grads.reshape(-1, 3)])),
        "smooth": smooth,
        "overlap": losses.overlap_loss(out.field_sdf[:, :K]) if K else out.rgb.sum() * 0.0,
        "background": background,
    }


def weighted_loss(cfg: GeometryConfig, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(getattr(cfg, f"w_{name}") * value for name, value in terms.items())


def optimise(
    cfg: GeometryConfig, scene: CompositeScene, trainable: list[int], pool: RayPool, metric_depth: bool, ctx: RunContext
) -> list[dict[str, float]]:
    """Fit the fields listed in `trainable` (indices into scene.fields), the density and the colour network."""
    device = ctx.compute.device
    # Adam moves every cell by about lr per step: tie it to each grid's cell size
    groups = [{"params": [scene.fields[k].values], "lr": cfg.lr_sdf_voxels * scene.fields[k].box.voxel} for k in trainable]
    groups += [{"params": [scene.density.log_beta], "lr": cfg.lr_beta}, {"params": scene.color.parameters(), "lr": cfg.lr_color}]
    for group in groups:
        group["base_lr"] = group["lr"]
    optimizer = torch.optim.Adam(groups)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    rays = ctx.scaled(cfg.rays_per_batch, minimum=8)
    history = []
    for step in range(cfg.iterations):
        ctx.check_cancelled()
        factor = schedule_value(cfg.lr_schedule, step)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        idx = sample_batch(pool, rays, generator)
        terms = loss_terms(cfg, scene, pool, idx, metric_depth, generator)
        loss = weighted_loss(cfg, terms)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % cfg.progress_every == 0 or step == cfg.iterations - 1:
            history.append(
                {"step": step, "loss": loss.item(), "beta": scene.density.beta.item(), **{k: v.item() for k, v in terms.items()}}
            )
            ctx.progress((step + 1) / cfg.iterations)
    return history

"""The optimisation of stage 1: batches of keyframe rays, the paper's loss terms, Adam over the fields.

Only the fields being refitted (and the shared density and colour network) are optimised; fields kept from
an earlier run take part in rendering, frozen. Training rays are sampled around their measured depth (or
where the current field first has a surface), so no refinement rounds are spent finding a surface the sensor
already located.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dprecon_ros.core.fields.composite import CompositeScene
from dprecon_ros.core.render.rays import RayPool
from dprecon_ros.core.render.sampling import first_surface, guided_samples
from dprecon_ros.core.render.volume import RayBatch, render_samples, sdf_along, sphere_bounds
from dprecon_ros.core.stages.base import RunContext
from dprecon_ros.core.stages.geometry import losses
from dprecon_ros.core.stages.geometry.config import GeometryConfig

OBJECT_RAY_SHARE = 0.5  # half of each batch comes from object pixels: objects are small in the images
PATCH_SPAN = 8  # a background patch spans about 1/PATCH_SPAN of the image width
LOSS_NAMES = ("rgb", "depth", "normal_l1", "normal_cos", "mask", "eikonal", "smooth", "overlap", "background", "free_space", "outside_box")


@dataclass
class FitProblem:
    """What one fit works on besides the scene: the rays, the depth kind, what may move, the scene scale."""

    pool: RayPool
    metric_depth: bool
    trainable_objects: list[int]
    background_trainable: bool
    overlap_boxes: torch.Tensor  # (P, 2, 3) lo/hi of intersections of object boxes (scene units)
    object_boxes: torch.Tensor  # (K, 2, 3) lo/hi of each object's (grown) box, inside its cube (scene units)
    metres_per_unit: float

    def __post_init__(self) -> None:
        device = self.pool.field.device
        self.trainable_index = torch.as_tensor(self.trainable_objects, dtype=torch.long, device=device)  # once, not per step

    def units(self, metres: float) -> float:
        return metres / self.metres_per_unit


def sample_batch(pool: RayPool, n: int, generator: torch.Generator) -> torch.Tensor:
    n_obj = min(int(n * OBJECT_RAY_SHARE), len(pool.object_pixels))
    device = pool.field.device
    pick_obj = pool.object_pixels[torch.randint(0, max(1, len(pool.object_pixels)), (n_obj,), generator=generator, device=device)]
    pick_all = torch.randint(0, len(pool), (n - n_obj,), generator=generator, device=device)
    return torch.cat([pick_obj, pick_all])


def training_samples(
    cfg: GeometryConfig, scene: CompositeScene, rays: RayBatch, distance: torch.Tensor, fit: FitProblem, generator: torch.Generator
) -> torch.Tensor:
    guide = torch.nan_to_num(distance)
    if fit.pool.missing_depth:
        traced = first_surface(sdf_along(scene, rays), rays.near, rays.far, cfg.guide_samples)
        guide = torch.where(torch.isfinite(distance), guide, traced)
    return guided_samples(rays.near, rays.far, guide, cfg.samples_coarse, cfg.samples_fine, fit.units(cfg.sample_band_m), generator)


def observation_terms(cfg: GeometryConfig, scene: CompositeScene, fit: FitProblem, idx: torch.Tensor, generator: torch.Generator):
    """The terms that compare renders of keyframe rays with the keyframes, the free-space term on the same
    samples; also the batch's measured surface points (for the terms that need points on surfaces)."""
    pool = fit.pool
    o, d = pool.origins[idx], pool.directions[idx]
    near, far = sphere_bounds(o, d, min_near=pool.near)
    rays = RayBatch(o, d, near, far)
    dist, field = pool.distance[idx], pool.field[idx]
    has_depth = torch.isfinite(dist)
    out = render_samples(scene, rays, training_samples(cfg, scene, rays, dist, fit, generator))
    if fit.metric_depth:
        depth = losses.metric_depth_loss(out.distance, dist, has_depth)
    else:
        depth = losses.scale_shift_invariant_depth_loss(out.distance, dist, has_depth, pool.image[idx], pool.num_images)
    crossing = pool.normal_valid[idx] & has_depth & (out.surface_opacity.detach() > 0.5)
    normal_l1, normal_cos = losses.normal_losses(out.normal, pool.normal[idx], crossing)
    free = (out.t < (dist - fit.units(cfg.free_space_margin_m))[:, None]) & has_depth[:, None]
    terms = {
        "rgb": losses.rgb_loss(out.rgb, pool.rgb[idx]),
        "depth": depth,
        "normal_l1": normal_l1,
        "normal_cos": normal_cos,
        "mask": losses.mask_loss(out.field_opacity, field, scene.num_objects),
        "free_space": losses.free_space_loss(out.field_sdf, free.reshape(-1)),
    }
    surface = o + d * torch.nan_to_num(dist)[:, None]
    return terms, surface, field, has_depth


def field_regularisers(
    cfg: GeometryConfig,
    scene: CompositeScene,
    fit: FitProblem,
    surface: torch.Tensor,
    owner: torch.Tensor,
    has_depth: torch.Tensor,
    generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eikonal residual of each refitted field inside its own grid (uniform points in the grid plus points near
    the batch's measured surfaces, averaged per field), and the outside-box term on the same uniform points
    (an object's cube reaches beyond its box; beyond the box the object must be empty)."""
    device, K = surface.device, scene.num_objects
    n_uniform = max(1, cfg.eikonal_points // 2)
    points, owners = [], []
    if fit.trainable_objects:
        which = fit.trainable_index.repeat_interleave(n_uniform)
        objects = scene.objects
        extent = (objects.nodes - 1) * objects.voxels[which][:, None]
        points.append(objects.origins[which] + torch.rand((len(which), 3), generator=generator, device=device) * extent)
        owners.append(which)
    if fit.background_trainable:
        box = scene.background.box
        points.append(box.origin + torch.rand((n_uniform, 3), generator=generator, device=device) * (box.upper - box.origin))
        owners.append(torch.full((n_uniform,), K, device=device))
    jitter = torch.randn(surface.shape, generator=generator, device=device) * fit.units(cfg.near_surface_sigma_m)
    points.append(surface + jitter)
    owners.append(owner)
    x, who = torch.cat(points), torch.cat(owners)
    trainable = torch.zeros(K + 1, dtype=torch.bool, device=device)
    trainable[fit.trainable_index] = True
    trainable[K] = fit.background_trainable
    in_grid = torch.ones(len(x) - len(surface), dtype=torch.bool, device=device)
    uniform = torch.cat([in_grid, torch.zeros_like(has_depth)])
    keep = trainable[who] & torch.cat([in_grid, has_depth])  # uniform points, and surface points with a reading
    own_value, own = read_own(scene, x, who)
    eikonal = losses.eikonal_loss(own, who, K + 1, keep)
    if not K:
        return eikonal, eikonal * 0.0
    boxes = fit.object_boxes[who.clamp(max=K - 1)]
    outside = ((x < boxes[:, 0]) | (x > boxes[:, 1])).any(dim=1) & uniform & (who < K) & trainable[who]
    return eikonal, losses.outside_box_loss(own_value, outside)


def read_own(scene: CompositeScene, x: torch.Tensor, who: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each point's SDF and gradient in its own field only (objects 0..K-1, background K)."""
    K = scene.num_objects
    on_background = torch.nonzero(who == K).squeeze(1)
    value, grad = scene.background(x[on_background])
    values = torch.zeros(len(x), dtype=x.dtype, device=x.device).index_put((on_background,), value)
    grads = torch.zeros_like(x).index_put((on_background,), grad)
    if K:
        on_object = torch.nonzero(who < K).squeeze(1)
        value, grad = scene.objects.read_own(x[on_object], who[on_object])
        values, grads = values.index_put((on_object,), value), grads.index_put((on_object,), grad)
    return values, grads


def smoothness_term(cfg: GeometryConfig, scene: CompositeScene, fit: FitProblem, surface: torch.Tensor, has_depth: torch.Tensor, generator):
    offset = torch.nn.functional.normalize(torch.randn(surface.shape, generator=generator, device=surface.device), dim=-1)
    _, grads, _ = scene.scene_sdf(torch.cat([surface, surface + offset * fit.units(cfg.smooth_offset_m)]))  # one read for both
    grad_a, grad_b = grads.split(len(surface))
    return losses.smoothness_loss(grad_a, grad_b, has_depth)


def overlap_term(cfg: GeometryConfig, scene: CompositeScene, fit: FitProblem, generator: torch.Generator) -> torch.Tensor:
    boxes = fit.overlap_boxes
    if len(boxes) == 0 or cfg.overlap_points == 0:
        return scene.density.log_beta * 0.0
    device = boxes.device
    pair = torch.randint(0, len(boxes), (cfg.overlap_points,), generator=generator, device=device)
    lo, hi = boxes[pair, 0], boxes[pair, 1]
    x = lo + torch.rand(lo.shape, generator=generator, device=device) * (hi - lo)
    return losses.overlap_loss(scene.objects(x)[0])


def background_term(cfg: GeometryConfig, scene: CompositeScene, fit: FitProblem, generator: torch.Generator) -> torch.Tensor:
    """Depth and normal smoothness of background-only renders of small patches from virtual cameras near
    the keyframes: behind objects the background continues as it does around them."""
    if not fit.background_trainable or cfg.background_patches == 0:
        return scene.density.log_beta * 0.0
    cams, device, size = fit.pool.cameras, scene.density.log_beta.device, cfg.patch_size
    image = torch.randint(0, fit.pool.num_images, (cfg.background_patches,), generator=generator, device=device)
    hw = cams.sizes[image]
    stride = (hw[:, 1] // (PATCH_SPAN * size)).clamp(min=1).min()
    room = (hw - size * stride).clamp(min=1)
    corner = (torch.rand((len(image), 2), generator=generator, device=device) * room).long()
    o, d = cams.patch_rays(image, corner, size, stride)
    o = o + torch.randn((len(image), 1, 3), generator=generator, device=device) * fit.units(cfg.patch_camera_jitter_m)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    near, far = sphere_bounds(o, d, min_near=fit.pool.near)
    rays = RayBatch(o, d, near, far)
    guide = first_surface(sdf_along(scene, rays, background_only=True), near, far, cfg.guide_samples)
    t = guided_samples(near, far, guide, cfg.samples_coarse, cfg.samples_fine, fit.units(cfg.sample_band_m), generator)
    out = render_samples(scene, rays, t, background_only=True)
    return losses.patch_smoothness_loss(out.distance.reshape(-1, size, size), out.normal.reshape(-1, size, size, 3))


def loss_terms(
    cfg: GeometryConfig, scene: CompositeScene, fit: FitProblem, idx: torch.Tensor, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    terms, surface, field, has_depth = observation_terms(cfg, scene, fit, idx, generator)
    terms["eikonal"], terms["outside_box"] = field_regularisers(cfg, scene, fit, surface, field, has_depth, generator)
    terms["smooth"] = smoothness_term(cfg, scene, fit, surface, has_depth, generator)
    terms["overlap"] = overlap_term(cfg, scene, fit, generator)
    terms["background"] = background_term(cfg, scene, fit, generator)
    return terms


def weighted_loss(cfg: GeometryConfig, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(getattr(cfg, f"w_{name}") * value for name, value in terms.items())


def make_optimizer(cfg: GeometryConfig, scene: CompositeScene, fit: FitProblem) -> torch.optim.Adam:
    """Adam as DP-Recon sets it up (betas (0.9, 0.99), eps 1e-15: per-cell gradients are far below the usual
    1e-8). The finest SDF level moves about `lr_sdf_voxels` finest cells a step (object grids store values in
    cells of their own cube, so one rate suits a mug and a table alike); each coarser level `lr_coarse_factor`
    times less: Adam moves every node about its learning rate whatever its gradient's size, and a coarse node
    that only sparse, noisy gradients reach would otherwise random-walk whole walls and floors."""
    groups = []
    if fit.trainable_objects:
        groups += [{"params": [p], "lr": cfg.lr_sdf_voxels * cfg.lr_coarse_factor**level} for level, p in enumerate(scene.objects.levels)]
    if fit.background_trainable:
        voxel = scene.background.box.voxel
        groups += [
            {"params": [p], "lr": cfg.lr_sdf_voxels * cfg.lr_background_factor * voxel * cfg.lr_coarse_factor**level}
            for level, p in enumerate(scene.background.levels)
        ]
    groups += [{"params": [scene.density.log_beta], "lr": cfg.lr_beta}, {"params": list(scene.color.parameters()), "lr": cfg.lr_color}]
    for group in groups:
        group["base_lr"] = group["lr"]
    return torch.optim.Adam(groups, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, fused=True)


def optimise(cfg: GeometryConfig, scene: CompositeScene, fit: FitProblem, ctx: RunContext) -> list[dict[str, float]]:
    """Fit the refitted fields, the density and the colour network; returns the loss history."""
    device = ctx.compute.device
    optimizer = make_optimizer(cfg, scene, fit)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    rays = ctx.scaled(cfg.rays_per_batch, minimum=8)
    history = []
    last = max(1, cfg.iterations - 1)
    for step in range(cfg.iterations):
        ctx.check_cancelled()
        factor = cfg.lr_final_factor ** (step / last)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        terms = loss_terms(cfg, scene, fit, sample_batch(fit.pool, rays, generator), generator)
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

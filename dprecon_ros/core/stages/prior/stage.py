"""Stage `prior`: DP-Recon stage 2. The fitted fields keep fitting the keyframes while a text-to-image prior
scores normal maps of each object (and the background) from cameras all round it; per pixel, the visibility
grid decides which of the two speaks: L = L_obs + sds_weight * L_SDS, the SDS gradient scaled by the
visibility weight (large where no keyframe saw the surface, zero where one saw it fully).

One object per step, round robin, the background included. An edit (`ctx.edits`) re-runs the prior for the
named objects only, with their new prompts, observation losses and visibility weighting off, as the paper
edits. Without a guidance that can run here (no weights in the local cache) the stage leaves the model as
the geometry stage made it and says so in `model.prior_status`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import numpy as np
import torch

from dprecon_ros.config_fields import with_sizes
from dprecon_ros.core.fields.composite import CompositeScene
from dprecon_ros.core.fields.pyramid import CANONICAL_FILL, CUBE_CLEARANCE, PackedObjects, PyramidSdf
from dprecon_ros.core.fusion.fuse import background_bounds
from dprecon_ros.core.guidance.base import Guidance, GuidanceUnavailable, GuidanceViews, Prompt, make_guidance
from dprecon_ros.core.guidance.sds import visibility_weight
from dprecon_ros.core.render.rays import build_ray_pool
from dprecon_ros.core.render.volume import sphere_bounds
from dprecon_ros.core.scene_model import BACKGROUND_ID, SceneModel
from dprecon_ros.core.stages.base import RunContext, Stage, register_stage
from dprecon_ros.core.stages.geometry import losses
from dprecon_ros.core.stages.geometry.optimise import FitProblem, loss_terms, make_optimizer, sample_batch, weighted_loss
from dprecon_ros.core.stages.geometry.stage import canonical_cube, flushed_denormals, grown_box, intersections, sized
from dprecon_ros.core.stages.prior.cameras import orbit_cameras, room_cameras
from dprecon_ros.core.stages.prior.config import PriorConfig, prompt_overrides
from dprecon_ros.core.stages.prior.render import ViewRender, box_bounds, render_views
from dprecon_ros.core.stages.prior.visibility_fit import fit_visibility_grid, grow_box

log = logging.getLogger("dprecon_ros")
EIKONAL_POINTS_EDIT = 512  # eikonal points per step on an edited object (its only regulariser)
FIT_TOLERANCE = 1e-6  # scene units: a box this close to its cube's inner part still fits
FACE_CONTACT_CELLS = 1.0  # an object reaches a face of its box when its surface comes this many cells close
FACE_SAMPLES = 12  # points per side of a box face where the object's SDF is read


def sized_prior(cfg: PriorConfig, ctx: RunContext) -> PriorConfig:
    if ctx.compute.device.type == "cpu" and cfg.cpu_preset:
        return with_sizes(cfg, cfg.cpu)
    return cfg


def prompt_for(model: SceneModel, object_id: int, cfg: PriorConfig, edits: dict[int, str]) -> Prompt:
    """The edit being run, else a configured override (`prior.prompts`, `~/set_prompt`), else the object's last
    edit, else the background prompt or the label template."""
    state = model.state(object_id)
    override = prompt_overrides(cfg.prompts).get(object_id) if object_id != BACKGROUND_ID else None
    if object_id in edits:
        text = edits[object_id]
    elif override:
        text = override
    elif state is not None and state.prompt:
        text = state.prompt
    elif object_id == BACKGROUND_ID:
        text = cfg.background_prompt
    else:
        text = cfg.prompt_template.format(label=state.label if state else "object")
    return Prompt(text, cfg.negative_prompt)


@register_stage
class PriorStage(Stage):
    name = "prior"
    config_sections = ("prior", "geometry", "frames", "scene_graph")

    def run(self, model: SceneModel, ctx: RunContext) -> SceneModel:
        targets = sorted(ctx.edits) if ctx.edits else sorted(oid for oid in ctx.dirty if model.state(oid) is not None)
        if not targets:
            return model
        if model.normalisation is None or any(model.state(oid).field is None for oid in targets):
            model.prior_status = "off: the prior needs the geometry stage's fields (put `geometry` before `prior`)"
            ctx.counters.count("prior_off", f"prior stage skipped: {model.prior_status[5:]}", logging.WARNING)
            return model
        if ctx.compute.is_fallback:  # a second, fp32 copy of the model on the CPU would take minutes a step
            model.prior_status = "off: the device ran out of memory; the prior does not run on the CPU fallback"
            ctx.counters.count("prior_off", f"prior stage skipped: {model.prior_status[5:]}", logging.WARNING)
            return model
        cfg = sized_prior(ctx.config.prior, ctx)
        try:
            guidance = make_guidance(cfg, ctx.compute.device)
        except GuidanceUnavailable as exc:
            model.prior_status = f"off: {exc}"
            ctx.counters.count("prior_off", f"prior stage skipped; the map is published without it: {exc}", logging.WARNING)
            return model
        model.prior_status = f"on: {guidance.describe()}"
        with flushed_denormals(ctx.compute.device):
            return PriorRun(model, ctx, cfg, guidance, targets).run()


class PriorRun:
    """One prior stage: the scene with the targets trainable, the visibility grid, the optimisation."""

    def __init__(self, model: SceneModel, ctx: RunContext, cfg: PriorConfig, guidance: Guidance, targets: list[int]) -> None:
        self.model, self.ctx, self.cfg, self.guidance = model, ctx, cfg, guidance
        self.device = ctx.compute.device
        self.edits = dict(ctx.edits)
        self.object_ids = sorted(model.objects)
        self.targets = [oid for oid in targets if oid != BACKGROUND_ID] + ([BACKGROUND_ID] if BACKGROUND_ID in targets else [])
        self.geometry = dataclasses.replace(
            sized(ctx.config.geometry, ctx), lr_sdf_voxels=cfg.lr_sdf_voxels, lr_coarse_factor=cfg.lr_coarse_factor
        )
        self.up = "xyz".index(ctx.config.scene_graph.up_axis)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.boxes: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # grown boxes (map frame), once the visibility is known

    def run(self) -> SceneModel:
        model, ctx = self.model, self.ctx
        scene = self.scene()
        bounds = background_bounds(ctx.keyframes)
        if not self.edits or model.visibility is None:
            model.visibility = fit_visibility_grid(
                scene,
                ctx.keyframes,
                self.object_ids,
                model.normalisation,
                bounds,
                self.cfg.visibility_resolution,
                self.cfg.visibility_rays_per_image,
                self.cfg.visibility_samples_per_ray,
                self.cfg.visibility_smoothing_sigma,
                self.cfg.visibility_kernel,
                ctx.config.frames.min_depth_m,
                self.device,
                ctx.check_cancelled,
            )
        if model.visibility is not None:
            self.recube_targets()
            scene = self.scene()  # with the resampled fields
        fit = self.fit_problem(scene)
        iterations = self.cfg.iterations * (self.cfg.edit_iterations_factor if self.edits else 1.0)
        model.history = model.history + self.optimise(scene, fit, max(1, int(iterations)))
        for k, oid in enumerate(self.object_ids):
            if oid in self.targets:
                model.objects[oid].field = scene.objects.unpack(k)
        if BACKGROUND_ID in self.targets:
            model.background.field = scene.background
        model.appearance, model.log_beta = scene.color, float(scene.density.log_beta.detach())
        for oid, text in self.edits.items():
            model.state(oid).prompt = text
        return model

    def scene(self) -> CompositeScene:
        """The model's fields with the targets trainable, the rest frozen."""
        model = self.model
        fields = [copy.deepcopy(model.objects[oid].field).to(self.device) for oid in self.object_ids]
        objects = PackedObjects(fields, [oid in self.targets for oid in self.object_ids]) if fields else None
        background = copy.deepcopy(model.background.field).to(self.device)
        background.requires_grad_(BACKGROUND_ID in self.targets)
        color = copy.deepcopy(model.appearance).to(self.device)
        color.requires_grad_(not self.edits)
        scene = CompositeScene(objects, background, color, 1.0).to(self.device)
        with torch.no_grad():
            scene.density.log_beta.fill_(model.log_beta)
        scene.density.log_beta.requires_grad_(False)  # the geometry stage settled beta; the prior moves shapes
        return scene

    def object_box(self, oid: int) -> tuple[np.ndarray, np.ndarray]:
        """The object's box (map frame), found once per run: as the geometry stage grew it, then into space no
        keyframe saw, across the faces its surface reaches (an object cut off by its box)."""
        if oid in self.boxes:
            return self.boxes[oid]
        g = self.geometry
        state = self.model.objects[oid]
        lo, hi = grown_box(state.seed, self.ctx.keyframes, g.object_margin, g.unseen_growth, g.unseen_growth_max_m, self.up)
        if self.model.visibility is None:
            return lo, hi
        self.boxes[oid] = grow_box(
            lo,
            hi,
            self.model.visibility,
            self.cfg.box_visibility,
            self.cfg.box_growth_max_m,
            lambda a, s: self.reaches(state, lo, hi, a, s),
        )
        return self.boxes[oid]

    @torch.no_grad()
    def reaches(self, state, lo: np.ndarray, hi: np.ndarray, axis: int, sign: int) -> bool:
        """Whether the object's surface comes within FACE_CONTACT_CELLS of its cells to a face of its box: only
        there can the object go on beyond the box. A table whose top ends inside its box needs no more room."""
        norm, field = self.model.normalisation, state.field
        u, v = [a for a in range(3) if a != axis]
        s = np.linspace(0.0, 1.0, FACE_SAMPLES)
        su, sv = np.meshgrid(s, s, indexing="ij")
        face = np.empty((su.size, 3))
        face[:, u] = lo[u] + su.ravel() * (hi[u] - lo[u])
        face[:, v] = lo[v] + sv.ravel() * (hi[v] - lo[v])
        face[:, axis] = hi[axis] if sign > 0 else lo[axis]
        x = torch.as_tensor(norm.to_scene(face), dtype=torch.float32, device=field.box.origin.device)
        return bool(field(x)[0].min() <= FACE_CONTACT_CELLS * field.box.voxel)

    def recube_targets(self) -> None:
        """A target whose grown box no longer fits the inner part of its canonical cube gets a larger cube, its
        field resampled into it: the prior can only shape what lies inside an object's cube."""
        norm, device = self.model.normalisation, self.device
        for oid in self.targets:
            if oid == BACKGROUND_ID:
                continue
            state = self.model.objects[oid]
            box = state.field.box
            side = (box.shape[0] - 1) * box.voxel
            inner_lo = box.origin.cpu().numpy() + CUBE_CLEARANCE * side
            inner_hi = inner_lo + CANONICAL_FILL * side
            lo, hi = (norm.to_scene(c) for c in self.object_box(oid))
            if np.all(lo >= inner_lo - FIT_TOLERANCE) and np.all(hi <= inner_hi + FIT_TOLERANCE):
                continue
            cube = canonical_cube(np.minimum(lo, inner_lo), np.maximum(hi, inner_hi), box.shape[0], device)
            with torch.no_grad():
                values = copy.deepcopy(state.field).to(device)(cube.centers().reshape(-1, 3))[0].reshape(cube.shape)
            state.field = PyramidSdf.from_values(cube, values, len(state.field.levels))

    def fit_problem(self, scene: CompositeScene) -> FitProblem:
        norm, device = self.model.normalisation, self.device
        boxes = []
        for k, oid in enumerate(self.object_ids):
            lo, hi = self.object_box(oid)
            cube_lo = scene.objects.origins[k].cpu().numpy()
            cube_hi = cube_lo + (scene.objects.nodes.cpu().numpy() - 1) * float(scene.objects.voxels[k])
            boxes.append((np.maximum(norm.to_scene(lo), cube_lo), np.minimum(norm.to_scene(hi), cube_hi)))
        pool = build_ray_pool(self.ctx.keyframes, self.object_ids, norm, device, self.ctx.config.frames.min_depth_m)
        return FitProblem(
            pool=pool,
            metric_depth=bool(torch.isfinite(pool.distance).any()),
            trainable_objects=[k for k, oid in enumerate(self.object_ids) if oid in self.targets],
            background_trainable=BACKGROUND_ID in self.targets,
            overlap_boxes=intersections(boxes, device),
            object_boxes=torch.as_tensor(np.array(boxes, dtype=np.float32).reshape(-1, 2, 3), device=device),
            metres_per_unit=norm.scale,
        )

    def optimise(self, scene: CompositeScene, fit: FitProblem, iterations: int) -> list[dict[str, float]]:
        optimizer = make_optimizer(self.geometry, scene, fit)
        history = []
        rays = self.ctx.scaled(self.cfg.rays_per_batch, minimum=8)
        for step in range(iterations):
            self.ctx.check_cancelled()
            progress = step / max(1, iterations - 1)
            target = self.targets[step % len(self.targets)]
            if self.edits:
                terms = {"eikonal": self.edit_eikonal(scene, target)}
            else:
                terms = loss_terms(self.geometry, scene, fit, sample_batch(fit.pool, rays, self.generator), self.generator)
            observed = weighted_loss(self.geometry, terms)
            views = self.views(scene, target)
            sds = self.guidance.loss(views, prompt_for(self.model, target, self.cfg, self.edits), progress)
            loss = observed + self.cfg.sds_weight * sds
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % self.geometry.progress_every == 0 or step == iterations - 1:
                history.append({"step": step, "stage": 2.0, "loss": loss.item(), "sds": sds.item(), "object": float(target)})
                self.ctx.progress((step + 1) / iterations)
        return history

    def edit_eikonal(self, scene: CompositeScene, target: int) -> torch.Tensor:
        """An edited object's only regulariser: its field stays a distance field inside its cube."""
        if target == BACKGROUND_ID:
            box = scene.background.box
            x = box.origin + torch.rand((EIKONAL_POINTS_EDIT, 3), generator=self.generator, device=self.device) * (box.upper - box.origin)
            _, grad = scene.background(x)
            who = torch.zeros(len(x), dtype=torch.long, device=self.device)
            return losses.eikonal_loss(grad, who, 1)
        k = self.object_ids.index(target)
        objects = scene.objects
        extent = (objects.nodes - 1) * objects.voxels[k]
        x = objects.origins[k] + torch.rand((EIKONAL_POINTS_EDIT, 3), generator=self.generator, device=self.device) * extent
        which = torch.full((len(x),), k, dtype=torch.long, device=self.device)
        _, grad = objects.read_own(x, which)
        return losses.eikonal_loss(grad, torch.zeros_like(which), 1)

    def views(self, scene: CompositeScene, target: int) -> GuidanceViews:
        """Renders of the target from the prior's cameras, with the SDS weight per pixel."""
        cfg, norm, device = self.cfg, self.model.normalisation, self.device
        if target == BACKGROUND_ID:
            centres = torch.as_tensor(
                np.array([kf.frame.T_world_camera[:3, 3] for kf in self.ctx.keyframes]), dtype=torch.float32, device=device
            )
            poses, fov = room_cameras(centres, cfg.views_per_step, cfg, self.up, self.generator)
            near = self.ctx.config.frames.min_depth_m / norm.scale
            render = render_views(
                scene.background_sdf,
                scene.density.beta,
                poses,
                fov,
                cfg.render_size,
                norm,
                lambda o, d: sphere_bounds(o, d, min_near=near),
                cfg.samples_per_ray,
                cfg.guide_samples,
                scene.background.box.voxel,
                self.model.visibility,
                self.generator,
            )
            label = "background"
        else:
            k = self.object_ids.index(target)
            objects = scene.objects
            lo = objects.origins[k]
            hi = lo + (objects.nodes - 1) * objects.voxels[k]
            box_lo, box_hi = self.object_box(target)
            center = torch.as_tensor((box_lo + box_hi) / 2, dtype=torch.float32, device=device)
            radius = float(np.linalg.norm(box_hi - box_lo) / 2)
            poses, fov = orbit_cameras(center, radius, cfg.views_per_step, cfg, self.up, self.generator)
            which = torch.tensor(k, device=device)
            render = render_views(
                lambda x: objects.read_own(x, which.expand(len(x))),
                scene.density.beta,
                poses,
                fov,
                cfg.render_size,
                norm,
                lambda o, d: box_bounds(o, d, lo, hi)[:2],
                cfg.samples_per_ray,
                cfg.guide_samples,
                float(objects.voxels[k]),
                self.model.visibility,
                self.generator,
            )
            label = self.model.objects[target].label
        return GuidanceViews(render.maps, self.sds_weight_map(render), poses, fov, target, label)

    def sds_weight_map(self, render: ViewRender) -> torch.Tensor:
        """Per-pixel SDS weight: from the visibility, or 1 everywhere for an edit (its visibility guidance is off)."""
        if self.edits:
            return torch.ones_like(render.visibility)
        return visibility_weight(render.visibility, self.cfg.visibility_low, self.cfg.visibility_high)

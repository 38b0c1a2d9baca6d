"""Colours for the texels no keyframe saw, from the prior: RGB score distillation on renders of the textured
mesh (DP-Recon stage 4).

The texture is optimised as a whole: the observed texels are held to their keyframe colours by a loss of large
weight (`texture.observation_weight`), while the prior's SDS gradient reaches only pixels whose texel was not
observed (its per-pixel weight is the unobserved mask sampled at the pixel's uv). Views orbit the object as
the prior stage's do; the background is seen from where the keyframes were taken, turned to any direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dprecon_ros.core.guidance.base import Guidance, Prompt
from dprecon_ros.core.raster import Rasteriser, project_to_square_views
from dprecon_ros.core.stages.prior.cameras import orbit_cameras, room_cameras
from dprecon_ros.core.stages.prior.config import PriorConfig
from dprecon_ros.core.texture.config import TextureConfig
from dprecon_ros.core.texture.uv import UvMesh

UP_AXIS = 2  # map frame z (REP-103)
NEAR_M, FAR_M = 0.01, 100.0
BACKDROP = 1.0  # white behind the object in its renders, as the prior's object images have


@dataclass
class TextureTarget:
    """What the fit starts from and keeps: the filled texture, the observed colours and where they are."""

    initial: torch.Tensor  # (S, S, 3) in [0, 1]
    observed_colour: torch.Tensor  # (S, S, 3)
    observed: torch.Tensor  # (S, S) bool
    chart: torch.Tensor  # (S, S) bool: texels on the surface (the rest are gutters between charts)


@dataclass
class FitLosses:
    """The fit's losses per step, left on the device until read: a read inside the loop would make the host
    wait for the GPU every step, so the next step's kernels could not queue behind the current one's."""

    values: torch.Tensor  # (steps, 2): the SDS loss and the observed-colour loss

    def rows(self) -> list[dict[str, float]]:
        return [{"sds": sds, "observed": kept} for sds, kept in self.values.tolist()]


@dataclass
class StepViews:
    """What one step's renders need that does not change with the texture: drawn and rasterised ahead."""

    uv: torch.Tensor  # (B, H, W, 2) texture coordinates per pixel
    covered: torch.Tensor  # (B, H, W, 1) 1 where the mesh covers the pixel
    weight: torch.Tensor  # (B, H, W, 1) the SDS weight: the pixel's texel is unobserved (0 off the mesh)


def fit_unseen_texels(
    atlas: UvMesh,
    target: TextureTarget,
    guidance: Guidance,
    prompt: Prompt,
    cfg: TextureConfig,
    prior: PriorConfig,
    rasteriser: Rasteriser,
    iterations: int,
    render_size: int,
    camera_centres: np.ndarray | None,
    check_cancelled: Callable[[], None],
) -> tuple[torch.Tensor, FitLosses]:
    """The optimised (S, S, 3) texture and its losses. `camera_centres` (I, 3): where the keyframes
    were taken, for the background's views; None for an object (orbit views).

    The views of `cfg.views_ahead` steps are rasterised together before those steps run. nvdiffrast's CUDA
    rasteriser waits for the device to finish all queued work before it returns, so rasterising inside each
    step would make the host wait for the previous step's backward pass every step; ahead, it waits once per
    batch of steps, and in between the host queues steps while the device runs them. The views and the results
    are the same as rasterising step by step."""
    device = target.initial.device
    generator = torch.Generator(device=device).manual_seed(prior.seed)
    faces = torch.as_tensor(atlas.faces, dtype=torch.int32, device=device)
    vertices = torch.as_tensor(atlas.vertices, dtype=torch.float32, device=device)
    uv_attr = torch.as_tensor(atlas.uv, dtype=torch.float32, device=device)
    unobserved = (target.chart & ~target.observed).float()[None, ..., None]  # (1, S, S, 1); gutters weigh nothing
    lo, hi = atlas.vertices.min(axis=0), atlas.vertices.max(axis=0)
    centre = torch.as_tensor((lo + hi) / 2, dtype=torch.float32, device=device)
    radius = float(np.linalg.norm(hi - lo) / 2)
    eyes = None if camera_centres is None else torch.as_tensor(camera_centres, dtype=torch.float32, device=device)

    def step_views() -> StepViews:
        if eyes is None:
            poses, fovs = orbit_cameras(centre, radius, prior.views_per_step, prior, UP_AXIS, generator)
        else:
            poses, fovs = room_cameras(eyes, prior.views_per_step, prior, UP_AXIS, generator)
        rast = rasteriser.rasterize(
            project_to_square_views(vertices, poses, fovs, render_size, NEAR_M, FAR_M), faces, (render_size, render_size)
        )
        covered = (rast[..., 3:4] > 0).float()
        uv = rasteriser.interpolate(uv_attr, rast, faces)
        return StepViews(uv, covered, rasteriser.texture(unobserved, uv) * covered)

    texture = target.initial.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([texture], lr=cfg.lr)
    # the mean squared error over the observed texels as a weighted sum: a boolean index reads its size back
    observed_share = target.observed.float()[..., None] / (3 * target.observed.sum()).clamp(min=1)
    losses, ahead = [], []
    for step in range(iterations):
        check_cancelled()
        if not ahead:
            ahead = [step_views() for _ in range(min(cfg.views_ahead, iterations - step))]
        views = ahead.pop(0)
        colour = rasteriser.texture(texture[None], views.uv)
        images = colour * views.covered + BACKDROP * (1 - views.covered)
        sds = guidance.rgb_loss(images.permute(0, 3, 1, 2), views.weight.permute(0, 3, 1, 2), prompt, step / max(1, iterations))
        kept = (((texture - target.observed_colour) ** 2) * observed_share).sum()
        loss = sds + cfg.observation_weight * kept
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            texture.clamp_(0.0, 1.0)
        losses.append(torch.stack([sds.detach(), kept.detach()]).float())
    return texture.detach(), FitLosses(torch.stack(losses) if losses else torch.zeros(0, 2, device=device))

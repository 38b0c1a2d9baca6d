"""Configuration of the `prior` stage (DP-Recon stage 2) and of the guidance it uses; defaults are the paper's
settings (METHOD.md, "Facts from the public code"), sizes scaled for a robot's minutes instead of hours."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from dprecon_ros.config_fields import config_field

log = logging.getLogger("dprecon_ros")


@dataclass
class PriorSizes:
    """What a prior run costs. The GPU defaults are paper-like; `cpu` holds the sizes used on the CPU (tests,
    machines without a GPU), where only tiny guidance models are practical."""

    iterations: int = config_field(
        600, "prior steps (each: observation losses on keyframe rays + SDS on one object's views)", (1, 1_000_000)
    )
    views_per_step: int = config_field(4, "rendered views per SDS step (the paper: 4)", (1, 64))
    render_size: int = config_field(128, "side of the normal + opacity renders scored by the prior (the paper: 128)", (8, 1024))
    latent_size: int = config_field(64, "renders are resized to this side and used directly as latents (the paper: 64)", (4, 256))
    samples_per_ray: int = config_field(48, "samples per ray inside the object's cube for the prior's renders", (4, 1024))
    guide_samples: int = config_field(
        24,
        "uniform samples per ray that find the first surface the render's samples gather around (no gradient; half of"
        " the render's cost at 48)",
        (2, 1024),
    )
    rays_per_batch: int = config_field(1024, "keyframe rays per step for the observation losses", (0, 1_000_000))
    visibility_resolution: int = config_field(128, "visibility grid cells along the scene's longest side (the paper: 256)", (8, 1024))
    visibility_rays_per_image: int = config_field(
        20000, "keyframe rays per image traced to fit the visibility grid (pixels are subsampled evenly)", (16, 10_000_000)
    )
    visibility_samples_per_ray: int = config_field(128, "samples per traced ray when fitting the visibility grid", (8, 4096))


def _cpu_sizes() -> PriorSizes:
    return PriorSizes(
        iterations=40,
        views_per_step=2,
        render_size=64,
        latent_size=32,
        samples_per_ray=24,
        guide_samples=12,
        rays_per_batch=256,
        visibility_resolution=96,
        visibility_rays_per_image=2000,
        visibility_samples_per_ray=48,
    )


@dataclass
class PriorConfig(PriorSizes):
    """Stage 2 of DP-Recon: unseen geometry completed by score distillation from a text-to-image prior,
    weighted by how visible each pixel was to the keyframes."""

    guidance: str = config_field("stable-diffusion", "guidance the prior stage scores renders with (a registered name)")
    model: str = config_field(
        "stabilityai/stable-diffusion-2-1-base",
        "diffusers checkpoint: a local directory, or a Hugging Face id resolved from the local cache (never downloaded)",
        live=False,
    )
    cache_dir: str = config_field(
        "", "Hugging Face cache that `prior.model` ids are looked up in; empty = the default (HF_HUB_CACHE)", live=False
    )
    cpu_preset: bool = config_field(True, "on the CPU, use the sizes in `prior.cpu` instead")
    cpu: PriorSizes = field(default_factory=_cpu_sizes)
    prompt_template: str = config_field("a 3D model of a {label}", "prompt of an object from its label ({label} is replaced)")
    background_prompt: str = config_field("an empty room, walls and floor", "prompt of the background")
    negative_prompt: str = config_field("", "what the prior steers away from (empty: the unconditional prompt)")
    prompts: list[str] = config_field([], "per-object prompt overrides, 'ID=prompt' (e.g. '3=a red teddy bear')")
    guidance_scale: float = config_field(50.0, "classifier-free guidance scale (the paper: 50)", (0.0, 1000.0))
    t_min: list[float] = config_field(
        [0.0625, 0.20, 0.02, 0.125],
        "lowest diffusion timestep (fraction of the schedule) as [start, value, end value, end], start and end as"
        " fractions of the prior's steps (the paper: 0.20 -> 0.02 over prior steps 2.5k-5k of 40k)",
        (0.0, 1.0),
        schedule=True,
    )
    t_max: list[float] = config_field(
        [0.0625, 0.98, 0.40, 0.125], "highest diffusion timestep, annealed like t_min (the paper: 0.98 -> 0.40)", (0.0, 1.0), schedule=True
    )
    sds_weight: float = config_field(1e-5, "weight of the SDS loss relative to the observation losses (the paper: 1e-5)", (0.0, 1e6))
    visibility_low: list[float] = config_field(
        [20.0, 38.0], "SDS weight per latent pixel where visibility V < 0.5: a - b*V (the paper's code: 20 - 38V)", (0.0, 1000.0)
    )
    visibility_high: list[float] = config_field(
        [0.1, 2.0], "... where V >= 0.5: a * (b - b*V) (the paper's code: 0.1 * (2 - 2V)); 0 at V = 1", (0.0, 1000.0)
    )
    elevation_deg: list[float] = config_field([5.0, 30.0], "elevation range of the prior's object cameras (deg)", (-90.0, 90.0))
    fov_deg: list[float] = config_field([40.0, 45.0], "vertical field of view range of the object cameras (deg)", (1.0, 170.0))
    radius: list[float] = config_field(
        [1.0, 1.2],
        "distance range of the object cameras from the box centre, in units of the distance at which the box's"
        " bounding sphere just fills the view (the paper's 0.8-1.0 are canonical-cube units that frame it alike)",
        (0.1, 10.0),
    )
    visibility_smoothing_sigma: float = config_field(
        0.5, "Gaussian smoothing of the visibility grid (cells; the paper: 0.5 over 5^3)", (0.0, 10.0)
    )
    visibility_kernel: int = config_field(5, "side of the smoothing kernel (cells, odd)", (1, 31))
    box_visibility: float = config_field(
        0.5, "an object's box grows into neighbouring cells whose visibility is below this (never observed)", (0.0, 1.0)
    )
    box_growth_max_m: float = config_field(
        0.3, "the most an object's box (and its cube, if needed) grows into unobserved space per side (m)", (0.0, 10.0)
    )
    lr_sdf_voxels: float = config_field(
        0.2,
        "learning rate of the SDF levels during the prior, in finest cells: Adam moves a node about this much a step, so"
        " it bounds how far an unseen surface can travel in an object's share of the steps",
        (1e-6, 10.0),
    )
    lr_coarse_factor: float = config_field(
        0.25,
        "each coarser pyramid level learns this factor slower during the prior; 1 lets its sparse gradients move whole"
        " sides at once but erodes thin parts at small latent sizes (bench/bench_prior.py: table legs at 16^2 latents)",
        (0.0, 1.0),
    )

    edit_iterations_factor: float = config_field(2.0, "an edit runs this many times the prior's steps on its one object", (0.1, 100.0))
    seed: int = config_field(0, "random seed of cameras, timesteps and noise", (0, 2**31 - 1))


def id_and_prompt(entry: str) -> tuple[int, str] | None:
    """'ID=prompt' as (id, prompt), or None when it is not of that form (`prior.prompts`, `--edit`)."""
    key, sep, text = entry.partition("=")
    if not sep or not key.strip().isdigit() or not text.strip():
        return None
    return int(key), text.strip()


def prompt_overrides(entries: list[str]) -> dict[int, str]:
    """`prior.prompts` entries 'ID=prompt' as {id: prompt}; malformed ones are ignored with a warning."""
    out = {}
    for entry in entries:
        parsed = id_and_prompt(entry)
        if parsed is None:
            log.warning("prior.prompts: %r is not 'ID=prompt'; ignored", entry)
            continue
        out[parsed[0]] = parsed[1]
    return out

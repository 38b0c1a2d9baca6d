"""Configuration of the `texture` stage (DP-Recon stage 4); sizes are the paper's on the GPU, smaller on the CPU."""

from __future__ import annotations

from dataclasses import dataclass, field

from dprecon_ros.config_fields import config_field


@dataclass
class TextureSizes:
    """What a texture run costs; `cpu` holds the sizes used without a GPU."""

    object_size: int = config_field(1024, "texture side of an object's atlas (the paper: 1024)", (16, 8192))
    background_size: int = config_field(2048, "texture side of the background's atlas (the paper: 2048)", (16, 8192))
    sds_iterations: int = config_field(
        50,
        "RGB SDS steps per object on its unseen texels when the prior is on (0: fill them from observed neighbours); at 50 an"
        " object took 8.8 s on an H100 (bench/RESULTS.md; the paper runs ~5,000)",
        (0, 100_000),
    )
    render_size: int = config_field(512, "side of the RGB renders the prior scores (Stable Diffusion's VAE: 512)", (16, 2048))


def _cpu_sizes() -> TextureSizes:
    # atlases as large as the GPU's for the background (at 512^2 its ~15k charts blur the floor's checkerboard and
    # held-out views lose 1.2 dB to vertex colours; at 2048^2 they gain 1.5 dB: bench/bench_texture.py); baking is
    # cheap, RGB SDS is what the CPU cannot afford at full size
    return TextureSizes(object_size=512, background_size=2048, sds_iterations=20, render_size=64)


@dataclass
class TextureConfig(TextureSizes):
    """Stage 4 of DP-Recon: each mesh gets a UV atlas coloured from the keyframes where they saw it."""

    cpu_preset: bool = config_field(True, "on the CPU, use the sizes in `texture.cpu` instead")
    cpu: TextureSizes = field(default_factory=_cpu_sizes)
    object_visibility: float = config_field(
        0.3, "texels of objects take keyframe colour where the visibility grid is at least this (the paper: 0.3)", (0.0, 1.0)
    )
    background_visibility: float = config_field(0.1, "... of the background (the paper: 0.1, its panorama is seen from inside)", (0.0, 1.0))
    padding_texels: int = config_field(2, "texels between charts in the atlas (seams are dilated into them)", (0, 64))
    chart_iterations: int = config_field(
        0,
        "xatlas chart refinement iterations: 0 gives more, smaller charts in seconds; 1 (xatlas' default) took 220 s"
        " on a 60k-face background mesh of the sim scene (2 cores)",
        (0, 16),
    )
    unwrap_ahead: int = config_field(
        2,
        "meshes unwrapped ahead of the one being textured, each in its own xatlas process, while the device textures:"
        " the next one, then the largest (0: one after the other)",
        (0, 64),
        fingerprint=False,
    )
    unwrap_timeout_s: float = config_field(
        600.0, "an object whose UV unwrap takes longer keeps its vertex colours", (1.0, 86400.0), fingerprint=False
    )
    depth_tolerance_m: float = config_field(
        0.03,
        "a keyframe pixel colours a texel when its measured depth is within this (plus depth_tolerance_per_m times the depth)"
        " of the texel's: the occlusion test",
        (0.001, 1.0),
    )
    depth_tolerance_per_m: float = config_field(
        0.02, "the occlusion test's tolerance grows by this per metre of depth (sensor noise and mesh error grow with it)", (0.0, 1.0)
    )
    fill_neighbours: int = config_field(
        8, "an unseen texel (without a prior) takes the mean of this many nearest observed ones, in 3D", (1, 256)
    )
    min_facing: float = config_field(
        0.2, "a keyframe colours a texel only where the surface faces it at least this much (cosine)", (0.0, 1.0)
    )
    facing_power: float = config_field(
        2.0, "keyframe colours are averaged with weight cosine^this: head-on views win over grazing ones", (0.0, 16.0)
    )
    views_ahead: int = config_field(
        8,
        "RGB SDS steps whose views are rasterised together, before they run: nvdiffrast waits for the device to"
        " drain at each call, so the host waits once per this many steps (each holds ~16 MB of views at 4 × 512²)",
        (1, 64),
        fingerprint=False,
    )
    observation_weight: float = config_field(
        1e4, "weight of the observed-colour loss next to the SDS loss when the prior is on (the paper: very large)", (0.0, 1e9)
    )
    negative_prompt: str = config_field(
        "shadows, baked lighting, specular highlights, reflections, strong light, dark",
        "what RGB guidance steers away from (lighting baked into the albedo)",
    )
    lr: float = config_field(
        0.05, "Adam learning rate of the texture during RGB SDS (colours in [0, 1]; a texel moves about this much a step)", (1e-6, 10.0)
    )

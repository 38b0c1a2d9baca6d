"""Configuration of the `geometry` stage (DP-Recon stage 1; loss weights and optimiser as in the paper)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dprecon_ros.config_fields import config_field


@dataclass
class GeometrySizes:
    """What a run costs: steps, rays, grid sizes and samples. The GPU defaults are paper-like; `cpu` holds the
    sizes used instead when the stage runs on the CPU (and `cpu_preset` is on)."""

    iterations: int = config_field(
        1500, "optimisation steps (the fields start from the TSDF, so far fewer than the paper's 35k)", (1, 1_000_000)
    )
    rays_per_batch: int = config_field(1024, "rays per step", (8, 1_000_000))
    object_resolution: int = config_field(96, "finest SDF grid nodes along the side of an object's canonical cube", (8, 512))
    background_resolution: int = config_field(128, "finest SDF grid nodes along the scene's longest side", (8, 1024))
    feature_resolution: int = config_field(64, "colour feature grid cells along the scene's longest side", (4, 512))
    samples_coarse: int = config_field(32, "training samples per ray spread over the whole ray", (2, 1024))
    samples_fine: int = config_field(48, "training samples per ray around its measured depth (or the field's first surface)", (2, 1024))
    eikonal_points: int = config_field(
        512, "eikonal points per refitted field and step (half uniform, half near the surface)", (2, 100_000)
    )
    overlap_points: int = config_field(1024, "points per step in the intersections of object boxes (overlap term)", (0, 100_000))
    background_patches: int = config_field(1, "background-only patches rendered per step (background term)", (0, 1000))
    patch_size: int = config_field(32, "side of a background-only patch (pixels; second differences need 3)", (3, 64))
    guide_samples: int = config_field(64, "uniform samples that locate the surface on rays with no measured depth", (2, 4096))


def _cpu_sizes() -> GeometrySizes:
    return GeometrySizes(
        iterations=400,
        rays_per_batch=384,
        object_resolution=48,
        background_resolution=56,
        feature_resolution=32,
        samples_coarse=8,
        samples_fine=16,
        eikonal_points=128,
        overlap_points=256,
        background_patches=1,
        patch_size=6,
        guide_samples=24,
    )


@dataclass
class GeometryConfig(GeometrySizes):
    """Stage 1 of DP-Recon: compositional SDF fields fitted to the keyframes."""

    cpu_preset: bool = config_field(True, "on the CPU, use the sizes in `geometry.cpu` instead (the GPU sizes take hours there)")
    cpu: GeometrySizes = field(default_factory=_cpu_sizes)
    pyramid_levels: int = config_field(3, "levels of each SDF pyramid (each level's cells twice the next finer one's)", (1, 8))
    feature_dim: int = config_field(8, "colour feature channels", (1, 64))
    hidden_dim: int = config_field(64, "width of the colour network", (8, 1024))
    object_margin: float = config_field(0.05, "an object's box extends this fraction of its size beyond the observed points", (0.0, 2.0))
    unseen_growth: float = config_field(
        0.5, "an object's box grows by this fraction of its size on the side facing away from the cameras (unseen backs)", (0.0, 5.0)
    )
    unseen_growth_max_m: float = config_field(0.1, "an object's box grows away from the cameras by at most this much (m)", (0.0, 10.0))
    hull_max_depth_m: float = config_field(
        0.1,
        "the initial hull fills unseen space at most this far behind an observed surface of the object (m): thicker than"
        " furniture panels, so a table top seen from above does not start as a slab; deeper unseen parts are the prior's",
        (0.0, 100.0),
    )
    carve_margin_m: float = config_field(0.015, "depth tolerance of the initial hull carving (m); at least one grid cell", (0.0, 1.0))
    lr_sdf_voxels: float = config_field(0.05, "learning rate of every SDF pyramid level, in finest cells of that field", (1e-5, 10.0))
    lr_coarse_factor: float = config_field(0.25, "each coarser pyramid level learns this factor slower than the next finer one", (0.0, 1.0))
    lr_background_factor: float = config_field(
        0.25, "the background's SDF learns this factor slower (its cells are many times an object's)", (0.0, 10.0)
    )
    lr_beta: float = config_field(0.005, "learning rate of log(beta)", (0.0, 1.0))
    lr_color: float = config_field(0.01, "learning rate of the colour feature grid and network", (1e-6, 1.0))
    lr_final_factor: float = config_field(0.1, "learning rates decay exponentially to this factor at the last step", (1e-4, 1.0))
    adam_beta1: float = config_field(0.9, "Adam's first-moment decay", (0.0, 0.9999))
    adam_beta2: float = config_field(0.99, "Adam's second-moment decay (DP-Recon: 0.99)", (0.0, 0.99999))
    adam_eps: float = config_field(1e-15, "Adam's epsilon; per-cell gradients are tiny, so the paper uses 1e-15", (0.0, 1e-3))
    beta_init_m: float = config_field(
        0.004, "initial VolSDF beta (m); the paper starts at 0.1 scene units from scratch, fields here start at the TSDF", (1e-5, 1.0)
    )
    sample_band_m: float = config_field(0.04, "half width of the fine training samples around the measured depth (m)", (1e-4, 1.0))
    samples_init: int = config_field(64, "error-bounded sampling (evaluation renders): initial uniform samples per ray", (4, 1024))
    samples_final: int = config_field(64, "error-bounded sampling: samples drawn from the opacity bound", (4, 1024))
    samples_extra: int = config_field(32, "error-bounded sampling: extra samples kept from the refined set", (0, 1024))
    sampling_eps: float = config_field(0.1, "error-bounded sampling: opacity error bound", (1e-4, 1.0))
    sampling_iters: int = config_field(5, "error-bounded sampling: refinement rounds", (0, 20))
    w_rgb: float = config_field(1.0, "weight of the RGB L1 loss", (0.0, 1000.0))
    w_depth: float = config_field(
        0.1, "weight of the depth loss (metric with a depth topic, scale-and-shift invariant per image without)", (0.0, 1000.0)
    )
    w_normal_l1: float = config_field(0.05, "weight of the normal L1 loss on surface-crossing rays", (0.0, 1000.0))
    w_normal_cos: float = config_field(0.05, "weight of the normal angular loss on surface-crossing rays", (0.0, 1000.0))
    w_mask: float = config_field(1.0, "weight of the instance loss (binary cross-entropy of object opacity vs masks)", (0.0, 1000.0))
    w_eikonal: float = config_field(0.1, "weight of the eikonal loss (inside each field's grid, averaged per field)", (0.0, 1000.0))
    w_smooth: float = config_field(0.005, "weight of the normal smoothness loss at observed surfaces", (0.0, 1000.0))
    w_overlap: float = config_field(0.5, "weight of the object-violation loss in box intersections", (0.0, 1000.0))
    w_background: float = config_field(
        0.1, "weight of the background depth and normal smoothness on background-only patches", (0.0, 1000.0)
    )
    w_free_space: float = config_field(0.1, "weight of the free-space term: nothing where a depth ray passed", (0.0, 1000.0))
    w_outside_box: float = config_field(0.1, "weight of the term that keeps each object empty outside its (grown) box", (0.0, 1000.0))
    free_space_margin_m: float = config_field(0.03, "free space ends this far before a measured depth (noise tolerance, m)", (0.0, 1.0))
    smooth_offset_m: float = config_field(0.005, "offset between the points compared by the smoothness loss (m)", (1e-5, 1.0))
    near_surface_sigma_m: float = config_field(0.01, "spread of the near-surface eikonal points around measured surfaces (m)", (1e-5, 1.0))
    patch_camera_jitter_m: float = config_field(
        0.1, "virtual cameras of the background term move this far from a keyframe's (m)", (0.0, 5.0)
    )
    mixed_precision: bool = config_field(True, "bf16 autocast for the colour network on CUDA (SDF grids stay float32)")
    progress_every: int = config_field(25, "report progress every this many steps", (1, 100000))
    seed: int = config_field(0, "random seed of ray and point sampling and of the colour network's initial weights", (0, 2**31 - 1))

"""Configuration of the `geometry` stage (DP-Recon stage 1; weights as in the paper)."""

from __future__ import annotations

from dataclasses import dataclass

from dprecon_ros.config_fields import config_field


@dataclass
class GeometryConfig:
    """Stage 1 of DP-Recon: compositional SDF fields fitted to the keyframes (weights as in the paper)."""

    iterations: int = config_field(
        1500, "optimisation steps (the fields start from the TSDF, so far fewer than the paper's 35k)", (1, 1_000_000)
    )
    rays_per_batch: int = config_field(1024, "rays per step", (8, 1_000_000))
    object_resolution: int = config_field(96, "SDF grid cells along an object's longest side", (8, 512))
    background_resolution: int = config_field(128, "SDF grid cells along the scene's longest side", (8, 1024))
    feature_resolution: int = config_field(64, "colour feature grid cells along the scene's longest side", (4, 512))
    feature_dim: int = config_field(8, "colour feature channels", (1, 64))
    hidden_dim: int = config_field(64, "width of the colour network", (8, 1024))
    object_margin: float = config_field(0.15, "object grids extend this fraction of the box size beyond it", (0.0, 2.0))
    carve_margin_m: float = config_field(0.015, "depth tolerance of the initial hull carving (m); at least one grid cell", (0.0, 1.0))
    lr_sdf_voxels: float = config_field(0.05, "learning rate of each SDF grid, in cells of that grid", (1e-5, 10.0))
    lr_beta: float = config_field(0.001, "learning rate of log(beta)", (0.0, 1.0))
    lr_schedule: list[float] = config_field(
        [0.0, 1.0, 1.0, 1.0],
        "learning-rate factor over the steps, [start_step, start_value, end_value, end_step] (linear in between)",
        (0.0, 100.0),
        schedule=True,
    )
    lr_color: float = config_field(0.01, "learning rate of the colour feature grid and network", (1e-6, 1.0))
    beta_init: float = config_field(
        0.005,
        "initial VolSDF beta (scene units, radius 1); the paper starts at 0.1 from scratch, fields here start at the TSDF",
        (1e-5, 1.0),
    )
    samples_init: int = config_field(64, "error-bounded sampling: initial uniform samples per ray", (4, 1024))
    samples_final: int = config_field(64, "error-bounded sampling: samples drawn from the opacity bound", (4, 1024))
    samples_extra: int = config_field(32, "error-bounded sampling: extra samples kept from the refined set", (0, 1024))
    sampling_eps: float = config_field(0.1, "error-bounded sampling: opacity error bound", (1e-4, 1.0))
    sampling_iters: int = config_field(5, "error-bounded sampling: refinement rounds", (0, 20))
    w_rgb: float = config_field(1.0, "weight of the RGB L1 loss", (0.0, 1000.0))
    w_depth: float = config_field(
        0.1, "weight of the depth loss (metric with a depth topic, scale-and-shift invariant without)", (0.0, 1000.0)
    )
    w_normal_l1: float = config_field(0.05, "weight of the normal L1 loss (normals from measured depth)", (0.0, 1000.0))
    w_normal_cos: float = config_field(0.05, "weight of the normal angular loss", (0.0, 1000.0))
    w_mask: float = config_field(1.0, "weight of the instance loss (rendered object opacity vs masks, MSE)", (0.0, 1000.0))
    w_eikonal: float = config_field(0.1, "weight of the eikonal loss", (0.0, 1000.0))
    w_smooth: float = config_field(0.005, "weight of the normal smoothness loss", (0.0, 1000.0))
    w_overlap: float = config_field(0.5, "weight of the object-violation loss (a point inside two objects)", (0.0, 1000.0))
    w_background: float = config_field(0.1, "weight of the background regulariser (background empty on object surfaces)", (0.0, 1000.0))
    smooth_offset: float = config_field(0.01, "offset (scene units) between the points compared by the smoothness loss", (1e-5, 1.0))
    mixed_precision: bool = config_field(True, "bf16 autocast for the colour network on CUDA (SDF grids stay float32)")
    progress_every: int = config_field(25, "report progress every this many steps", (1, 100000))
    seed: int = config_field(0, "random seed of ray and point sampling", (0, 2**31 - 1))

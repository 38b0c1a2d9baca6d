"""Benchmark the texture stage: held-out views rendered from the textured meshes and from the vertex-coloured
meshes the stages before it give (the same geometry), scored against the images those views really saw.

    .venv/bin/python bench/bench_texture.py                               # hard sim scene, 20 views: 10 keyframes, 10 held out
    .venv/bin/python bench/bench_texture.py --backend neural              # meshes of the geometry stage
    .venv/bin/python bench/bench_texture.py --frames BAG_DIR --device cuda  # frames of a dprecon-sim-bag (the GPU machine)
    python3 bench/bench_texture.py --frames BAG_DIR --device cuda --backend full --prior-model DIR --set prior.iterations=10
                                                   # the prior on: unseen texels by RGB SDS (a random-weight checkpoint
                                                   # from bench/build_random_checkpoint.py times it; its colours mean nothing)

Every other view is a keyframe; the views between them are held out, so each is near the keyframes but never
one of them. Per run: PSNR (dB) and SSIM over the pixels the meshes cover (and over the pixels of objects
only), medians over the held-out views; texture time per object (median, and the background's) and for the
whole stage. Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_backends import SCENES, parse_set, write_record  # noqa: E402

from dprecon_ros.config import DpreconConfig, load_config  # noqa: E402
from dprecon_ros.core.mapping.mapper import Mapper  # noqa: E402
from dprecon_ros.core.raster import make_rasteriser  # noqa: E402
from dprecon_ros.core.stages import texture as texture_stage  # noqa: E402
from dprecon_ros.eval.evaluation import format_table  # noqa: E402
from dprecon_ros.eval.render_views import psnr, render_view, scene_meshes, ssim  # noqa: E402

STAGES = {"tsdf": ["fuse", "mesh"], "neural": ["fuse", "geometry", "mesh"], "full": ["fuse", "geometry", "prior", "mesh"]}
SMALL_GEOMETRY = {  # the geometry stage at the CPU bench's sizes (bench_backends' small runs)
    "geometry.iterations": 150,
    "geometry.rays_per_batch": 256,
    "geometry.object_resolution": 48,
    "geometry.background_resolution": 48,
    "geometry.feature_resolution": 32,
}


def load_frames(args) -> tuple[str, list, list]:
    """(scene name, keyframe candidates, held-out frames)."""
    if args.frames:
        from dprecon_ros.io.bags import read_frames

        frames = list(read_frames(args.frames / "bag" if (args.frames / "bag").exists() else args.frames, DpreconConfig()))
        name = f"bag {args.frames}"
    else:
        from dprecon_ros.sim.simulator import RoomSimulator, SimConfig

        scene = {**SCENES[args.scene], **({"arc_deg": args.arc_deg} if args.arc_deg is not None else {})}
        config = SimConfig(num_views=args.views, shuffle_ids=args.shuffle_ids, **scene)
        with RoomSimulator(config) as sim:
            frames = [f for f, _ in sim.frames()]
        name = f"{args.scene} scene, {args.views} views (arc {config.arc_deg:g} deg, {config.width}x{config.height})"
    return name, frames[0::2], frames[1::2]


class ObjectTimer:
    """Wraps the stage's per-object texturing to time each object, and each object's phases."""

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}
        self.phases: dict[int, dict[str, float]] = {}
        self.faces: dict[int, int] = {}
        self._inner = texture_stage.texture_mesh

    def __call__(self, model, state, ctx, rasteriser, unwrapping, guidance=None):
        if ctx.compute.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        before = dict(ctx.timings)
        self.faces[state.object_id] = len(state.mesh.faces)
        mesh = self._inner(model, state, ctx, rasteriser, unwrapping, guidance)
        if ctx.compute.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds[state.object_id] = time.perf_counter() - t0
        self.phases[state.object_id] = {
            k.removeprefix("texture_"): v - before.get(k, 0.0) for k, v in ctx.timings.items() if k.startswith("texture_")
        }
        return mesh


def reconstruct(keyframes, stages: list[str], overrides: dict, args):
    config = load_config(args.config, {**overrides, "reconstruction.stages": stages})
    mapper = Mapper(config)
    for frame in keyframes:
        mapper.add_frame(frame)
    return mapper.reconstruct().reconstruction


def score(recon, held_out, textured: bool, device: torch.device) -> dict:
    rasteriser = make_rasteriser(device)
    scene = scene_meshes(recon, device)
    rows = []
    for frame in held_out:
        rendered, covered = render_view(scene, rasteriser, frame.T_world_camera, frame.intrinsics, textured)
        objects = covered & (frame.instance > 0)
        rows.append(
            {
                "psnr": psnr(rendered, frame.rgb, covered),
                "ssim": ssim(rendered, frame.rgb, covered),
                "psnr_objects": psnr(rendered, frame.rgb, objects) if objects.any() else float("nan"),
                "ssim_objects": ssim(rendered, frame.rgb, objects) if objects.any() else float("nan"),
                "covered": float(covered.mean()),
            }
        )
    return {k: statistics.median(r[k] for r in rows if np.isfinite(r[k])) for k in rows[0]} | {"views": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=Path, help="a dprecon-sim-bag directory (or its bag) instead of the simulator")
    p.add_argument("--scene", choices=sorted(SCENES), default="hard")
    p.add_argument("--views", type=int, default=20, help="simulated views: every other one is a keyframe, the rest held out")
    p.add_argument("--arc-deg", type=float, default=None)
    p.add_argument("--shuffle-ids", action="store_true", help="new instance ids in every frame, like a 2D detector")
    p.add_argument("--backend", choices=sorted(STAGES), default="tsdf", help="the stages whose meshes are textured")
    p.add_argument("--prior-model", type=Path, default=None, help="a diffusers checkpoint for --backend full (prior.model)")
    p.add_argument("--no-baseline", action="store_true", help="skip the vertex-colour run (timing only, e.g. with random weights)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--set", type=parse_set, action="append", default=[], help="KEY=VALUE config override for both runs")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--log-level", default="WARNING", help="the project's log lines (INFO: each stage and object as it goes)")
    args = p.parse_args()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `timeout -s USR1` shows where a slow run is
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    device = torch.device(args.device)
    overrides = {"compute.device": args.device, **(SMALL_GEOMETRY if args.backend != "tsdf" and device.type == "cpu" else {})}
    if args.prior_model is not None:
        overrides["prior.model"] = str(args.prior_model)
    overrides |= dict(args.set)
    name, keyframes, held_out = load_frames(args)
    stages = STAGES[args.backend]

    plain = None if args.no_baseline else reconstruct(keyframes, stages, overrides, args)
    timer = ObjectTimer()
    texture_stage.texture_mesh = timer
    try:
        textured = reconstruct(keyframes, [*stages, "texture"], overrides, args)
    finally:
        texture_stage.texture_mesh = timer._inner
    if plain is not None and [o.object_id for o in plain.objects] != [o.object_id for o in textured.objects]:
        raise SystemExit("the two runs associated different objects")
    before = score(plain, held_out, False, device) if plain is not None else None
    after = score(textured, held_out, True, device)
    object_s = [s for oid, s in timer.seconds.items() if oid != 0]
    result = {
        "scene": name,
        "keyframes": len(keyframes),
        "held_out": len(held_out),
        "backend": args.backend,
        "device": str(device),
        "rasteriser": make_rasteriser(device).name,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "vertex_colours": before,
        "textured": after,
        "texture_s": {
            "stage": textured.timings_s.get("texture", float("nan")),
            "phases": {k: v for k, v in textured.timings_s.items() if k.startswith("texture_")},
            "per_object_median": statistics.median(object_s) if object_s else float("nan"),
            "per_object": {str(k): v for k, v in sorted(timer.seconds.items())},
            "per_object_phases": {str(k): v for k, v in sorted(timer.phases.items())},
            "per_object_faces": {str(k): v for k, v in sorted(timer.faces.items())},
            "background": timer.seconds.get(0, float("nan")),
            "objects": len(object_s),
        },
        "prior_status": textured.prior_status,
        "texture_sizes": {
            k: getattr(texture_stage.texture_sizes(load_config(args.config, overrides).texture, device), k)
            for k in ("object_size", "background_size", "sds_iterations", "render_size")
        },
        "texture_observed_share": {
            str(o.object_id): o.texture_observed_share for o in [*textured.objects, textured.background] if o is not None
        },
    }
    headers = ["meshes", "PSNR dB", "SSIM", "PSNR objects", "SSIM objects", "covered"]
    rows = [
        [name, r["psnr"], r["ssim"], r["psnr_objects"], r["ssim_objects"], r["covered"]]
        for name, r in (("vertex colours", before), ("textured", after))
        if r is not None
    ]
    print(
        f"\n{name}: {len(keyframes)} keyframes, {len(held_out)} held-out views; {args.backend} meshes on {device} ({result['rasteriser']})"
    )
    print(format_table(headers, rows))
    ts = result["texture_s"]
    print(
        f"texture stage {ts['stage']:.1f} s: {ts['objects']} objects at {ts['per_object_median']:.2f} s median each, "
        f"background {ts['background']:.2f} s; atlases {result['texture_sizes']}"
    )
    print("phases (all objects): " + ", ".join(f"{k.removeprefix('texture_')} {v:.1f} s" for k, v in ts["phases"].items()))
    for oid, phases in ts["per_object_phases"].items():
        print(
            f"  object {oid} ({ts['per_object_faces'][oid]} faces): {ts['per_object'][oid]:.2f} s ("
            + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())
            + ")"
        )
    write_record(args.out, "texture", args, result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time the `prior` stage's SDS step on CUDA with Stable Diffusion 2.1-base's architecture and random weights.

The GPU machine cannot download the real weights and an SDS step's cost depends only on the shapes, so the
bench builds a checkpoint from the published configs (bench/configs/sd21_base; random weights, fp16) into a
temporary directory and loads it through `prior.model: <dir>`, the path real weights take. Random weights
make the shapes the prior produces meaningless: only times and memory count.

    BENCH_COMMIT=<sha> python3 bench/bench_prior_gpu.py --frames bench/scenes/gpu/views10_kept    # on the GPU machine
    .venv/bin/python bench/bench_prior_gpu.py --allow-cpu --tiny --skip-stage                    # CPU smoke run

Parts, each guarded (one failing still reports the others; the JSON is rewritten after each):
  checkpoint   build and load times, parameters, dtype, weights' memory;
  sds_step     one SDS step, `guidance.loss(views, prompt, progress)` + backward into the rendered maps, at the
               configured sizes (the paper's: 4 views of 128x128 -> 64x64 latents, classifier-free guidance so
               batch 8 through the UNet, fp16): median over --steps after --warmup, timed with CUDA events; the
               share of the step in the UNet forward (forward hooks); peak CUDA memory above the weights;
  texture_sds  the texture stage's RGB SDS loop (`fit_unseen_texels`: rasterise, VAE-encode, UNet, backward
               through both into the texture, Adam) on a sphere at the texture's object sizes (atlas, renders of
               --set prior.views_per_step views): wall time per step over --steps after --warmup, the UNet's
               and the VAE encoder's forward times; then the same steps with the host waiting for the device
               at each step (`synchronize` as the cancellation check), as a read-back in the loop would make it;
  prior_stage  the whole `prior` stage (Reconstruction.timings_s["prior"]) of a Mapper with the `full` backend
               on the frames of --frames (a dprecon-sim-bag output: bag/ + ground_truth/), with the guidance
               already loaded as in a running node; within it the visibility fit, the renders (forward only) and
               the UNet. The geometry stage before it runs only --geometry-iterations steps: the prior's cost
               does not depend on how long geometry fitted.
On SIGTERM (the run's time limit) the stage reports the prior steps done so far and the JSON is still written.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the checkpoint is local; nothing may be fetched

from bench_backends import package_version, parse_set, source_revision  # noqa: E402
from build_random_checkpoint import CONFIGS, build_random_checkpoint, directory_mb  # noqa: E402

from dprecon_ros.config import DpreconConfig, load_config  # noqa: E402
from dprecon_ros.config_fields import with_sizes  # noqa: E402
from dprecon_ros.core.guidance import stable_diffusion  # noqa: E402, F401  (registers the stable-diffusion guidance)
from dprecon_ros.core.guidance.base import Guidance, GuidanceViews, Prompt, forget_loaded, make_guidance  # noqa: E402
from dprecon_ros.core.guidance.sds import visibility_weight  # noqa: E402
from dprecon_ros.core.pipeline_config import PRESETS  # noqa: E402
from dprecon_ros.core.raster import make_rasteriser  # noqa: E402
from dprecon_ros.core.stages.prior.config import PriorConfig, PriorSizes  # noqa: E402
from dprecon_ros.core.texture.sds_fit import fit_unseen_texels  # noqa: E402
from dprecon_ros.core.texture.uv import unwrap  # noqa: E402
from dprecon_ros.eval.evaluation import format_table  # noqa: E402
from dprecon_ros.testing.texture_targets import half_observed_target  # noqa: E402

MB = 2**20
WARMUP_STEPS = 3
TIMED_STEPS = 20
STAGE_GEOMETRY_ITERATIONS = 50  # geometry only has to leave fields for the prior; ~8 s at full size on an H200
TARGET_PRIOR_S = 180.0  # the target for the whole prior stage of a 10-object scene on one H100
SPHERE_SUBDIVISIONS = 5  # 20,480 faces, as the sim scene's larger objects
SPHERE_RADIUS_M = 0.3
PROMPT = Prompt("a 3D model of a chair")  # negative "" = the unconditional prompt, as the stage's default
DEFAULT_FRAMES = ROOT / "bench" / "scenes" / "gpu" / "views10_kept"
ERROR_CHARS = 200  # of an error in the table (the JSON keeps the traceback)
RANDOM_WEIGHTS_NOTE = "random weights: the shapes the prior makes are meaningless, only times and memory count"


class Interrupted(BaseException):
    """SIGTERM arrived (the run's time limit): report what was measured so far. Not an Exception, so no
    `except Exception` inside the pipeline swallows it."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    def handler(signum, frame):
        raise Interrupted(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Spans:
    """Start/end marks of repeated intervals, read after one synchronisation at the end: CUDA events on a GPU
    (queued work is timed where it runs and nothing stalls the queue), perf_counter on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[tuple] = []
        self._open = None

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def start(self) -> None:
        self._open = self.mark()

    def stop(self) -> None:
        self.marks.append((self._open, self.mark()))

    def ms(self) -> list[float]:
        """Each interval in ms (synchronises the device first)."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in self.marks]
        return [(b - a) * 1000.0 for a, b in self.marks]

    def clear(self) -> None:
        self.marks.clear()

    def __len__(self) -> int:
        return len(self.marks)


class ForwardTimer:
    """Times every forward of a module with pre/post forward hooks and keeps its inputs' shapes."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.spans = Spans(device)
        self.shapes: list[tuple[int, ...]] = []
        self.handles = [module.register_forward_pre_hook(self._pre), module.register_forward_hook(self._post)]

    def _pre(self, module, args) -> None:
        if args and isinstance(args[0], torch.Tensor):
            self.shapes.append(tuple(args[0].shape))
        self.spans.start()

    def _post(self, module, args, output) -> None:
        self.spans.stop()

    def clear(self) -> None:
        self.spans.clear()
        self.shapes.clear()

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def timed(fn: Callable, spans: Spans, first_call: list[float] | None = None) -> Callable:
    """`fn` with each call marked in `spans`; `first_call` receives the wall time of the first call."""

    def wrapper(*args, **kwargs):
        if first_call is not None and not first_call:
            first_call.append(time.perf_counter())
        spans.start()
        try:
            return fn(*args, **kwargs)
        finally:
            spans.stop()

    return wrapper


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"median": statistics.median(ordered), "p10": pick(0.1), "p90": pick(0.9), "min": ordered[0], "max": ordered[-1]}


def cpu_sized(cfg: PriorConfig) -> PriorConfig:
    """The prior's CPU preset sizes (what the stage uses on a CPU; the tiny model's latent size)."""
    return dataclasses.replace(cfg, **{f.name: getattr(cfg.cpu, f.name) for f in dataclasses.fields(PriorSizes)})


class PriorBench:
    """The three parts over one checkpoint, the report they fill, and its JSON file."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args, self.device = args, device
        self.cuda = device.type == "cuda"
        cfg = load_config(args.config, args.set).prior
        self.cfg = cpu_sized(cfg) if args.tiny else cfg
        texture = load_config(args.config, args.set).texture
        self.texture_cfg = with_sizes(texture, texture.cpu) if args.tiny else texture
        self.checkpoint: Path | None = None
        self.guidance: Guidance | None = None
        self.path = args.out / f"prior_gpu_{time.strftime('%Y%m%dT%H%M%S')}.json"
        self.report: dict = {
            "bench": "prior_gpu",
            "note": RANDOM_WEIGHTS_NOTE,
            "source": source_revision(),
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if self.cuda else None,
            "torch": torch.__version__,
            "diffusers": package_version("diffusers"),
            "transformers": package_version("transformers"),
            "machine": platform.platform(),
            "model": "tiny (dprecon_ros/testing/tiny_diffusion.py)" if args.tiny else f"SD 2.1-base architecture ({CONFIGS})",
            "config": str(args.config),
            "set": args.set,
            "target_prior_s": TARGET_PRIOR_S,
        }

    def save(self) -> None:
        self.args.out.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.report, indent=2, default=str))

    def part(self, name: str, fn: Callable[[], dict]) -> None:
        """Run one part; an error is recorded under its name and the others still run."""
        print(f"[{name}] ...", flush=True)
        t0 = time.perf_counter()
        try:
            self.report[name] = fn()
        except Interrupted:
            self.report[name] = {"error": "interrupted (SIGTERM: the run's time limit)"}
            self.save()
            raise
        except Exception as exc:  # noqa: BLE001 - a bench reports every part it can
            self.report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
            print(f"[{name}] failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        print(f"[{name}] {time.perf_counter() - t0:.1f} s", flush=True)
        self.save()

    # --- part 1: the checkpoint -------------------------------------------------------------------------------

    def build_and_load(self, directory: Path) -> dict:
        """Build a random checkpoint into `directory` and load it, or only load the one --checkpoint names."""
        t0 = time.perf_counter()
        if self.args.checkpoint is None:
            build_random_checkpoint(directory, self.device, configs=self.args.configs, seed=self.args.seed, tiny=self.args.tiny)
        else:
            directory = self.args.checkpoint
        synchronize(self.device)
        build_s = time.perf_counter() - t0
        self.checkpoint = directory
        cfg = dataclasses.replace(self.cfg, model=str(directory))
        t0 = time.perf_counter()
        guidance = make_guidance(cfg, self.device)
        synchronize(self.device)
        load_s = time.perf_counter() - t0
        self.guidance = guidance
        unet, text_encoder = guidance.unet, guidance.text_encoder
        c = unet.config
        return {
            "build_s": build_s,
            "load_s": load_s,
            "size_mb": directory_mb(directory),
            "guidance": guidance.describe(),
            "unet_parameters": sum(p.numel() for p in unet.parameters()),
            "text_encoder_parameters": sum(p.numel() for p in text_encoder.parameters()),
            "dtype": str(unet.dtype).removeprefix("torch."),
            "unet": {k: c[k] for k in ("sample_size", "block_out_channels", "attention_head_dim", "cross_attention_dim")},
            "text_encoder": {k: getattr(text_encoder.config, k) for k in ("hidden_size", "num_hidden_layers", "vocab_size")},
            "weights_mb": torch.cuda.memory_allocated(self.device) / MB if self.cuda else None,
        }

    # --- part 2: one SDS step, its UNet share, its memory ----------------------------------------------------

    def views(self) -> GuidanceViews:
        """Rendered-map-shaped inputs with a gradient, and an SDS weight from a random visibility."""
        cfg, device = self.guidance.cfg, self.device
        n, size = cfg.views_per_step, cfg.render_size
        generator = torch.Generator(device=device).manual_seed(self.args.seed)
        maps = torch.rand((n, 4, size, size), generator=generator, device=device).requires_grad_(True)
        visibility = torch.rand((n, 1, size, size), generator=generator, device=device)
        weight = visibility_weight(visibility, cfg.visibility_low, cfg.visibility_high)
        poses = torch.eye(4, device=device).repeat(n, 1, 1)
        return GuidanceViews(maps, weight, poses, torch.full((n,), 0.75, device=device), 1, "chair")

    def sds_step(self) -> dict:
        if self.guidance is None:
            return {"skipped": "no guidance loaded (see checkpoint)"}
        guidance, device, args = self.guidance, self.device, self.args
        views = self.views()
        timer = ForwardTimer(guidance.unet, device)
        steps, total = Spans(device), args.warmup + args.steps
        losses, reached = [], True
        try:
            for i in range(total):
                if i == args.warmup:  # the prompt's embeddings are computed in the warm-up, as once per process in a node
                    synchronize(device)
                    timer.clear()
                    if self.cuda:
                        torch.cuda.reset_peak_memory_stats(device)
                    base = torch.cuda.memory_allocated(device) if self.cuda else 0
                    wall0 = time.perf_counter()
                views.maps.grad = None
                steps.start()
                loss = guidance.loss(views, PROMPT, i / max(1, total - 1))
                loss.backward()
                steps.stop()
                if i >= args.warmup:
                    losses.append(loss.detach())
                    reached = reached and views.maps.grad is not None
            step_ms = steps.ms()[args.warmup :]
            wall_ms = (time.perf_counter() - wall0) * 1000.0 / args.steps
            unet_ms = timer.spans.ms()
            shapes = sorted(set(timer.shapes))
        finally:
            timer.close()
        peak = torch.cuda.max_memory_allocated(device) if self.cuda else None
        cfg = guidance.cfg
        return {
            "views": cfg.views_per_step,
            "render_size": cfg.render_size,
            "latent_size": cfg.latent_size,
            "guidance_scale": cfg.guidance_scale,
            "unet_input_shapes": [list(s) for s in shapes],
            "unet_batch": shapes[0][0] if len(shapes) == 1 else None,
            "unet_calls_per_step": len(unet_ms) / args.steps,
            "steps": args.steps,
            "warmup": args.warmup,
            "step_ms": quantiles(step_ms),
            "wall_ms_per_step": wall_ms,
            "unet_forward_ms": quantiles(unet_ms),
            "unet_share": sum(unet_ms) / sum(step_ms),
            "peak_mb": peak / MB if peak is not None else None,
            "step_extra_mb": (peak - base) / MB if peak is not None else None,
            "loss_finite": bool(torch.isfinite(torch.stack(losses)).all()),
            "gradient_reaches_maps": reached,
        }

    # --- part 3: the texture stage's RGB SDS loop ---------------------------------------------------------------

    def texture_sds(self) -> dict:
        if self.guidance is None:
            return {"skipped": "no guidance loaded (see checkpoint)"}
        import trimesh

        guidance, device, args, cfg = self.guidance, self.device, self.args, self.texture_cfg
        size = cfg.object_size
        sphere = trimesh.creation.icosphere(args.sphere_subdivisions, radius=SPHERE_RADIUS_M)
        t0 = time.perf_counter()
        atlas = unwrap(np.asarray(sphere.vertices), np.asarray(sphere.faces), size, cfg.padding_texels, cfg.chart_iterations)
        unwrap_s = time.perf_counter() - t0
        rasteriser = make_rasteriser(device)
        colours = torch.rand((size, size, 3), generator=torch.Generator(device=device).manual_seed(args.seed), device=device)
        target = half_observed_target(rasteriser, atlas, size, device, colours)  # one half seen, as an object from one side
        observed = target.observed
        guidance.prepare_rgb()
        vae_encoder = guidance.vae().encoder
        fit_args = (guidance, PROMPT, cfg, guidance.cfg, rasteriser)

        def run(steps: int, check_cancelled: Callable[[], None]) -> float:
            """Wall ms per step of `steps` steps, the device drained before and after."""
            synchronize(device)
            t0 = time.perf_counter()
            _, losses = fit_unseen_texels(atlas, target, *fit_args, steps, cfg.render_size, None, check_cancelled)
            synchronize(device)
            wall = (time.perf_counter() - t0) * 1000.0 / steps
            if not bool(torch.isfinite(losses.values).all()):
                raise FloatingPointError("the RGB SDS loss is not finite")
            return wall

        unet, encoder = ForwardTimer(guidance.unet, device), ForwardTimer(vae_encoder, device)
        try:
            if args.warmup:
                run(args.warmup, lambda: None)
            unet.clear()
            encoder.clear()
            if self.cuda:
                torch.cuda.reset_peak_memory_stats(device)
            free_ms = run(args.steps, lambda: None)
            unet_ms, encoder_ms = unet.spans.ms(), encoder.spans.ms()
            unet_shapes, encoder_shapes = sorted(set(unet.shapes)), sorted(set(encoder.shapes))
            synced_ms = run(args.steps, lambda: synchronize(device))
        finally:
            unet.close()
            encoder.close()
        peak = torch.cuda.max_memory_allocated(device) if self.cuda else None
        return {
            "faces": len(atlas.faces),
            "atlas_size": size,
            "unwrap_s": unwrap_s,
            "rasteriser": rasteriser.name,
            "views": guidance.cfg.views_per_step,
            "render_size": cfg.render_size,
            "observed_share": float(observed.float().sum() / target.chart.float().sum()),
            "steps": args.steps,
            "warmup": args.warmup,
            "step_ms": free_ms,
            "step_ms_host_waits_each_step": synced_ms,
            "unet_input_shapes": [list(s) for s in unet_shapes],
            "vae_encoder_input_shapes": [list(s) for s in encoder_shapes],
            "unet_forward_ms": quantiles(unet_ms),
            "vae_encoder_forward_ms": quantiles(encoder_ms),
            "unet_share": sum(unet_ms) / (free_ms * args.steps),
            "vae_encoder_share": sum(encoder_ms) / (free_ms * args.steps),
            "peak_mb": peak / MB if peak is not None else None,
        }

    # --- part 4: the whole prior stage of a scene --------------------------------------------------------------

    def stage_overrides(self) -> dict:
        args = self.args
        overrides = {
            "reconstruction.backend": "full",
            # the preset without its texture stage, which also calls the UNet (bench/bench_texture.py times it)
            "reconstruction.stages": [n for n in PRESETS["full"] if n != "texture"],
            "compute.device": self.device.type,
            "compute.cpu_fallback": False,  # an out-of-memory must fail here, not rerun for ages on the CPU
            "prior.model": str(self.checkpoint),
            "geometry.iterations": args.geometry_iterations,
            "geometry.cpu.iterations": args.geometry_iterations,
        }
        if args.prior_iterations:
            overrides.update({"prior.iterations": args.prior_iterations, "prior.cpu.iterations": args.prior_iterations})
        return {**overrides, **args.set}

    def prior_stage(self) -> dict:
        args = self.args
        if args.skip_stage:
            return {"skipped": "--skip-stage"}
        if self.checkpoint is None:
            return {"skipped": "no checkpoint (see checkpoint)"}
        bag = args.frames / "bag"
        if not bag.is_dir():
            return {"skipped": f"no bag at {bag} (scripts/prepare_device.sh makes it)"}
        from dprecon_ros.core.compute import resolve_device
        from dprecon_ros.core.mapping.mapper import Mapper
        from dprecon_ros.core.stages.prior import stage as prior_module
        from dprecon_ros.io.bags import read_frames

        frames = list(read_frames(bag, DpreconConfig()))
        overrides = self.stage_overrides()
        config = load_config(args.config, overrides)
        guidance = make_guidance(config.prior, resolve_device(config.compute.device))  # the instance the stage will use
        mapper = Mapper(config)
        t0 = time.perf_counter()
        for frame in frames:
            mapper.add_frame(frame)
        ingest_s = time.perf_counter() - t0
        out = {"frames": str(args.frames), "frame_count": len(frames), "keyframes": len(mapper.keyframes), "overrides": overrides}
        out["prior_iterations"] = config.prior.iterations if self.cuda or not config.prior.cpu_preset else config.prior.cpu.iterations
        unet, visibility, renders, started = ForwardTimer(guidance.unet, self.device), Spans(self.device), Spans(self.device), []
        fit, views = prior_module.fit_visibility_grid, prior_module.PriorRun.views
        prior_module.fit_visibility_grid = timed(fit, visibility, started)
        prior_module.PriorRun.views = timed(views, renders)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            recon = mapper.reconstruct().reconstruction
        except Interrupted:
            done = len(unet.spans)
            elapsed = time.perf_counter() - started[0] if started else None
            vis_s = sum(visibility.ms()) / 1000.0 if done else None  # done steps: the one visibility fit has ended
            out.update({"interrupted": True, "ingest_s": ingest_s, "prior_steps_done": done, "prior_elapsed_s": elapsed})
            if elapsed and done:  # the visibility fit once, then the steps at the pace so far
                out |= {"visibility_fit_s": vis_s, "projected_prior_s": vis_s + (elapsed - vis_s) / done * out["prior_iterations"]}
            return out
        finally:
            prior_module.fit_visibility_grid, prior_module.PriorRun.views = fit, views
            unet.close()
        prior_s = recon.timings_s.get("prior")
        unet_s, vis_s, render_s = (sum(s.ms()) / 1000.0 for s in (unet.spans, visibility, renders))
        out.update(
            {
                "prior_status": recon.prior_status,
                "prior_ran": recon.prior_status.startswith("on"),
                "objects": len(recon.objects),
                "background": recon.background is not None,
                "ingest_s": ingest_s,
                "timings_s": dict(recon.timings_s),
                "prior_s": prior_s,
                "prior_steps": len(unet.spans),
                "prior_s_per_step": prior_s / len(unet.spans) if prior_s and len(unet.spans) else None,
                "visibility_fit_s": vis_s,
                "render_forward_s": render_s,
                "unet_forward_s": unet_s,
                "other_s": prior_s - vis_s - render_s - unet_s if prior_s is not None else None,
                "peak_mb": torch.cuda.max_memory_allocated(self.device) / MB if self.cuda else None,
                "meets_target": prior_s is not None and prior_s < TARGET_PRIOR_S,
                "note": RANDOM_WEIGHTS_NOTE,
            }
        )
        return out

    # --- output ---------------------------------------------------------------------------------------------

    def table(self) -> str:
        r, rows = self.report, []
        c, s, p, t = r.get("checkpoint", {}), r.get("sds_step", {}), r.get("prior_stage", {}), r.get("texture_sds", {})
        for name, part in (("checkpoint", c), ("sds_step", s), ("texture_sds", t), ("prior_stage", p)):
            if "error" in part or "skipped" in part:
                rows.append([name, (part.get("error") or f"skipped: {part['skipped']}")[:ERROR_CHARS]])
        if "build_s" in c:
            rows += [
                ["checkpoint build / load s", f"{c['build_s']:.1f} / {c['load_s']:.1f} ({c['size_mb']:.0f} MB, {c['dtype']})"],
                ["UNet / text encoder parameters", f"{c['unet_parameters'] / 1e6:.1f} M / {c['text_encoder_parameters'] / 1e6:.1f} M"],
            ]
        if "step_ms" in s:
            q, u = s["step_ms"], s["unet_forward_ms"]
            rows += [
                [
                    "SDS step sizes",
                    f"{s['views']} views {s['render_size']}^2 -> latents {s['latent_size']}^2, UNet input {s['unet_input_shapes']}",
                ],
                [
                    "SDS step ms (loss + backward)",
                    f"median {q['median']:.2f} (p10 {q['p10']:.2f}, p90 {q['p90']:.2f}), wall {s['wall_ms_per_step']:.2f}",
                ],
                ["UNet forward ms", f"median {u['median']:.2f}, share of the step {s['unet_share']:.0%}"],
                ["peak memory MB (above weights)", "-" if s["peak_mb"] is None else f"{s['peak_mb']:.0f} ({s['step_extra_mb']:.0f})"],
            ]
        if "step_ms" in t:
            rows += [
                [
                    "texture SDS sizes",
                    f"{t['faces']} faces, atlas {t['atlas_size']}^2, {t['views']} views {t['render_size']}^2 ({t['rasteriser']})",
                ],
                [
                    "texture SDS step ms (wall)",
                    f"{t['step_ms']:.1f}; {t['step_ms_host_waits_each_step']:.1f} with the host waiting at each step",
                ],
                [
                    "VAE encoder / UNet forward ms",
                    f"{t['vae_encoder_forward_ms']['median']:.1f} / {t['unet_forward_ms']['median']:.1f}"
                    f" ({t['vae_encoder_share']:.0%} / {t['unet_share']:.0%} of the step)",
                ],
            ]
        if "prior_s" in p:
            status = "meets" if p["meets_target"] else "misses"
            rows += [
                ["prior stage s", f"{p['prior_s']:.1f} ({status} the {TARGET_PRIOR_S:.0f} s target), {p['prior_steps']} steps"],
                ["prior s per step", "-" if p["prior_s_per_step"] is None else f"{p['prior_s_per_step'] * 1000:.1f} ms"],
                ["objects (+ background)", f"{p['objects']} ({'+' if p['background'] else 'no'} background), {p['prior_status']}"],
                [
                    "visibility fit / render fwd / UNet / other s",
                    f"{p['visibility_fit_s']:.1f} / {p['render_forward_s']:.1f} / {p['unet_forward_s']:.1f} / {p['other_s']:.1f}",
                ],
                ["stage peak memory MB", "-" if p["peak_mb"] is None else f"{p['peak_mb']:.0f}"],
            ]
        elif p.get("interrupted"):
            projected = p.get("projected_prior_s")
            rows.append(["prior stage", f"interrupted after {p['prior_steps_done']} steps; projected {projected or 0:.0f} s"])
        return format_table(["measure", "value"], rows)


def choose_device(args: argparse.Namespace, parser: argparse.ArgumentParser) -> torch.device:
    """CUDA, or the CPU only for a smoke run of the tiny model: real-size SDS on a CPU takes most of a minute a step."""
    if args.device != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    if args.device == "cuda":
        parser.error("--device cuda: CUDA is not available here")
    if not (args.allow_cpu and args.tiny):
        parser.error("no CUDA here: this bench times the real SDS step on a GPU (for a CPU smoke run pass --allow-cpu --tiny)")
    return torch.device("cpu")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=Path, default=DEFAULT_FRAMES, help="a dprecon-sim-bag output (bag/ + ground_truth/) for the stage run")
    p.add_argument("--steps", type=int, default=TIMED_STEPS, help="timed SDS steps (median reported)")
    p.add_argument("--warmup", type=int, default=WARMUP_STEPS, help="SDS steps before timing")
    p.add_argument("--geometry-iterations", type=int, default=STAGE_GEOMETRY_ITERATIONS, help="geometry steps before the prior stage")
    p.add_argument("--prior-iterations", type=int, default=0, help="prior steps of the stage run (0 = as configured)")
    p.add_argument(
        "--sphere-subdivisions", type=int, default=SPHERE_SUBDIVISIONS, help="of the texture SDS loop's icosphere (5: 20,480 faces)"
    )
    p.add_argument("--skip-stage", action="store_true", help="only the checkpoint and the SDS step")
    p.add_argument(
        "--set", dest="set", action="append", type=parse_set, default=[], metavar="KEY=VALUE", help="config override (repeatable)"
    )
    p.add_argument("--config", type=Path, default=ROOT / "config" / "dprecon.yaml")
    p.add_argument("--configs", type=Path, default=CONFIGS, help="the SD 2.1-base configs the checkpoint is built from")
    p.add_argument(
        "--checkpoint", type=Path, help="load this checkpoint (bench/build_random_checkpoint.py made it) instead of building one"
    )
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--allow-cpu", action="store_true", help="with --tiny: run on the CPU when there is no CUDA (smoke run)")
    p.add_argument("--tiny", action="store_true", help="the tests' tiny model and the prior's CPU sizes instead of SD 2.1-base")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "bench" / "results")
    args = p.parse_args(argv)
    args.set = dict(args.set)
    if args.checkpoint is not None and not args.checkpoint.is_dir():
        p.error(f"--checkpoint {args.checkpoint}: no such directory")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be at least 1 and --warmup at least 0")
    device = choose_device(args, p)
    bench = PriorBench(args, device)
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="dprecon_sd_random_") as tmp, sigterm_raises():
        try:
            bench.part("checkpoint", lambda: bench.build_and_load(Path(tmp) / "checkpoint"))
            bench.part("sds_step", bench.sds_step)
            bench.part("texture_sds", bench.texture_sds)
            bench.part("prior_stage", bench.prior_stage)
        except Interrupted:
            interrupted = True
        finally:
            bench.guidance = None
            forget_loaded()  # the checkpoint's directory goes with the temporary directory; so does its model
    print(f"\n## prior on {bench.report['gpu'] or device} ({RANDOM_WEIGHTS_NOTE})")
    print(bench.table())
    bench.save()
    print(f"\nwrote {bench.path}")
    return 124 if interrupted or bench.report.get("prior_stage", {}).get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())

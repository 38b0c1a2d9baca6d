"""The GPU prior bench, on the CPU: the SD 2.1-base configs describe the real architecture (counted on the
meta device, no memory), the random-checkpoint builder's real-size path works on shrunk copies of them and
loads through `prior.model` like real weights, and the smoke run (`--allow-cpu --tiny`) times one SDS step
and writes every field the GPU run reports. The real sizes only run on a GPU (bench/run_gpu.sh)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_prior_gpu  # noqa: E402
import build_random_checkpoint as builder  # noqa: E402

from dprecon_ros.core.guidance.base import GuidanceViews, Prompt, forget_loaded, make_guidance  # noqa: E402
from dprecon_ros.core.stages.prior.config import PriorConfig  # noqa: E402

SD21_BASE_UNET_PARAMETERS = 865_910_724  # stabilityai/stable-diffusion-2-1-base unet/
SD21_BASE_TEXT_ENCODER_PARAMETERS = 340_387_840  # its OpenCLIP ViT-H/14 text tower (text_encoder/)
SD21_BASE_VAE_PARAMETERS = 83_653_863  # its AutoencoderKL (vae/)
CLIP_VOCAB = 49408
SMALL_UNET = {"block_out_channels": [32, 64, 64, 64], "attention_head_dim": [2, 4, 4, 4], "cross_attention_dim": 32}
SMALL_UNET |= {"layers_per_block": 1, "sample_size": 16}
SMALL_VAE = {"block_out_channels": [8, 16, 16, 16], "norm_num_groups": 8}
SMALL_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


def test_the_configs_describe_stable_diffusion_2_1_base():
    counts = builder.parameter_counts()
    assert counts == {"unet": SD21_BASE_UNET_PARAMETERS, "vae": SD21_BASE_VAE_PARAMETERS, "text_encoder": SD21_BASE_TEXT_ENCODER_PARAMETERS}
    assert builder.read_config("text_encoder")["vocab_size"] == CLIP_VOCAB
    assert builder.read_config("scheduler")["beta_schedule"] == "scaled_linear"


def shrunk_configs(directory: Path) -> Path:
    """The real configs with narrow layers (vocabulary, schedule and block layout kept)."""
    for part, changes in (("unet", SMALL_UNET), ("vae", SMALL_VAE), ("text_encoder", SMALL_TEXT), ("scheduler", {})):
        (directory / part).mkdir(parents=True)
        (directory / part / builder.PARTS[part]).write_text(json.dumps(builder.read_config(part) | changes))
    return directory


def test_a_built_checkpoint_loads_through_prior_model_like_real_weights(tmp_path):
    path = builder.build_random_checkpoint(tmp_path / "ckpt", "cpu", configs=shrunk_configs(tmp_path / "configs"))
    forget_loaded()
    cfg = dataclasses.replace(PriorConfig(model=str(path)), latent_size=16)
    guidance = make_guidance(cfg, torch.device("cpu"))
    assert guidance.text_encoder.get_input_embeddings().num_embeddings == CLIP_VOCAB  # the real table, a synthetic tokenizer
    assert guidance.train_steps == 1000 and guidance.unet.dtype == torch.float32
    maps = torch.rand(2, 4, 32, 32, requires_grad=True)
    views = GuidanceViews(maps, torch.ones(2, 1, 32, 32), torch.eye(4).repeat(2, 1, 1), torch.full((2,), 0.7), 1, "chair")
    guidance.loss(views, Prompt("a 3D model of a chair"), 0.0).backward()
    assert maps.grad is not None and torch.isfinite(maps.grad).all()
    forget_loaded()


def test_the_cpu_smoke_run_reports_every_part(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_COMMIT", "0123abc")
    args = ["--device", "cpu", "--allow-cpu", "--tiny", "--skip-stage", "--steps", "1", "--warmup", "1", "--out", str(tmp_path)]
    args += ["--sphere-subdivisions", "2", "--set", "texture.cpu.object_size=64", "--set", "texture.cpu.render_size=32"]
    assert bench_prior_gpu.main(args) == 0
    (path,) = tmp_path.glob("prior_gpu_*.json")
    report = json.loads(path.read_text())
    assert report["source"]["commit"] == "0123abc" and "random weights" in report["note"]
    checkpoint, step = report["checkpoint"], report["sds_step"]
    assert checkpoint["build_s"] > 0 and checkpoint["load_s"] > 0 and checkpoint["unet_parameters"] > 0
    assert checkpoint["dtype"] == "float32" and checkpoint["weights_mb"] is None
    views = PriorConfig().cpu.views_per_step
    assert step["views"] == views and step["latent_size"] == PriorConfig().cpu.latent_size
    assert step["unet_batch"] == 2 * views and step["unet_calls_per_step"] == 1  # classifier-free guidance: one batch of both
    assert step["step_ms"]["median"] > 0 and 0 < step["unet_share"] <= 1 and step["unet_forward_ms"]["median"] > 0
    assert step["loss_finite"] and step["gradient_reaches_maps"] and step["peak_mb"] is None
    texture = report["texture_sds"]
    assert texture["faces"] == 320 and texture["atlas_size"] == 64 and texture["render_size"] == 32 and texture["views"] == views
    assert 0.2 < texture["observed_share"] < 0.8  # one side of the sphere
    assert texture["step_ms"] > 0 and texture["step_ms_host_waits_each_step"] > 0
    assert texture["vae_encoder_input_shapes"] == [[views, 3, 32, 32]] and texture["unet_input_shapes"][0][0] == 2 * views
    assert 0 < texture["vae_encoder_share"] < 1 and 0 < texture["unet_share"] < 1
    assert report["prior_stage"] == {"skipped": "--skip-stage"}


def test_without_cuda_only_the_tiny_smoke_run_may_use_the_cpu(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        bench_prior_gpu.main(["--device", "cpu", "--allow-cpu", "--out", str(tmp_path)])
    assert stop.value.code == 2 and "--allow-cpu --tiny" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bench_prior_gpu.main(["--tiny", "--out", str(tmp_path)])
    assert not list(tmp_path.glob("*.json"))

"""Build a checkpoint with Stable Diffusion 2.1-base's architecture and random weights, for GPU benchmarks.

The GPU machine cannot download the real weights, and the cost of an SDS step depends only on the shapes: a
checkpoint built from the published configs kept in bench/configs/sd21_base, saved with `save_pretrained`,
loads through `prior.model: <dir>` (dprecon_ros/core/guidance/stable_diffusion.py) exactly as the real one
does and costs the same. What it scores is meaningless; only times and memory count.

    .venv/bin/python bench/build_random_checkpoint.py DIR                   # real sizes (fp16 on CUDA, fp32 on the CPU)
    .venv/bin/python bench/build_random_checkpoint.py DIR --tiny            # the tests' tiny model, seconds on a CPU

The tokenizer has a small synthetic vocabulary (characters only, no merges): the prompt is embedded once per
process, so its tokens do not matter for timing, while the text encoder keeps the real 49,408-row embedding
table so its weights and memory are the real ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = Path(__file__).resolve().parent / "configs" / "sd21_base"
PARTS = {"unet": "config.json", "vae": "config.json", "text_encoder": "config.json", "scheduler": "scheduler_config.json"}
TOKENIZER_MAX_LENGTH = 77  # CLIP's context, as the real tokenizer_config.json
CONFIG_ONLY_KEYS = ("torch_dtype", "transformers_version", "architectures")  # provenance in the file, not model arguments
DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}


def read_config(part: str, configs: Path = CONFIGS) -> dict:
    """One part's published config as a dict."""
    return json.loads((configs / part / PARTS[part]).read_text())


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 where the guidance runs it in fp16 (CUDA), fp32 on the CPU (as the guidance loads it there)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def build_unet(device: torch.device | str = "cpu", configs: Path = CONFIGS):
    """SD 2.1-base's UNet2DConditionModel with random weights, created directly on `device` (fast on a GPU;
    `meta` gives the architecture without memory, for counting parameters)."""
    from diffusers import UNet2DConditionModel

    with torch.device(device):
        return UNet2DConditionModel.from_config(read_config("unet", configs))


def build_vae(device: torch.device | str = "cpu", configs: Path = CONFIGS):
    """SD 2.1-base's AutoencoderKL (what the texture stage encodes colour renders with) with random weights."""
    from diffusers import AutoencoderKL

    with torch.device(device):
        return AutoencoderKL.from_config(read_config("vae", configs))


def build_text_encoder(device: torch.device | str = "cpu", configs: Path = CONFIGS):
    """SD 2.1-base's CLIP text encoder (OpenCLIP ViT-H/14 text tower, 23 layers) with random weights."""
    from transformers import CLIPTextConfig, CLIPTextModel

    values = {k: v for k, v in read_config("text_encoder", configs).items() if k not in CONFIG_ONLY_KEYS}
    config = CLIPTextConfig.from_dict(values)  # as from_pretrained reads it
    with torch.device(device):
        return CLIPTextModel(config)


def build_tokenizer(vocab_size: int):
    """A CLIP tokenizer over a few characters; every id stays inside the text encoder's embedding table."""
    from transformers import CLIPTokenizer

    from dprecon_ros.testing.tiny_diffusion import SPECIAL, tiny_vocab

    vocab = tiny_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ValueError(f"the synthetic vocabulary ({len(vocab)} tokens) does not fit an embedding table of {vocab_size}")
    return CLIPTokenizer(
        vocab=vocab,
        merges=[],
        unk_token=SPECIAL[1],
        bos_token=SPECIAL[0],
        eos_token=SPECIAL[1],
        pad_token=SPECIAL[1],
        model_max_length=TOKENIZER_MAX_LENGTH,
    )


def build_random_checkpoint(
    directory: Path | str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    configs: Path = CONFIGS,
    seed: int = 0,
    tiny: bool = False,
) -> Path:
    """Save unet/, vae/, text_encoder/, tokenizer/ and scheduler/ under `directory` and return it. The models are
    created on `device` (a GPU initialises 1.2 B parameters in a second, a CPU takes much longer) and saved in
    `dtype` (default: fp16 for CUDA, fp32 for the CPU). `tiny` builds the tests' tiny model instead."""
    directory = Path(directory)
    if tiny:
        from dprecon_ros.testing.tiny_diffusion import build_tiny_checkpoint

        return build_tiny_checkpoint(directory, seed=seed)
    import diffusers

    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    unet = build_unet(device, configs)
    unet.to(dtype).save_pretrained(directory / "unet")
    del unet  # one model at a time on the device
    vae = build_vae(device, configs)
    vae.to(dtype).save_pretrained(directory / "vae")
    del vae
    text_encoder = build_text_encoder(device, configs)
    vocab_size = text_encoder.config.vocab_size
    text_encoder.to(dtype).save_pretrained(directory / "text_encoder")
    del text_encoder
    build_tokenizer(vocab_size).save_pretrained(directory / "tokenizer")
    scheduler_config = read_config("scheduler", configs)
    scheduler = getattr(diffusers, scheduler_config["_class_name"]).from_config(scheduler_config)
    scheduler.save_pretrained(directory / "scheduler")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return directory


def parameter_counts(configs: Path = CONFIGS) -> dict[str, int]:
    """Parameters of the UNet and text encoder the configs describe, built on the meta device (no memory)."""
    return {
        "unet": sum(p.numel() for p in build_unet("meta", configs).parameters()),
        "vae": sum(p.numel() for p in build_vae("meta", configs).parameters()),
        "text_encoder": sum(p.numel() for p in build_text_encoder("meta", configs).parameters()),
    }


def directory_mb(directory: Path) -> float:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("directory", type=Path, help="where to save the checkpoint (prior.model points here)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where the weights are created")
    p.add_argument("--dtype", choices=list(DTYPES), default=None, help="saved precision (default: fp16 on CUDA, fp32 on the CPU)")
    p.add_argument("--configs", type=Path, default=CONFIGS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="the tests' tiny model (dprecon_ros/testing/tiny_diffusion.py)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    path = build_random_checkpoint(args.directory, args.device, DTYPES.get(args.dtype), args.configs, args.seed, args.tiny)
    kind = "tiny" if args.tiny else "SD 2.1-base"
    print(f"built a {kind} checkpoint with random weights at {path}: {directory_mb(path):.0f} MB in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a diffusers checkpoint is on this machine: a local directory, or a Hugging Face id resolved from the
local cache. Nothing is ever downloaded at run time: a robot has no business fetching gigabytes mid-mission,
and a missing checkpoint must turn the prior off with a clear reason instead."""

from __future__ import annotations

import re
from pathlib import Path

from dprecon_ros.core.guidance.base import GuidanceUnavailable

PARTS = ("unet", "text_encoder", "tokenizer", "scheduler")
HUB_ID = re.compile(
    r"[\w.-]+/[\w.-]+"
)  # owner/name, as the Hugging Face hub names models (dots allowed)  # what geometry SDS needs (the VAE is not used)


def locate_checkpoint(model: str, cache_dir: str = "") -> Path:
    """The checkpoint's directory, or GuidanceUnavailable saying what was looked for."""
    if not model:
        raise GuidanceUnavailable("prior.model is empty")
    path = Path(model).expanduser()
    if path.is_dir():
        return check_parts(path)
    if model.startswith((".", "/", "~")) or not HUB_ID.fullmatch(model):
        raise GuidanceUnavailable(f"no checkpoint directory at {path}")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - installed with diffusers
        raise GuidanceUnavailable(f"huggingface_hub is not installed ({exc})") from exc
    try:
        cached = Path(snapshot_download(model, local_files_only=True, cache_dir=cache_dir or None))
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise GuidanceUnavailable(
            f"{model} is not in the local Hugging Face cache{f' at {cache_dir}' if cache_dir else ''} (runs never download it;"
            " put it there or set prior.model to a directory)"
        ) from exc
    return check_parts(cached)


def check_parts(path: Path) -> Path:
    missing = [part for part in PARTS if not (path / part).is_dir()]
    if missing:
        raise GuidanceUnavailable(f"checkpoint {path} lacks {', '.join(missing)}")
    return path

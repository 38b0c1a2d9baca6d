"""Where tensors live: the device and dtype chosen once per run, and what happens when the device is full."""

from __future__ import annotations

import gc
from dataclasses import dataclass

import torch

from dprecon_ros.config_fields import config_field


@dataclass
class ComputeConfig:
    device: str = config_field("auto", "torch device of every stage: auto, cpu, cuda, cuda:N", live=False)
    cpu_fallback: bool = config_field(True, "a stage that runs out of device memory is retried on the CPU")
    cpu_fallback_scale: float = config_field(
        0.5, "sizes (rays per step, grid resolutions, voxel budgets) of a CPU retry, as a fraction", (0.05, 1.0)
    )
    malloc_arenas: int = config_field(
        2,
        "glibc malloc arenas of the node process (0 = the C library's default, 8 per core): fewer arenas keep"
        " memory freed by runs and decoders reusable instead of stranded per thread",
        (0, 1024),
        live=False,
    )
    malloc_mmap_threshold_kb: int = config_field(
        128,
        "allocations at least this large get pages of their own, returned to the OS when freed (0 = glibc's"
        " default, which raises the threshold after each large free until image-sized arrays land on the heap"
        " and fragment it)",
        (0, 32768),
        live=False,
    )


@dataclass(frozen=True)
class Compute:
    """One device and dtype for every stage of a run; `scale` < 1 after an out-of-memory fallback. Fields and
    volumes are float32 (mixed precision is a stage's own choice, e.g. the colour network under bf16)."""

    device: torch.device
    dtype: torch.dtype = torch.float32
    scale: float = 1.0

    @property
    def is_fallback(self) -> bool:
        return self.scale < 1.0

    def cpu_fallback(self, scale: float) -> Compute:
        return Compute(torch.device("cpu"), self.dtype, scale)

    def synchronize(self) -> None:
        """Wait for queued device work, so wall-clock timings mean something."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class DeviceUnavailable(RuntimeError):
    """The configured device does not exist here (CUDA asked for on a machine without it)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {name!r} requested but CUDA is not available")
    return device


def compute_from_config(config: ComputeConfig) -> Compute:
    return Compute(resolve_device(config.device))


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def release_device_memory() -> None:
    """Drop what the failed attempt still referenced, then hand cached blocks back to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

"""Device selection: CUDA with mixed precision when a GPU is there, tuned CPU threads when not.

On CUDA the loop uses ``torch.autocast`` (bfloat16 where the GPU supports it, otherwise
float16 with a ``GradScaler``), keeps the dataset resident on the GPU when it fits in
``AI_FACTORY_GPU_RESIDENT_MAX_MB`` (default 1024), and otherwise streams batches from
pinned host memory with ``non_blocking`` copies. On CPU it runs float32 with
``torch.set_num_threads`` set from ``AI_FACTORY_TORCH_THREADS`` or the cores this process
may use (divided by the number of parallel workers on one machine).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

THREADS_ENV = "AI_FACTORY_TORCH_THREADS"
DEVICE_ENV = "AI_FACTORY_DEVICE"
GPU_RESIDENT_ENV = "AI_FACTORY_GPU_RESIDENT_MAX_MB"


@dataclass(frozen=True)
class DeviceConfig:
    device: torch.device
    amp_dtype: torch.dtype | None
    use_grad_scaler: bool
    pin_memory: bool
    non_blocking: bool
    threads: int
    gpu_resident_max_bytes: int

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> str:
        if self.is_cuda:
            name = torch.cuda.get_device_name(self.device)
            return f"cuda ({name}, amp={self.amp_dtype}, grad_scaler={self.use_grad_scaler})"
        return f"cpu ({self.threads} threads)"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def select_device(prefer: str | None = None, parallel_workers: int = 1) -> DeviceConfig:
    """Pick the device for this process; ``prefer`` is ``auto`` (default), ``cpu`` or ``cuda``."""
    prefer = (prefer or os.environ.get(DEVICE_ENV) or "auto").lower()
    if prefer not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {prefer!r}")
    if prefer == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA device")
    use_cuda = prefer == "cuda" or (prefer == "auto" and torch.cuda.is_available())
    raw_threads = os.environ.get(THREADS_ENV)
    if raw_threads:
        try:
            threads = int(raw_threads)
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={raw_threads!r} is not an integer") from None
    else:
        threads = max(1, available_cores() // max(1, parallel_workers))
    resident_mb = int(os.environ.get(GPU_RESIDENT_ENV, "1024"))
    if use_cuda:
        bf16 = torch.cuda.is_bf16_supported()
        return DeviceConfig(
            device=torch.device("cuda"),
            amp_dtype=torch.bfloat16 if bf16 else torch.float16,
            use_grad_scaler=not bf16,
            pin_memory=True,
            non_blocking=True,
            threads=threads,
            gpu_resident_max_bytes=resident_mb * 1024 * 1024,
        )
    return DeviceConfig(
        device=torch.device("cpu"), amp_dtype=None, use_grad_scaler=False, pin_memory=False,
        non_blocking=False, threads=threads, gpu_resident_max_bytes=0,
    )


def configure_threads(cfg: DeviceConfig) -> None:
    """Apply the thread count (process-wide in torch)."""
    if torch.get_num_threads() != cfg.threads:
        torch.set_num_threads(cfg.threads)
        log.debug("torch intra-op threads set to %d", cfg.threads)

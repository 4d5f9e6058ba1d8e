"""Device selection. No GPU here: the CUDA branch is checked by patching torch's CUDA probes."""

from __future__ import annotations

import pytest
import torch

from ai_factory.training.device import select_device


def test_cpu_config_uses_threads_from_the_environment(monkeypatch):
    monkeypatch.setenv("AI_FACTORY_TORCH_THREADS", "3")
    cfg = select_device("cpu")
    assert cfg.device.type == "cpu" and cfg.threads == 3
    assert cfg.amp_dtype is None and not cfg.pin_memory and not cfg.non_blocking
    monkeypatch.setenv("AI_FACTORY_TORCH_THREADS", "many")
    with pytest.raises(ValueError, match="AI_FACTORY_TORCH_THREADS='many' is not an integer"):
        select_device("cpu")


def test_cuda_request_without_a_gpu_fails_clearly(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        select_device("cuda")
    assert select_device("auto").device.type == "cpu"
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda"):
        select_device("tpu")


@pytest.mark.parametrize(("bf16", "dtype", "scaler"), [(True, torch.bfloat16, False), (False, torch.float16, True)])
def test_cuda_config_enables_mixed_precision_pinned_memory_and_async_copies(monkeypatch, bf16, dtype, scaler):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    monkeypatch.setenv("AI_FACTORY_GPU_RESIDENT_MAX_MB", "256")
    cfg = select_device()
    assert cfg.device.type == "cuda" and cfg.is_cuda
    assert cfg.amp_dtype == dtype and cfg.use_grad_scaler is scaler
    assert cfg.pin_memory and cfg.non_blocking
    assert cfg.gpu_resident_max_bytes == 256 * 1024 * 1024

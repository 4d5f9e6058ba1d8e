"""A trained model on disk: ``model.pt`` (a ``state_dict``), ``model.json`` (everything else) and
``calibration.json`` (the calibrator, decision threshold and training class prior; see
:mod:`ai_factory.training.calibration`; a model directory without it predicts uncalibrated).

``model.json`` carries the dataset spec the model was trained for, the architecture
(:class:`~ai_factory.training.model.ModelConfig`), the preprocessing statistics, the
hyper-parameters and the training history, so a model directory is self-contained: the
registry copies it into a BentoML model version and :class:`~ai_factory.training.predictor.Predictor`
loads it back without the spec file or the training code's defaults.

Weights are loaded with ``torch.load(..., weights_only=True)``: no pickled objects are ever
executed, even from a model store someone else wrote to.
"""

from __future__ import annotations

import io as _io
import logging
from dataclasses import dataclass
from typing import Any

import torch

from ai_factory.spec import DatasetSpec, parse_spec
from ai_factory.training import io
from ai_factory.training.calibration import CALIBRATION_FILE, Calibration, CalibrationError
from ai_factory.training.model import ModelConfig, TabularMLP
from ai_factory.training.preprocess import Preprocessor

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.pt"
META_FILE = "model.json"
FORMAT_VERSION = 1


class ModelFormatError(ValueError):
    """A model directory is incomplete or written by an incompatible version."""


@dataclass
class LoadedModel:
    model: TabularMLP
    preprocessor: Preprocessor
    spec: DatasetSpec
    meta: dict[str, Any]
    calibration: Calibration | None = None


def save_model(directory: str, model: TabularMLP, preprocessor: Preprocessor, meta: dict[str, Any],
               calibration: Calibration | None = None) -> str:
    """Write ``model.pt``, ``model.json`` (and ``calibration.json``) into ``directory`` (any URI)."""
    buf = _io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    io.write_bytes(io.join(directory, WEIGHTS_FILE), buf.getvalue())
    payload = {
        **meta,
        "format_version": FORMAT_VERSION,
        "spec": preprocessor.spec.model_dump(mode="json"),
        "spec_fingerprint": preprocessor.spec.fingerprint(),
        "model_config": model.config.to_dict(),
        "preprocessing": preprocessor.to_dict(),
        "classes": preprocessor.classes,
        "torch_version": torch.__version__,
    }
    if calibration is not None:
        io.write_json(io.join(directory, CALIBRATION_FILE), calibration.to_dict())
    # model.json last: its presence marks a complete directory (load_model checks for it).
    io.write_json(io.join(directory, META_FILE), payload)
    log.info("model written to %s", directory)
    return directory


def load_model(directory: str, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model directory written by :func:`save_model`."""
    meta_uri = io.join(directory, META_FILE)
    weights_uri = io.join(directory, WEIGHTS_FILE)
    for uri in (meta_uri, weights_uri):
        if not io.exists(uri):
            raise ModelFormatError(f"{directory}: not a model directory ({uri.rsplit('/', 1)[-1]} is missing)")
    meta = io.read_json(meta_uri)
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(f"{meta_uri}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
    spec = parse_spec(meta["spec"], source=meta_uri)
    preprocessor = Preprocessor.from_dict(spec, meta["preprocessing"])
    model = TabularMLP(ModelConfig.from_dict(meta["model_config"]))
    state = torch.load(_io.BytesIO(io.read_bytes(weights_uri)), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.to(device)
    model.eval()
    return LoadedModel(model=model, preprocessor=preprocessor, spec=spec, meta=meta,
                       calibration=load_calibration(directory))


def load_calibration(directory: str) -> Calibration | None:
    """The calibration stored beside the weights, or None for a model trained before calibration existed."""
    uri = io.join(directory, CALIBRATION_FILE)
    if not io.exists(uri):
        return None
    payload = io.read_json(uri)
    if not isinstance(payload, dict):
        raise CalibrationError(f"{uri}: expected a JSON object, got {type(payload).__name__}")
    return Calibration.from_dict(payload, source=uri)

"""What the BentoML service needs besides BentoML: which model to serve, its spec, scoring, responses.

``bentos/service.py`` stays a thin adapter over this module, so the logic is importable and
testable without a server.

Which model version is served (first match wins):

1. the Bento argument ``model_tag`` (``bentoml build --arg model_tag=credit_default:<version>``;
   the deployment DAG builds one Bento per version, so a built Bento always serves the version
   it was built for, wherever it runs);
2. ``$AI_FACTORY_MODEL_TAG`` (development: ``bentoml serve`` from source);
3. the registry's ``champion`` alias.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ai_factory.spec import DatasetSpec, TaskType, parse_spec

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

MODEL_TAG_ENV = "AI_FACTORY_MODEL_TAG"
MODEL_TAG_ARG = "model_tag"


class NoModelToServe(LookupError):
    """Neither a Bento argument, the environment nor the registry names a model version."""


def resolve_model_tag(arg: str | None = None) -> str:
    """``name:version`` of the model to serve (see the module docstring for the order)."""
    if arg:
        return arg
    env = os.environ.get(MODEL_TAG_ENV)
    if env:
        return env
    from ai_factory.registry import ModelRegistry

    registry = ModelRegistry.from_settings()
    champion = registry.champion()
    if champion is None:
        raise NoModelToServe(
            f"no model to serve: pass --arg {MODEL_TAG_ARG}=<name:version>, set ${MODEL_TAG_ENV}, or promote a "
            f"champion of '{registry.name}' in {registry.home}"
        )
    return champion.tag


def spec_of_model(model_dir: str | Path) -> DatasetSpec:
    """The dataset spec a model version was trained for (from its ``model.json``)."""
    path = Path(model_dir) / "model.json"
    return parse_spec(json.loads(path.read_text())["spec"], source=str(path))


def decision_threshold(model_dir: str | Path) -> float | None:
    """The binary decision threshold stored with a model version (``calibration.json``), if any."""
    from ai_factory.training.artifacts import load_calibration

    cal = load_calibration(str(model_dir))
    return None if cal is None else cal.threshold


def records_array(spec: DatasetSpec, records: list[dict[str, Any]]) -> np.ndarray:
    """Validated records → an object array ``[n, features]`` in spec column order (``None`` for nulls)."""
    import numpy as np

    names = spec.feature_names
    out = np.empty((len(records), len(names)), dtype=object)
    for i, r in enumerate(records):
        out[i] = [r.get(n) for n in names]
    return out


class Scorer:
    """Turns model outputs into the response objects and prediction-log columns of one spec."""

    def __init__(self, spec: DatasetSpec, classes: list[Any], threshold: float | None = None) -> None:
        self.spec = spec
        self.task = spec.target.task
        self.classes = classes
        self._keys = [str(c) for c in classes]
        # Binary: the positive class when P(positive) >= threshold (chosen on validation, stored
        # with the model: decision_threshold); 0.5 for a model without one.
        self.threshold = 0.5 if threshold is None else float(threshold)

    def outputs(self, predictor: Any, data: Any) -> np.ndarray:
        """Model outputs: ``[n, classes]`` probabilities, or ``[n]`` regression values.

        ``data`` is anything :class:`~ai_factory.training.predictor.Predictor` takes: records, an
        object array from :func:`records_array`, or a DataFrame.
        """
        if self.task == TaskType.REGRESSION:
            return predictor.predict(data)
        return predictor.predict_proba(data)

    def responses(self, outputs: np.ndarray, version: str, warnings: list[list[str]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.task == TaskType.REGRESSION:
            for value, w in zip(outputs.tolist(), warnings, strict=True):
                out.append({"prediction": float(value), "model_version": version, "warnings": w})
            return out
        binary = self.task == TaskType.BINARY
        best = (outputs[:, -1] >= self.threshold).astype(int).tolist() if binary else outputs.argmax(axis=1).tolist()
        for row, b, w in zip(outputs.tolist(), best, warnings, strict=True):
            item: dict[str, Any] = {"prediction": self.classes[b], "model_version": version, "warnings": w,
                                    "probabilities": dict(zip(self._keys, row, strict=True))}
            if binary:
                item["probability"] = row[-1]
                item["threshold"] = self.threshold
            out.append(item)
        return out

    @staticmethod
    def log_columns(responses: list[dict[str, Any]]) -> tuple[list[Any], list[float | None]]:
        return [r["prediction"] for r in responses], [r.get("probability") for r in responses]

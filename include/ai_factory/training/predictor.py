"""Predict with a trained or registered model on a pandas DataFrame or a list of records.

The one inference path every consumer uses (evaluation, the gate, the BentoML service,
the smoke test, drift monitoring)::

    from ai_factory.training.predictor import load_predictor

    predictor = load_predictor("champion")          # or "latest", a version, or "name:version"
    proba = predictor.predict_proba(df)             # [n, classes], calibrated, in predictor.classes order
    labels = predictor.predict(df)                  # class labels (binary: at predictor.threshold) / values
    scored = predictor.predict_frame(df)            # prediction (+ proba_<class>) as a DataFrame

Probabilities are calibrated with the calibrator stored beside the weights (``calibration.json``,
fitted on validation; see :mod:`ai_factory.training.calibration`), and a binary label is the
positive class when ``P(positive) >= predictor.threshold`` (chosen on validation; 0.5 for a
model without one). Evaluation, the gate and serving all go through here, so they agree.

Input frames need the spec's feature columns (extra columns are ignored). Unknown category
values go to the out-of-vocabulary embedding; nulls are imputed with training medians.

Every method also takes a list of records (dicts or pydantic models keyed by feature name) or an
object array ``[n, features]`` in spec column order: the serving path, which skips pandas
(:meth:`Preprocessor.transform_records`) and gives the same numbers as the DataFrame path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import torch

from ai_factory.spec import DatasetSpec, TaskType
from ai_factory.training.artifacts import LoadedModel, load_model
from ai_factory.training.calibration import Calibration
from ai_factory.training.device import select_device
from ai_factory.training.loop import PREDICT_BATCH, TensorSplit, predict_outputs
from ai_factory.training.model import outputs_to_predictions
from ai_factory.training.preprocess import InputError, Preprocessor

log = logging.getLogger(__name__)

#: What the predict methods accept: a DataFrame, a list of records, or an object array in spec column order.
Inputs: TypeAlias = pd.DataFrame | Sequence[Any] | np.ndarray


class Predictor:
    """A loaded model plus its preprocessing; thread-safe for concurrent ``predict`` calls."""

    def __init__(self, loaded: LoadedModel, version: str | None = None, path: str | None = None) -> None:
        self._loaded = loaded
        self.version = version
        self.path = path
        self._device = select_device("cpu")
        loaded.model.eval()

    @classmethod
    def from_dir(cls, directory: str, version: str | None = None) -> Predictor:
        return cls(load_model(directory), version=version, path=directory)

    # -- description -----------------------------------------------------------------------
    @property
    def spec(self) -> DatasetSpec:
        return self._loaded.spec

    @property
    def task(self) -> TaskType:
        return self.spec.target.task

    @property
    def classes(self) -> list[Any]:
        """Class labels in ``predict_proba`` column order (binary: the positive class last)."""
        return list(self._loaded.preprocessor.classes)

    @property
    def preprocessor(self) -> Preprocessor:
        """The fitted preprocessing (training statistics) stored with the model."""
        return self._loaded.preprocessor

    @property
    def feature_names(self) -> list[str]:
        return self.spec.feature_names

    @property
    def metadata(self) -> dict[str, Any]:
        return self._loaded.meta

    @property
    def calibration(self) -> Calibration | None:
        return self._loaded.calibration

    @property
    def threshold(self) -> float | None:
        """Binary decision threshold on ``P(positive)`` (0.5 without a stored one); None for other tasks."""
        if self.task != TaskType.BINARY:
            return None
        cal = self._loaded.calibration
        return cal.threshold if cal is not None and cal.threshold is not None else 0.5

    @property
    def class_prior(self) -> list[float] | None:
        """Class frequencies of the rows the model was trained on (the trivial baseline), if stored."""
        cal = self._loaded.calibration
        return list(cal.prior) if cal is not None and cal.prior else None

    # -- inference -------------------------------------------------------------------------
    def features(self, data: Inputs) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs ``(x_num, x_cat)`` for a DataFrame, a list of records or an object array."""
        pre = self._loaded.preprocessor
        if isinstance(data, pd.DataFrame):
            return pre.transform_features(data)
        if isinstance(data, np.ndarray):
            return pre.transform_array(data)
        if isinstance(data, Sequence) and not isinstance(data, str | bytes):
            return pre.transform_records(data)
        raise InputError(f"expected a pandas DataFrame, a list of records or an array, got {type(data).__name__}")

    def _outputs(self, data: Inputs) -> torch.Tensor:
        x_num, x_cat = self.features(data)
        if len(x_num) <= PREDICT_BATCH:
            # One forward call (what predict_outputs does for this size) without its per-call set-up;
            # inference_mode also skips autograd's version counters.
            with torch.inference_mode():
                return self._loaded.model(torch.from_numpy(x_num), torch.from_numpy(x_cat)).float()
        split = TensorSplit.from_arrays(self.task, x_num, x_cat, np.zeros(len(x_num), dtype="float32"))
        return predict_outputs(self._loaded.model, split, self._device)

    def predict_proba(self, df: Inputs, calibrated: bool = True) -> np.ndarray:
        """Class probabilities ``[n, n_classes]`` (classification models only); ``calibrated=False``: raw model."""
        if self.task == TaskType.REGRESSION:
            raise TypeError("predict_proba is for classification models; this model does regression")
        if len(df) == 0:
            return np.zeros((0, len(self.classes)), dtype="float64")
        logits = self._outputs(df)
        if calibrated and self._loaded.calibration is not None:
            logits = self._loaded.calibration.apply(logits)
        return outputs_to_predictions(self.task, logits).numpy().astype("float64")

    def labels(self, proba: np.ndarray) -> np.ndarray:
        """Class labels for probabilities from :meth:`predict_proba` (binary: at :attr:`threshold`)."""
        if not len(proba):
            return np.array([], dtype=object)
        classes = np.asarray(self.classes, dtype=object)
        if self.task == TaskType.BINARY:
            return classes[(proba[:, 1] >= self.threshold).astype(int)]
        return classes[proba.argmax(axis=1)]

    def predict(self, df: Inputs) -> np.ndarray:
        """Class labels (argmax; binary at :attr:`threshold`) or regression values in target units."""
        if self.task == TaskType.REGRESSION:
            if len(df) == 0:
                return np.zeros(0, dtype="float64")
            raw = self._outputs(df).numpy().astype("float64")
            return self._loaded.preprocessor.inverse_target(raw)
        return self.labels(self.predict_proba(df))

    def predict_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """``prediction`` plus one ``proba_<class>`` column per class, indexed like ``df``."""
        out = pd.DataFrame(index=df.index)
        if self.task == TaskType.REGRESSION:
            out["prediction"] = self.predict(df)
            return out
        proba = self.predict_proba(df)
        out["prediction"] = self.labels(proba) if len(df) else []
        for i, cls in enumerate(self.classes):
            out[f"proba_{cls}"] = proba[:, i]
        return out


def load_predictor(version: str = "champion", model_name: str | None = None, registry: Any = None) -> Predictor:
    """Load a registered version: ``champion`` (the default), ``latest``, a version id or ``name:version``."""
    from ai_factory.registry import ModelRegistry

    reg = registry or ModelRegistry.from_settings(model_name=model_name)
    mv = reg.get(version)
    log.info("loading model %s from %s", mv.tag, mv.path)
    return Predictor.from_dir(str(mv.path), version=mv.version)

"""The drift monitor's reference, taken from the model registry.

:func:`champion_reference` implements :class:`ai_factory.monitoring.assembly.ReferenceProvider`:
it returns the reference sample stored with a registered version (rows of that version's
training window) together with that version's own predictions on those rows and its
holdout metrics, so drift and quality are judged against what the serving model saw and
how well it did. Enable it in the drift config::

    reference:
      provider: "ai_factory.training.reference:champion_reference"
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from ai_factory.spec import DatasetSpec, TaskType

log = logging.getLogger(__name__)


def champion_reference(ds: date, spec: DatasetSpec, model_version: str | None) -> Any:
    """The reference of ``model_version`` (the version that served the day) or of the champion.

    ``None`` when neither exists (no model registered yet): the monitor then falls back to
    the last validated partitions. Deterministic: same version → same frame.
    """
    from ai_factory.monitoring.assembly import Reference
    from ai_factory.monitoring.config import load_config
    from ai_factory.registry import CHAMPION, ModelRegistry, RegistryError
    from ai_factory.training.predictor import Predictor

    registry = ModelRegistry.from_settings(model_name=spec.name)
    version = None
    if model_version:
        try:
            version = registry.get(model_version)
        except RegistryError:
            log.warning("ds=%s was served by %s, which is not in the registry; using the champion", ds,
                        model_version)
    if version is None:
        if registry.champion() is None:
            return None
        version = registry.get(CHAMPION)
    data = registry.reference_sample(version.version)
    predictor = Predictor.from_dir(str(version.path), version=version.version)
    columns = load_config().serving
    if predictor.task == TaskType.REGRESSION:
        data[columns.prediction] = predictor.predict(data)
    else:
        proba = predictor.predict_proba(data)
        data[columns.prediction] = list(predictor.classes[i] for i in proba.argmax(axis=1))
        if predictor.task == TaskType.BINARY:
            data[columns.probability] = proba[:, 1]
    metrics = {k: float(v) for k, v in version.metrics.items() if isinstance(v, int | float)}
    return Reference(data=data, source=f"registry:{version.tag}", model_version=version.version, metrics=metrics)

"""Smoke test: the served endpoint answers like the registry model does offline.

Holdout rows (the newest validated partition) are sent to ``/predict_batch`` and, a few of
them, one by one to ``/predict``; the served probabilities (or regression values) must equal
the registry version's offline :class:`~ai_factory.training.predictor.Predictor` output within
``tolerance`` (absolute), and every response must name the expected model version. The
tolerance only absorbs float32 batch-shape effects (~1e-7); a wrong model, a broken
preprocessing step or a mis-packed Bento is orders of magnitude above it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_ROWS = 64
DEFAULT_SINGLE = 5
DEFAULT_TOLERANCE = 1e-4


class SmokeTestFailed(RuntimeError):
    """The served model did not answer like the registry model; the message has the numbers."""


@dataclass(frozen=True)
class SmokeResult:
    url: str
    version: str
    rows: int
    single_requests: int
    max_abs_diff: float
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def frame_to_records(spec: Any, frame: Any) -> list[dict[str, Any]]:
    """Rows of a validated frame as JSON-ready request records (spec types, nulls as ``None``)."""
    from ai_factory.spec import DType

    casts = {DType.INT: int, DType.FLOAT: float, DType.BOOL: bool, DType.CATEGORY: str}
    out = []
    for row in frame[spec.feature_names].itertuples(index=False, name=None):
        rec = {}
        for f, v in zip(spec.features, row, strict=True):
            missing = v is None or (isinstance(v, float) and math.isnan(v)) or str(v) in ("<NA>", "nan", "NaT")
            rec[f.name] = None if missing else casts[f.dtype](v)
        out.append(rec)
    return out


def served_values(responses: list[dict[str, Any]], task: str, classes: list[Any]) -> list[list[float]]:
    if task == "regression":
        return [[float(r["prediction"])] for r in responses]
    return [[float(r["probabilities"][str(c)]) for c in classes] for r in responses]


def smoke_test(url: str, version: str, *, rows: int = DEFAULT_ROWS, single: int = DEFAULT_SINGLE,
               tolerance: float = DEFAULT_TOLERANCE, registry: Any = None, lake: Any = None,
               timeout: float = 30.0) -> SmokeResult:
    """Compare ``url``'s answers on holdout rows with ``version``'s offline predictions; raise on mismatch."""
    import numpy as np

    from ai_factory.deployment.local import http_post_json
    from ai_factory.registry import ModelRegistry
    from ai_factory.storage import DataLake, Zone
    from ai_factory.training.predictor import Predictor

    registry = registry or ModelRegistry.from_settings()
    lake = lake or DataLake.from_settings()
    mv = registry.get(version)
    predictor = Predictor.from_dir(str(mv.path), version=mv.version)
    days = lake.partitions(Zone.VALIDATED)
    if not days:
        raise SmokeTestFailed(f"no validated partition under {lake.zone_path(Zone.VALIDATED)} to smoke-test with")
    frame = lake.read_partition(Zone.VALIDATED, days[-1]).head(rows).reset_index(drop=True)
    records = frame_to_records(predictor.spec, frame)
    task = predictor.task.value
    expected = (predictor.predict(frame).reshape(-1, 1) if task == "regression"
                else predictor.predict_proba(frame))

    status, body = http_post_json(f"{url}/predict_batch", {"records": records}, timeout=timeout)
    if status != 200:
        raise SmokeTestFailed(f"{url}/predict_batch answered HTTP {status}: {str(body)[:500]}")
    responses = list(body["predictions"])
    for i in range(min(single, len(records))):
        status, one = http_post_json(f"{url}/predict", records[i], timeout=timeout)
        if status != 200:
            raise SmokeTestFailed(f"{url}/predict answered HTTP {status} for holdout row {i}: {str(one)[:500]}")
        responses.append(one)
    versions = {r.get("model_version") for r in responses} | {body.get("model_version")}
    if versions != {mv.version}:
        raise SmokeTestFailed(f"{url} serves model version(s) {sorted(map(str, versions))}, expected {mv.version}")
    served = np.asarray(served_values(responses, task, predictor.classes))
    want = np.concatenate([expected, expected[: min(single, len(records))]])
    diff = np.abs(served - want).max(axis=1)
    worst = int(diff.argmax())
    max_diff = float(diff[worst])
    if not max_diff <= tolerance:
        raise SmokeTestFailed(
            f"{url} disagrees with {mv.tag} offline: max |served - offline| = {max_diff:.6g} on row {worst} of "
            f"{len(records)} holdout rows from {days[-1]} (tolerance {tolerance:g}); served {served[worst].tolist()}, "
            f"offline {want[worst].tolist()}")
    log.info("smoke test passed for %s at %s: %d rows batch + %d single, max |diff| %.3g (tolerance %g)",
             mv.tag, url, len(records), min(single, len(records)), max_diff, tolerance)
    return SmokeResult(url, mv.version, len(records), min(single, len(records)), max_diff, tolerance)

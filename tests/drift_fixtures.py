"""Shared data for the drift tests: validated days, served-prediction days, a toy champion.

The "champion" scores rows with the generator's own undrifted risk rule (no noise), so on
undrifted days its quality matches the reference and under concept drift it degrades,
like a real model would.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ai_factory.data.generate import DriftConfig, DriftKind, generate_day, to_parquet_bytes
from ai_factory.monitoring.assembly import Reference
from ai_factory.spec import DatasetSpec
from ai_factory.storage import DataLake, Zone

MODEL_VERSION = "credit_default:v1"
# The champion's reference sample: rows from before any drift, scored by the champion.
REFERENCE_DAY = date(2025, 12, 1)
REFERENCE_ROWS = 6000


def champion_scores(df: pd.DataFrame) -> np.ndarray:
    """P(default) under the generator's undrifted rule (the main terms, no noise)."""
    logit = (
        -2.3
        - (df["credit_score"] - 680) / 60.0
        + 0.9 * (df["credit_score"] < 580)
        + 1.4 * np.tanh((df["debt_to_income"] - 0.45) * 3.0)
        + 2.7 * np.maximum(df["credit_utilization"] - 0.75, 0)
        + 0.35 * np.minimum(df["num_delinquencies_2y"], 4)
        + 0.22 * np.minimum(df["late_payments_12m"], 5)
        + 0.06 * (df["interest_rate"] - 12)
    )
    return (1.0 / (1.0 + np.exp(-logit.to_numpy(dtype="float64")))).round(6)


def served(df: pd.DataFrame, ds: date, labels: bool = True, version: str = MODEL_VERSION) -> pd.DataFrame:
    """What the serving layer logs for these rows: features, prediction, probability, version, time."""
    out = df.drop(columns=["application_id"]).copy()
    proba = champion_scores(df)
    out["probability"] = proba
    out["prediction"] = (proba >= 0.5).astype("int64")
    out["model_version"] = version
    out["timestamp"] = pd.Timestamp(ds) + pd.to_timedelta(np.arange(len(df)) % 86_400, unit="s")
    if not labels:
        out = out.drop(columns=["default"])
    return out


def drift(kind: str, start: date, strength: float = 1.0) -> DriftConfig:
    return DriftConfig(start=start, kind=DriftKind(kind), strength=strength)


def write_validated(lake: DataLake, ds: date, rows: int, seed: int = 0, cfg: DriftConfig | None = None) -> None:
    df = generate_day(ds, rows, seed=seed, drift=cfg)
    lake.replace_partition(Zone.VALIDATED, ds, {"part-0.parquet": to_parquet_bytes(df)})


def write_predictions(
    lake: DataLake, ds: date, rows: int, cfg: DriftConfig | None = None, labels: bool = True, files: int = 1
) -> pd.DataFrame:
    """Served records for a day, split over ``files`` parquet files like a logging sidecar would."""
    df = served(generate_day(ds, rows, seed=7, drift=cfg), ds, labels=labels)
    parts = np.array_split(np.arange(len(df)), files)
    lake.replace_partition(Zone.PREDICTIONS, ds, {
        f"part-{i:03d}.parquet": to_parquet_bytes(df.iloc[idx].reset_index(drop=True)) for i, idx in enumerate(parts)
    })
    return df


def week_before(lake: DataLake, ds: date, rows: int = 1500) -> None:
    for i in range(1, 8):
        write_validated(lake, ds - timedelta(days=i), rows)


def reference_frame() -> pd.DataFrame:
    return served(generate_day(REFERENCE_DAY, REFERENCE_ROWS, seed=3), REFERENCE_DAY)


def champion_reference(ds: date, spec: DatasetSpec, model_version: str | None) -> Reference:
    """A ReferenceProvider: the champion's scored reference sample (importable by the DAG in tests)."""
    return Reference(data=reference_frame(), source=f"champion {MODEL_VERSION} reference sample",
                     model_version=MODEL_VERSION)


def write_config(path: Path, extra: str = "") -> Path:
    """A drift config that uses :func:`champion_reference` (plus any ``extra`` YAML)."""
    path.write_text("reference:\n  provider: drift_fixtures:champion_reference\n" + extra)
    return path

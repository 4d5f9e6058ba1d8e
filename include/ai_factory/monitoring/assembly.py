"""What a day is compared with what: the current data and the reference.

Current data for ``ds``
    The day's served inputs, ``predictions/ds=…/*.parquet`` (the spec's feature columns plus
    ``prediction``, ``model_version``, ``timestamp``, an optional ``probability`` and the target
    once labels are known). When nothing was served that day: the validated partition
    ``validated/ds=…``. Neither → :class:`NoCurrentDataError` naming both paths; a quarantined
    day → :class:`CurrentDataQuarantined` (the data-quality DAG already failed loudly for it).

Reference
    A :class:`ReferenceProvider` returns the champion's stored reference sample (features and
    target, ideally with the champion's ``prediction``/``probability`` on those rows, which lets
    the report compare quality like for like). When no provider is configured, or it returns
    ``None`` (no champion yet), the reference is the last ``reference.window_days`` validated
    partitions before ``ds``, sampled down to ``reference.max_rows`` rows with a fixed seed.

Planning is split from loading so the DAG can show (and XCom can carry) *what* will be
compared before anything heavy is read: :func:`plan_inputs` returns a small
:class:`InputPlan`; :func:`load_inputs` turns it into DataFrames, deterministically.
"""

from __future__ import annotations

import importlib
import logging
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from ai_factory.monitoring.config import MonitoringConfig
from ai_factory.spec import DatasetSpec, DType
from ai_factory.storage import DataLake, Zone, as_date

log = logging.getLogger(__name__)


class AssemblyError(ValueError):
    """Inputs for a day cannot be assembled; the message names the path and column at fault."""


class NoCurrentDataError(AssemblyError):
    """Neither served predictions nor a validated partition exist for the day."""


class CurrentDataQuarantined(NoCurrentDataError):
    """The day has no validated data because data quality quarantined it."""


class NoReferenceError(AssemblyError):
    """No champion reference and no validated partitions before the day to build one from."""


@dataclass(frozen=True)
class Reference:
    """A reference sample and where it came from.

    ``data`` holds the spec's features (required), the target (for target drift and quality) and
    optionally the model's ``prediction``/``probability`` columns (serving names from the config).
    ``metrics`` are the model's own quality numbers on its holdout (names as in
    :class:`~ai_factory.monitoring.config.QualityMetric`, e.g. ``{"roc_auc": 0.90}``); they are the
    quality baseline when ``data`` has no predictions.
    """

    data: pd.DataFrame
    source: str
    model_version: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


class ReferenceProvider(Protocol):
    """Return the reference for ``ds``, or ``None`` when there is no champion yet.

    ``model_version`` is the version that served most of the day's rows (``None`` when the
    current data is the validated partition): return *that* version's reference sample so a
    re-run or backfill of an old day compares against the model that was serving then.
    Must be deterministic (same arguments → same frame): the DAG calls it once to plan and once
    to load. Configure it as ``reference.provider: "package.module:function"``.
    """

    def __call__(self, ds: date, spec: DatasetSpec, model_version: str | None) -> Reference | None: ...


class CurrentPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: Literal["predictions", "validated"]
    path: str
    # File names inside ``path`` (names, not paths, to keep the XCom small on many-file days).
    files: list[str]
    rows: int
    model_versions: dict[str, int] = {}

    @property
    def model_version(self) -> str | None:
        """The version that served the most rows (ties: the greatest name)."""
        if not self.model_versions:
            return None
        return max(self.model_versions.items(), key=lambda kv: (kv[1], kv[0]))[0]


class ReferencePlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["provider", "window"]
    source: str
    rows: int
    model_version: str | None = None
    provider: str | None = None
    partitions: list[str] = []
    sampled_from: int | None = None


class InputPlan(BaseModel):
    """What a day's drift check compares (small; travels as XCom)."""

    model_config = ConfigDict(frozen=True)

    ds: str
    current: CurrentPlan
    reference: ReferencePlan


def resolve_provider(dotted: str | None) -> ReferenceProvider | None:
    """Import ``package.module:function`` (``None`` → no provider)."""
    if dotted is None:
        return None
    module_name, _, attr = dotted.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AssemblyError(f"reference.provider {dotted!r}: cannot import {module_name!r}: {exc}") from exc
    provider = getattr(module, attr, None)
    if not callable(provider):
        raise AssemblyError(f"reference.provider {dotted!r}: {module_name!r} has no callable {attr!r}")
    return provider


# -- reading ---------------------------------------------------------------------------------
def _parquet_rows(lake: DataLake, path: str) -> int:
    with lake.fs.open(path, "rb") as fh:
        return int(pq.ParquetFile(fh).metadata.num_rows)


def _read_table(lake: DataLake, path: str, wanted: list[str], required: list[str]) -> pa.Table:
    with lake.fs.open(path, "rb") as fh:
        try:
            pf = pq.ParquetFile(fh)
        except (pa.ArrowException, OSError) as exc:
            raise AssemblyError(f"{path}: not a readable Parquet file ({exc})") from None
        present = set(pf.schema_arrow.names)
        missing = [c for c in required if c not in present]
        if missing:
            raise AssemblyError(f"{path}: missing required column(s) {', '.join(missing)}")
        return pf.read(columns=[c for c in wanted if c in present])


def _to_frame(tables: list[pa.Table], wanted: list[str]) -> pd.DataFrame:
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    df = table.to_pandas(strings_to_categorical=True, ignore_metadata=True)
    for col in wanted:
        if col not in df.columns:
            df[col] = pd.Series(np.nan, index=df.index, dtype="float64")
    return df[wanted]


def normalise(df: pd.DataFrame, spec: DatasetSpec, source: str) -> pd.DataFrame:
    """Give the feature columns the dtypes the drift tests expect, or fail naming the column.

    Numeric features become float64 (NaN for missing; exact for integers below 2**53), text
    features pandas ``category`` (counted by code, not by string). Values are not coerced: a
    numeric feature stored as text is an error.
    """
    out = df.copy(deep=False)
    for feature in spec.features:
        col = out[feature.name]
        if feature.dtype.is_numeric:
            if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
                raise AssemblyError(
                    f"{source}: column {feature.name!r} must be numeric ({feature.dtype.value} in the spec), "
                    f"got {col.dtype}"
                )
            out[feature.name] = col.astype("float64")
        elif feature.dtype == DType.CATEGORY and not isinstance(col.dtype, pd.CategoricalDtype):
            out[feature.name] = col.astype("category")
    return out


def _optional_columns(spec: DatasetSpec, config: MonitoringConfig) -> list[str]:
    s = config.serving
    return [spec.target.name, s.prediction, s.probability]


def read_current(lake: DataLake, plan: CurrentPlan, spec: DatasetSpec, config: MonitoringConfig) -> pd.DataFrame:
    """The current rows of a plan: features, then target/prediction/probability (NaN when absent)."""
    wanted = spec.feature_names + _optional_columns(spec, config)
    tables = [_read_table(lake, posixpath.join(plan.path, name), wanted, spec.feature_names) for name in plan.files]
    df = normalise(_to_frame(tables, wanted), spec, plan.path)
    log.info("current data: %d rows from %s (%d file(s))", len(df), plan.path, len(plan.files))
    return df


def _model_versions(lake: DataLake, files: list[str], column: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in files:
        with lake.fs.open(path, "rb") as fh:
            pf = pq.ParquetFile(fh)
            if column not in pf.schema_arrow.names:
                continue
            values = pf.read(columns=[column]).column(column).drop_null()
        for item in pc.value_counts(values).to_pylist():
            key = str(item["values"])
            counts[key] = counts.get(key, 0) + int(item["counts"])
    return dict(sorted(counts.items()))


# -- planning ----------------------------------------------------------------------------------
def inputs_arrived(lake: DataLake, ds: str | date) -> bool:
    """True when the day can be checked (or skipped): served predictions, validated data, or a quarantine."""
    day = as_date(ds)
    arrived = bool(
        any(lake.iter_parquet(Zone.PREDICTIONS, day)) or any(lake.iter_parquet(Zone.VALIDATED, day))
        or lake.partition_exists(Zone.QUARANTINE, day)
    )
    if not arrived:
        log.info("ds=%s: waiting for %s, %s or %s", day, lake.partition_path(Zone.PREDICTIONS, day),
                 lake.partition_path(Zone.VALIDATED, day), lake.partition_path(Zone.QUARANTINE, day))
    return arrived


def plan_current(lake: DataLake, ds: date, config: MonitoringConfig) -> CurrentPlan:
    for zone, source in ((Zone.PREDICTIONS, "predictions"), (Zone.VALIDATED, "validated")):
        files = list(lake.iter_parquet(zone, ds))
        if files:
            rows = sum(_parquet_rows(lake, f) for f in files)
            if rows == 0:
                log.warning("%s holds %d parquet file(s) but no rows; looking further", lake.partition_path(zone, ds),
                            len(files))
                continue
            versions = _model_versions(lake, files, config.serving.model_version) if source == "predictions" else {}
            return CurrentPlan(source=source, path=lake.partition_path(zone, ds),  # type: ignore[arg-type]
                               files=[posixpath.basename(f) for f in files], rows=rows, model_versions=versions)
    pred, val = lake.partition_path(Zone.PREDICTIONS, ds), lake.partition_path(Zone.VALIDATED, ds)
    if lake.partition_exists(Zone.QUARANTINE, ds):
        raise CurrentDataQuarantined(
            f"ds={ds}: no current data to monitor: nothing served ({pred}) and the day was quarantined by "
            f"data quality ({lake.partition_path(Zone.QUARANTINE, ds)})"
        )
    raise NoCurrentDataError(f"ds={ds}: no current data: no parquet files with rows in {pred} nor in {val}")


def _window_partitions(lake: DataLake, ds: date, days: int) -> list[date]:
    return [d for d in lake.partitions(Zone.VALIDATED) if d < ds][-days:]


def plan_reference(
    lake: DataLake,
    ds: date,
    spec: DatasetSpec,
    config: MonitoringConfig,
    provider: ReferenceProvider | None,
    model_version: str | None,
) -> ReferencePlan:
    if provider is not None:
        ref = provider(ds, spec, model_version)
        if ref is not None:
            check_reference(ref, spec, config)
            return ReferencePlan(kind="provider", source=ref.source, rows=len(ref.data),
                                 model_version=ref.model_version, provider=config.reference.provider)
        log.info("reference provider %s has no reference for ds=%s (model %s): using the validated window",
                 config.reference.provider, ds, model_version)
    days = _window_partitions(lake, ds, config.reference.window_days)
    if not days:
        raise NoReferenceError(
            f"ds={ds}: no reference: no champion reference and no validated partitions before {ds} in "
            f"{lake.zone_path(Zone.VALIDATED)}"
        )
    total = sum(_parquet_rows(lake, f) for d in days for f in lake.iter_parquet(Zone.VALIDATED, d))
    rows = min(total, config.reference.max_rows)
    if rows < config.reference.min_rows:
        raise NoReferenceError(
            f"ds={ds}: the reference window {days[0]}..{days[-1]} has {total} rows, fewer than "
            f"reference.min_rows={config.reference.min_rows}"
        )
    return ReferencePlan(
        kind="window", source=f"validated window {days[0]}..{days[-1]} ({len(days)} day(s))", rows=rows,
        partitions=[d.isoformat() for d in days], sampled_from=total if total > rows else None,
    )


def plan_inputs(
    lake: DataLake,
    ds: str | date,
    spec: DatasetSpec,
    config: MonitoringConfig,
    provider: ReferenceProvider | None = None,
) -> InputPlan:
    """Locate the day's current data and choose its reference; reads metadata only."""
    day = as_date(ds)
    current = plan_current(lake, day, config)
    reference = plan_reference(lake, day, spec, config, provider, current.model_version)
    log.info("ds=%s: current %s (%d rows%s) vs reference %s (%d rows)", day, current.path, current.rows,
             f", model {current.model_version}" if current.model_version else "", reference.source, reference.rows)
    return InputPlan(ds=day.isoformat(), current=current, reference=reference)


# -- loading -------------------------------------------------------------------------------------
def check_reference(ref: Reference, spec: DatasetSpec, config: MonitoringConfig) -> None:
    missing = [c for c in spec.feature_names if c not in ref.data.columns]
    if missing:
        raise AssemblyError(f"reference {ref.source!r}: missing feature column(s) {', '.join(missing)}")
    if len(ref.data) < config.reference.min_rows:
        raise AssemblyError(
            f"reference {ref.source!r}: {len(ref.data)} rows, fewer than reference.min_rows={config.reference.min_rows}"
        )


def sample_rows(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows drawn uniformly without replacement (all of ``df`` when it is not larger)."""
    if len(df) <= n:
        return df
    idx = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    return df.iloc[idx].reset_index(drop=True)


def day_seed(base: int, ds: str | date) -> int:
    """A seed that differs per day but is the same on every re-run of that day."""
    return base * 1_000_003 + as_date(ds).toordinal()


def _quotas(sizes: list[int], total: int) -> list[int]:
    """Split ``total`` rows over partitions in proportion to their sizes (largest remainders first)."""
    n = sum(sizes)
    exact = [total * k / n for k in sizes]
    quotas = [int(e) for e in exact]
    for i in sorted(range(len(sizes)), key=lambda i: (quotas[i] - exact[i], i))[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def _read_window(
    lake: DataLake, days: list[str], wanted: list[str], spec: DatasetSpec, max_rows: int, seed: int
) -> pd.DataFrame:
    """The window's rows; above ``max_rows``, a stratified sample (each day in proportion to its rows).

    Days are read and sampled one at a time, so a window of large days never sits in memory whole.
    """
    files = {d: list(lake.iter_parquet(Zone.VALIDATED, d)) for d in days}
    sizes = [sum(_parquet_rows(lake, f) for f in files[d]) for d in days]
    quotas = _quotas(sizes, max_rows) if sum(sizes) > max_rows else sizes
    frames = []
    for i, d in enumerate(days):
        frame = _to_frame([_read_table(lake, p, wanted, spec.feature_names) for p in files[d]], wanted)
        frames.append(sample_rows(frame, quotas[i], seed + i))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def load_reference(
    lake: DataLake,
    plan: InputPlan,
    spec: DatasetSpec,
    config: MonitoringConfig,
    provider: ReferenceProvider | None,
) -> Reference:
    rp = plan.reference
    wanted = spec.feature_names + _optional_columns(spec, config)
    if rp.kind == "provider":
        if provider is None:
            raise AssemblyError(f"ds={plan.ds}: the plan uses reference provider {rp.provider!r} but none was given")
        ref = provider(as_date(plan.ds), spec, plan.current.model_version)
        if ref is None:
            raise AssemblyError(f"ds={plan.ds}: reference provider {rp.provider!r} returned no reference on reload")
        check_reference(ref, spec, config)
        data = ref.data.copy()
        for col in wanted:
            if col not in data.columns:
                data[col] = np.nan
        return Reference(data=normalise(data[wanted], spec, f"reference {ref.source!r}"), source=ref.source,
                         model_version=ref.model_version, metrics=dict(ref.metrics))
    data = _read_window(lake, rp.partitions, wanted, spec, config.reference.max_rows,
                        day_seed(config.reference.seed, plan.ds))
    source = posixpath.join(lake.zone_path(Zone.VALIDATED), f"ds={{{','.join(rp.partitions)}}}")
    return Reference(data=normalise(data, spec, source), source=rp.source)


def load_inputs(
    lake: DataLake,
    plan: InputPlan,
    spec: DatasetSpec,
    config: MonitoringConfig,
    provider: ReferenceProvider | None = None,
) -> tuple[pd.DataFrame, Reference]:
    """The current frame and the reference of a plan (same plan → same frames)."""
    current = read_current(lake, plan.current, spec, config)
    reference = load_reference(lake, plan, spec, config, provider)
    return current, reference


"""Build the GX expectation suite from the dataset spec and a reference window.

Two kinds of expectations, told apart by GX severity:

* ``critical`` — the contract a partition must meet to be published: the exact column set
  (features, target, and the spec's id, time and ``ignore`` columns, which are kept but never modelled),
  each column present, its type, nulls where the spec forbids them, numeric ranges, allowed
  categories, the target's classes, a unique id and the row count. One failure quarantines
  the day.
* ``warning`` — distribution expectations learned from a reference window of validated days
  (each numeric column's mean and quantiles). They show in Data Docs but do not block: a moving
  distribution is drift, which the Evidently monitor judges against the champion's reference,
  not a broken file. Without a reference the suite is the contract alone.

A distribution band is the day's sampling noise plus the spec's tolerance. A day of ``n`` rows
drawn from the reference distribution has a mean within ``z`` standard errors
``std·sqrt(1/n + 1/N)`` of the reference's (``N`` reference rows: its own estimate is noisy
too), and a ``q``-quantile between the reference's quantiles at ``q ∓ z·sqrt(q(1-q)·(1/n + 1/N))``
(the order-statistic bound: distribution-free, so skewed and discrete columns get honest bands).
``n`` is the smallest reference day's row count, so days as small as the ones learned from stay
quiet; ``z`` is ``AI_FACTORY_QUALITY_NOISE_Z``. On top of the noise, ``tolerance × std`` is the
shift worth a warning however large the day.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ai_factory.spec import DatasetSpec, DType, TaskType

log = logging.getLogger(__name__)

CRITICAL = "critical"
WARNING = "warning"

# GX type names (as GX resolves them against pandas dtypes) accepted for each spec dtype.
# Category features have no entry: GX 1.24's type-list check cannot match pandas'
# ``category`` dtype (what the reader produces for strings), and the allowed-values check
# already rejects anything that is not one of the spec's category strings.
TYPE_LISTS: dict[DType, list[str]] = {
    DType.INT: ["Int64Dtype", "int64", "int32"],
    DType.FLOAT: ["float64", "float32", "Float64Dtype", "Int64Dtype", "int64"],
    DType.BOOL: ["BooleanDtype", "bool"],
}


@dataclass(frozen=True)
class ColumnStats:
    mean: float
    std: float
    quantiles: dict[float, float]
    # The mean's noise band half-width (z standard errors) for a day of ``day_rows`` rows.
    mean_noise: float
    # Per quantile, the reference's quantiles at q ∓ z·se(q): where a day's q-quantile falls.
    quantile_bands: dict[float, tuple[float, float]]
    day_rows: int


def reference_stats(spec: DatasetSpec, reference: pd.DataFrame, day_rows: int | None = None,
                    z: float | None = None) -> dict[str, ColumnStats]:
    """Mean, std, the spec's quantiles and their noise bands for each numeric feature.

    ``day_rows``: the size of the days the bands are for (default: the reference's own size);
    ``z``: standard errors of noise allowed (default: ``AI_FACTORY_QUALITY_NOISE_Z``).
    """
    if reference.empty:
        raise ValueError("the reference window is empty: cannot learn distribution expectations")
    if z is None:
        from ai_factory.settings import get_settings

        z = get_settings().quality_noise_z
    n_day = max(1, int(day_rows or len(reference)))
    stats = {}
    qs = list(spec.quality.quantiles)
    for f in spec.numeric_features:
        if f.name not in reference.columns:
            raise ValueError(f"the reference window has no column {f.name!r}: were its days validated under another spec?")
        col = pd.to_numeric(reference[f.name], errors="coerce").astype("float64").dropna()
        if col.empty:
            raise ValueError(f"reference column {f.name!r} has no non-null values")
        scale = math.sqrt(1.0 / min(n_day, len(col)) + 1.0 / len(col))
        std = float(col.std(ddof=0))
        # A reference that never saw a rare value (a pixel almost always 0) has a std near 0 and a
        # zero-width band that one such value in a day breaks; one pseudo-observation across the
        # spec's range bounds that, and fades as the reference grows.
        span = (f.max - f.min) if f.min is not None and f.max is not None else 0.0
        noise_std = math.sqrt(std * std + span * span / len(col))
        bands = {}
        for q in qs:
            spread = z * math.sqrt(q * (1.0 - q)) * scale
            lo, hi = col.quantile([max(0.0, q - spread), min(1.0, q + spread)])
            bands[float(q)] = (float(lo), float(hi))
        stats[f.name] = ColumnStats(
            mean=float(col.mean()), std=std, quantiles={float(k): float(v) for k, v in col.quantile(qs).items()},
            mean_noise=z * noise_std * scale, quantile_bands=bands, day_rows=n_day,
        )
    return stats


def _clip(value: float, lo: float | None, hi: float | None) -> float:
    if lo is not None:
        value = max(value, lo)
    if hi is not None:
        value = min(value, hi)
    return value


def expectation_configs(spec: DatasetSpec, stats: dict[str, ColumnStats] | None = None) -> list[dict[str, Any]]:
    """The suite as a list of ``{"type", "kwargs", "severity", "meta"}`` dicts (pure, testable)."""
    out: list[dict[str, Any]] = []

    def add(kind: str, severity: str = CRITICAL, rule: str = "", **kwargs: Any) -> None:
        out.append({"type": kind, "kwargs": kwargs, "severity": severity, "meta": {"rule": rule}})

    add("expect_table_columns_to_match_set", rule="schema", column_set=spec.landing_columns, exact_match=True)
    add("expect_table_row_count_to_be_between", rule="row_count",
        min_value=spec.quality.min_rows, max_value=spec.quality.max_rows)
    for f in spec.features:
        add("expect_column_to_exist", rule="schema", column=f.name)
        if f.dtype in TYPE_LISTS:
            add("expect_column_values_to_be_in_type_list", rule="dtype", column=f.name, type_list=TYPE_LISTS[f.dtype])
        if not f.nullable:
            add("expect_column_values_to_not_be_null", rule="nulls", column=f.name)
        if f.dtype.is_numeric and (f.min is not None or f.max is not None):
            add("expect_column_values_to_be_between", rule="range", column=f.name, min_value=f.min, max_value=f.max)
        if f.dtype == DType.CATEGORY:
            add("expect_column_values_to_be_in_set", rule="categories", column=f.name, value_set=list(f.categories or []))
    t = spec.target
    add("expect_column_to_exist", rule="schema", column=t.name)
    add("expect_column_values_to_not_be_null", rule="nulls", column=t.name)
    if t.task == TaskType.REGRESSION:
        add("expect_column_values_to_be_in_type_list", rule="dtype", column=t.name, type_list=TYPE_LISTS[DType.FLOAT])
    else:
        add("expect_column_values_to_be_in_set", rule="categories", column=t.name, value_set=list(t.classes or []))
    if spec.id_column:
        add("expect_column_values_to_not_be_null", rule="nulls", column=spec.id_column)
        add("expect_column_values_to_be_unique", rule="unique", column=spec.id_column)

    for name, s in (stats or {}).items():
        f = spec.feature(name)
        half = spec.quality.mean_tolerance * s.std + s.mean_noise
        add("expect_column_mean_to_be_between", severity=WARNING, rule="distribution", column=name,
            min_value=_clip(s.mean - half, f.min, f.max), max_value=_clip(s.mean + half, f.min, f.max))
        qslack = spec.quality.quantile_tolerance * s.std
        add("expect_column_quantile_values_to_be_between", severity=WARNING, rule="distribution", column=name,
            quantile_ranges={
                "quantiles": list(s.quantile_bands),
                "value_ranges": [[_clip(lo - qslack, f.min, f.max), _clip(hi + qslack, f.min, f.max)]
                                 for lo, hi in s.quantile_bands.values()],
            })
    return out


def build_suite(spec: DatasetSpec, stats: dict[str, ColumnStats] | None = None,
                reference: dict[str, Any] | None = None) -> Any:
    """A ``gx.ExpectationSuite`` named after the dataset; ``reference`` says where its distributions came from."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.metadata_types import FailureSeverity

    import great_expectations as gx

    meta: dict[str, Any] = {"spec_fingerprint": spec.fingerprint(), "spec_version": spec.version,
                            "distributions": reference if stats else "none (the spec's contract alone)"}
    suite = gx.ExpectationSuite(name=spec.name, meta=meta)
    for cfg in expectation_configs(spec, stats):
        conf = ExpectationConfiguration(
            type=cfg["type"], kwargs=cfg["kwargs"], meta=cfg["meta"], severity=FailureSeverity(cfg["severity"])
        )
        suite.add_expectation(conf.to_domain_obj())
    return suite

"""The fast path: Evidently's default per-column drift tests, on every row, in a fraction of the time.

Evidently 0.7's ``DataDriftPreset`` picks one test per column (``evidently.legacy.calculations.
stattests.registry._get_default_stattest``); with the defaults the decision of a column is:

=================  ===========================  ==========================================  =========
reference rows     column                       test (Evidently name)                       drift if
=================  ===========================  ==========================================  =========
> 1000             numerical, > 5 values        Wasserstein distance / std(ref) (wasserstein)  >= 0.1
> 1000             numerical, <= 5 values       Jensen-Shannon distance (jensenshannon)      >= 0.1
> 1000             categorical                  Jensen-Shannon distance (jensenshannon)      >= 0.1
<= 1000            numerical, > 5 values        two-sample K-S p-value (ks)                  <= 0.05
<= 1000            numerical/categorical, 3-5   chi-square p-value (chisquare)               < 0.05
<= 1000            numerical/categorical, <= 2  proportions z-test p-value (z)               < 0.05
=================  ===========================  ==========================================  =========

(rows and "values" are counted after dropping nulls and infinities, as Evidently does; "values"
is the number of distinct values in reference and current together.)

The first three rows are the ones that matter at scale. They are computed here natively with
the same arithmetic as Evidently/scipy (``scipy.stats.wasserstein_distance`` and
``scipy.spatial.distance.jensenshannon`` over value shares), skipping what makes the preset slow
on large days: a second, legacy computation for rendering, correlation matrices, histograms and
per-column DataFrame copies. The small-reference tests are delegated to Evidently's own
implementations (the reference is small, so they are fast). Columns run in a thread pool: numpy
releases the GIL while it sorts, which is most of the work.

The result is the same score (to floating-point rounding) and the same decision as Evidently's
full computation; ``tests/test_drift_fast_path.py`` checks that on drifted and undrifted days.

Any finite value is safe. A served value such as ``annual_income = 1.7e308`` would make every
range-based computation overflow (Evidently's 10-bin histograms raise ``Too many bins``; the
Wasserstein distance and the std become ``inf``/``nan``). So before any test or report, the
finite values of a numerical column are clipped to the *reference's* range widened by
:data:`CLIP_SPANS` spans (:func:`numeric_bounds`: from its 1st and 99th percentiles, so the
bounds come from where the reference's data is, never from the extreme values themselves).
Real data stays inside those bounds and is untouched; an absurd value still counts, at the
bound, as far-away mass, and the number clipped per column is in ``summary.json``
(``current_clipped``, ``reference_clipped``). NaN and ±inf are dropped, as Evidently does.
The fast path and the Evidently report see the same clipped values (:func:`bound_frames`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import distance

log = logging.getLogger(__name__)

# Evidently switches from p-value tests to distances above this many reference rows.
LARGE_REFERENCE_ROWS = 1000
# ... and treats a numerical column with at most this many distinct values like a categorical one.
MAX_DISCRETE_VALUES = 5
WASSERSTEIN = "wasserstein"
JENSEN_SHANNON = "jensenshannon"
_LABELS = {WASSERSTEIN: "Wasserstein distance (normed)", JENSEN_SHANNON: "Jensen-Shannon distance"}
_DEFAULT_THRESHOLDS = {WASSERSTEIN: 0.1, JENSEN_SHANNON: 0.1}
# np.std(reference) is floored at this, as in Evidently, so a constant column does not divide by zero.
_MIN_STD = 0.001
# Finite numerical values are clipped to [q01 - CLIP_SPANS * span, q99 + CLIP_SPANS * span] of the
# reference (span: see numeric_bounds), far outside any real day's data but finite for every range.
CLIP_SPANS = 10.0
_CLIP_QUANTILES = (0.01, 0.99)
# The largest magnitude ever kept: its square times a million rows is still a finite float64, so
# std, variance and correlations cannot overflow even on a reference made of absurd values.
_MAX_ABS = float(np.sqrt(np.finfo(np.float64).max)) / 1e6


class ColumnKind(StrEnum):
    NUMERICAL = "numerical"
    CATEGORICAL = "categorical"


class ColumnRole(StrEnum):
    FEATURE = "feature"
    TARGET = "target"
    PREDICTION = "prediction"


class DriftInputError(ValueError):
    """A column cannot be tested (missing, empty, wrong type); the message names it and the data."""


@dataclass(frozen=True)
class ColumnTest:
    """One column to test: its name, type and role, and a threshold override (None = test default)."""

    name: str
    kind: ColumnKind
    role: ColumnRole = ColumnRole.FEATURE
    threshold: float | None = None


@dataclass(frozen=True)
class ColumnDrift:
    """The outcome of one column's test (these fields are the per-column entries of summary.json)."""

    name: str
    role: str
    kind: str
    method: str
    method_label: str
    threshold: float
    score: float
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_missing_share: float
    current_missing_share: float
    reference_clipped: int = 0
    current_clipped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_test(kind: ColumnKind, reference_rows: int, distinct_values: int) -> str:
    """The Evidently test name for a column, mirroring ``_get_default_stattest`` (see the module table)."""
    if reference_rows > LARGE_REFERENCE_ROWS:
        if kind == ColumnKind.NUMERICAL and distinct_values > MAX_DISCRETE_VALUES:
            return WASSERSTEIN
        return JENSEN_SHANNON
    if kind == ColumnKind.NUMERICAL and distinct_values > MAX_DISCRETE_VALUES:
        return "ks"
    return "chisquare" if distinct_values > 2 else "z"


def wasserstein_normed(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> float:
    """Wasserstein-1 distance between two sorted samples divided by the reference std (floored).

    The integral of |U - V| over the merged support, as ``scipy.stats.wasserstein_distance``
    computes it, but from one stable merge of the two sorted samples instead of two binary searches
    per point: after the merge, the count of reference values <= a point is a running count of
    reference entries. At the last of a run of ties that count equals scipy's
    ``searchsorted(..., 'right')``; elsewhere in the run the step width is 0, so every product
    (and therefore the sum) is the same as scipy's.
    """
    n_ref, n_cur = reference_sorted.size, current_sorted.size
    merged = np.concatenate((reference_sorted, current_sorted))
    # Two sorted runs: the stable sort merges them in about linear time.
    order = np.argsort(merged, kind="stable")
    all_values = merged[order]
    deltas = np.diff(all_values)
    ref_counts = np.cumsum(order[:-1] < n_ref)
    cur_counts = np.arange(1, n_ref + n_cur, dtype=np.int64) - ref_counts
    u_cdf = ref_counts / n_ref
    v_cdf = cur_counts / n_cur
    distance_ = float(np.sum(np.multiply(np.abs(u_cdf - v_cdf), deltas)))
    norm = max(float(np.std(reference_sorted)), _MIN_STD)
    return distance_ / norm


def _value_shares(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Share of each distinct value (union of both sides; nulls already dropped), as Evidently bins."""
    ref_counts = reference.value_counts(sort=False)
    cur_counts = current.value_counts(sort=False)
    # Category dtypes list unused categories with a zero count; Evidently's keys are observed values.
    ref_counts = ref_counts[ref_counts > 0]
    cur_counts = cur_counts[cur_counts > 0]
    keys = ref_counts.index.union(cur_counts.index)
    ref = ref_counts.reindex(keys, fill_value=0).to_numpy(dtype="float64") / len(reference)
    cur = cur_counts.reindex(keys, fill_value=0).to_numpy(dtype="float64") / len(current)
    return ref, cur


def jensenshannon_shares(reference: pd.Series, current: pd.Series) -> float:
    """Jensen-Shannon distance (natural log) between the value shares of two samples."""
    ref, cur = _value_shares(reference, current)
    return float(distance.jensenshannon(ref, cur))


def _missing_share(series: pd.Series) -> float:
    return float(series.isna().mean()) if len(series) else 0.0


def numeric_bounds(reference: np.ndarray) -> tuple[float, float]:
    """The finite range numerical values are clipped to, from the reference's finite values.

    ``span`` is the larger of the 1st-99th percentile range and the percentiles' magnitudes
    (at least 1), so a constant or tightly clustered column still gets wide bounds.
    """
    finite = reference[np.isfinite(reference)]
    if finite.size == 0:
        return -_MAX_ABS, _MAX_ABS
    lo_q, hi_q = (float(q) for q in np.quantile(np.clip(finite, -_MAX_ABS, _MAX_ABS), _CLIP_QUANTILES))
    span = max(hi_q - lo_q, abs(lo_q), abs(hi_q), 1.0)
    return max(lo_q - CLIP_SPANS * span, -_MAX_ABS), min(hi_q + CLIP_SPANS * span, _MAX_ABS)


def _clip(values: np.ndarray, bounds: tuple[float, float]) -> tuple[np.ndarray, int]:
    """``values`` (finite) clipped to ``bounds``, and how many were outside."""
    lo, hi = bounds
    outside = int(np.count_nonzero((values < lo) | (values > hi)))
    return (np.clip(values, lo, hi) if outside else values), outside


def bound_frames(
    tests: Sequence[ColumnTest],
    current: pd.DataFrame,
    reference: pd.DataFrame,
    bounds_from: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copies of the frames as the tests see them, for a report: numerical columns clipped, ±inf as NaN.

    The bounds come from ``bounds_from`` (the full reference when the frames are samples of it),
    so a sampled report clips exactly where the tests on every row did. Only the columns that
    change are replaced; the others keep their dtype and bytes.
    """
    source = reference if bounds_from is None else bounds_from
    frames = [current, reference]
    copied = [False, False]
    for test in tests:
        if test.kind != ColumnKind.NUMERICAL or any(test.name not in f.columns for f in (*frames, source)):
            continue
        bounds = numeric_bounds(source[test.name].to_numpy(dtype="float64", na_value=np.nan))
        for i, frame in enumerate(frames):
            values = frame[test.name].to_numpy(dtype="float64", na_value=np.nan)
            clipped = np.where(np.isfinite(values), np.clip(values, *bounds), np.nan)
            if np.array_equal(clipped, values, equal_nan=True):
                continue
            if not copied[i]:
                frames[i], copied[i] = frame.copy(), True
            frames[i][test.name] = clipped
    return frames[0], frames[1]


def _clean(series: pd.Series, test: ColumnTest, side: str) -> pd.Series:
    if test.kind == ColumnKind.NUMERICAL:
        if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
            raise DriftInputError(
                f"{side} column {test.name!r}: a numerical column must have a numeric dtype, got {series.dtype}"
            )
        values = series.astype("float64")
        cleaned = values[np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan))]
    else:
        cleaned = series.dropna()
    if cleaned.empty:
        raise DriftInputError(f"{side} column {test.name!r} has no non-null values (NaN and ±inf do not count): drift cannot be tested")
    return cleaned


def _distinct(sorted_values: np.ndarray) -> int:
    return int(np.count_nonzero(np.diff(sorted_values))) + 1 if sorted_values.size else 0


def column_drift(test: ColumnTest, reference: pd.Series, current: pd.Series) -> ColumnDrift:
    """Test one column the way Evidently's default ``DataDriftPreset`` does."""
    ref = _clean(reference, test, "reference")
    cur = _clean(current, test, "current")
    ref_sorted = cur_sorted = None
    ref_clipped = cur_clipped = 0
    if test.kind == ColumnKind.NUMERICAL:
        bounds = numeric_bounds(ref.to_numpy(dtype="float64"))
        ref_values, ref_clipped = _clip(ref.to_numpy(dtype="float64"), bounds)
        cur_values, cur_clipped = _clip(cur.to_numpy(dtype="float64"), bounds)
        if ref_clipped or cur_clipped:
            log.warning("column %r: %d reference and %d current value(s) outside [%g, %g] clipped to it",
                        test.name, ref_clipped, cur_clipped, *bounds)
            # Evidently's small-reference tests below get the same clipped values.
            ref = pd.Series(ref_values, index=ref.index, name=ref.name)
            cur = pd.Series(cur_values, index=cur.index, name=cur.name)
        ref_sorted = np.sort(ref_values)
        cur_sorted = np.sort(cur_values)
        n_ref, n_cur = _distinct(ref_sorted), _distinct(cur_sorted)
        if max(n_ref, n_cur) > MAX_DISCRETE_VALUES:
            distinct = max(n_ref, n_cur)
        else:
            distinct = int(np.union1d(ref_sorted, cur_sorted).size)
    else:
        distinct = int(pd.concat([ref, cur]).nunique())

    method = select_test(test.kind, len(ref), distinct)
    if method == WASSERSTEIN:
        assert ref_sorted is not None and cur_sorted is not None
        threshold = test.threshold if test.threshold is not None else _DEFAULT_THRESHOLDS[method]
        score = wasserstein_normed(ref_sorted, cur_sorted)
        drifted, label = score >= threshold, _LABELS[method]
    elif method == JENSEN_SHANNON:
        threshold = test.threshold if test.threshold is not None else _DEFAULT_THRESHOLDS[method]
        score = jensenshannon_shares(ref, cur)
        drifted, label = score >= threshold, _LABELS[method]
    else:
        score, drifted, threshold, label = _evidently_small_reference_test(test, ref, cur)
    return ColumnDrift(
        name=test.name, role=str(test.role), kind=str(test.kind), method=method, method_label=label,
        threshold=float(threshold), score=float(score), drifted=bool(drifted),
        reference_rows=int(len(ref)), current_rows=int(len(cur)),
        reference_missing_share=_missing_share(reference), current_missing_share=_missing_share(current),
        reference_clipped=ref_clipped, current_clipped=cur_clipped,
    )


def _evidently_small_reference_test(
    test: ColumnTest, reference: pd.Series, current: pd.Series
) -> tuple[float, bool, float, str]:
    """A reference of at most 1000 rows: run Evidently's own p-value test (fast at that size)."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if test.kind == ColumnKind.NUMERICAL else ColumnType.Categorical
    stattest = get_stattest(reference, current, column_type, None)
    result = stattest(reference, current, column_type, test.threshold)
    return float(result.drift_score), bool(result.drifted), float(result.actual_threshold), stattest.display_name


def detect_drift(
    tests: Sequence[ColumnTest],
    reference: pd.DataFrame,
    current: pd.DataFrame,
    max_workers: int = 2,
) -> list[ColumnDrift]:
    """Test every column (in parallel); results keep the order of ``tests``."""
    for test in tests:
        for side, frame in (("reference", reference), ("current", current)):
            if test.name not in frame.columns:
                raise DriftInputError(f"{side} data has no column {test.name!r}")

    def run(test: ColumnTest) -> ColumnDrift:
        return column_drift(test, reference[test.name], current[test.name])

    if max_workers <= 1 or len(tests) <= 1:
        results = [run(t) for t in tests]
    else:
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="drift") as pool:
            results = list(pool.map(run, tests))
    drifted = [r.name for r in results if r.drifted]
    log.info("tested %d columns (%d reference rows, %d current rows): %d drifted %s",
             len(results), len(reference), len(current), len(drifted), drifted)
    return results

"""Small, version-guarded fixes to Great Expectations 1.24 that this project relies on.

Applied once by :func:`apply` (idempotent) before any validation runs. Each fix is a
correctness or speed fix that leaves GX's results unchanged; ``tests/test_quality.py``
checks that patched and unpatched validation give the same results.

1. ``ExpectColumnQuantileValuesToBeBetween`` returns ``numpy.bool_`` in ``success`` with
   numpy 2, which the validation-results store cannot serialise (TypeError: Object of
   type bool is not JSON serializable). We cast it to ``bool``.
2. ``does_ndarray_contain_decimal_dtype`` walks every value of a column in Python on each
   aggregate metric (15 M ``isinstance`` calls for 1 M rows × 15 numeric columns). A
   numeric-dtype array cannot hold ``decimal.Decimal``, so we answer from the dtype.
3. The pandas engine hands every column-domain metric the whole frame, and map metrics
   then filter it by row masks: each of ~90 metrics copies all 23 columns. We hand a
   column domain only its column (after any row condition), which is all it reads.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_APPLIED = False
SUPPORTED_GX = ("1.24.",)


def apply() -> None:
    """Apply the fixes once. ``AI_FACTORY_GX_FAST=0`` keeps only the correctness fix (1)."""
    global _APPLIED
    if _APPLIED:
        return
    import os

    import great_expectations as gx

    if not gx.__version__.startswith(SUPPORTED_GX):
        log.warning("gx_compat: GX %s is not a version these fixes were checked on; not applying them", gx.__version__)
        _APPLIED = True
        return
    _fix_quantile_bool()
    if os.environ.get("AI_FACTORY_GX_FAST", "1") != "0":
        _fix_decimal_scan()
        _fix_column_domain_projection()
    _APPLIED = True


def _fix_quantile_bool() -> None:
    from great_expectations.expectations import ExpectColumnQuantileValuesToBeBetween as Quantiles

    original = Quantiles._validate

    def _validate(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        out["success"] = bool(out["success"])
        details = out.get("result", {}).get("details", {})
        if "success_details" in details:
            details["success_details"] = [bool(x) for x in details["success_details"]]
        return out

    Quantiles._validate = _validate  # type: ignore[method-assign]


def _fix_decimal_scan() -> None:
    import great_expectations.util as gx_util
    import numpy as np

    original = gx_util.does_ndarray_contain_decimal_dtype

    def does_ndarray_contain_decimal_dtype(data):
        dtype = getattr(data, "dtype", None)
        if dtype is not None and dtype != np.dtype(object):
            return False
        return original(data)

    gx_util.does_ndarray_contain_decimal_dtype = does_ndarray_contain_decimal_dtype  # type: ignore[assignment]


def _fix_column_domain_projection() -> None:
    from great_expectations.execution_engine.pandas_execution_engine import PandasExecutionEngine

    original = PandasExecutionEngine.get_domain_records

    def get_domain_records(self, domain_kwargs):
        data = original(self, domain_kwargs)
        column = domain_kwargs.get("column")
        if column is not None and column in data.columns:
            return data[[column]]
        return data

    PandasExecutionEngine.get_domain_records = get_domain_records  # type: ignore[method-assign]

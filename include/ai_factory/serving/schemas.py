"""The service's request and response schemas, generated from the dataset spec.

One spec → one pydantic model per request shape, so a new dataset gets a new API without
new code. Choices (and why):

* **Types are strict.** ``int`` features take JSON integers, ``float`` features JSON numbers,
  ``bool`` features ``true``/``false``, ``category`` features strings. ``"35"`` for ``age`` is a
  client bug, not something to coerce silently. Integers are bounded to ±2**53 (exact in
  float64, which is what the model computes in); anything larger is a 400, not an overflow.
* **NaN and ±inf are rejected** (``allow_inf_nan=False``): they are not JSON, and a model fed
  NaN returns NaN. A missing value is ``null``, allowed only for features the spec marks
  ``nullable``.
* **Extra and missing fields are rejected** (``extra="forbid"``, required fields), naming the
  field: a misspelt feature must not be silently imputed.
* **Out-of-range numbers are served** (the spec's ``min``/``max`` are documented in the
  schema as ``x-expected-minimum``/``x-expected-maximum``, not enforced): the model can still
  score them, and refusing traffic because incomes grew is worse than flagging it. They come
  back in the response's ``warnings``, the service log and the
  ``ai_factory_out_of_range_total`` metric.
* **Unknown categories are served** through the model's out-of-vocabulary slot (the allowed
  values are listed as ``x-known-categories``), and flagged the same way.
* **Batches are bounded** (``max_length``): an oversized batch is a 400 naming ``records``.

BentoML turns a :class:`pydantic.ValidationError` into HTTP 400 whose body lists each
problem with its location (``["records", 3, "age"]``) and message.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ai_factory.spec import DatasetSpec, DType, Feature, TaskType

# Integers beyond this lose precision as float64 (the model's input type).
MAX_SAFE_INT = 2**53


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _feature_type(f: Feature) -> Any:
    extra: dict[str, Any] = {}
    if f.min is not None:
        extra["x-expected-minimum"] = f.min
    if f.max is not None:
        extra["x-expected-maximum"] = f.max
    desc = f.description or f.name
    if f.dtype == DType.INT:
        base: Any = Annotated[int, Field(strict=True, ge=-MAX_SAFE_INT, le=MAX_SAFE_INT, description=desc,
                                          json_schema_extra=extra or None)]
    elif f.dtype == DType.FLOAT:
        base = Annotated[float, Field(strict=True, allow_inf_nan=False, description=desc,
                                      json_schema_extra=extra or None)]
    elif f.dtype == DType.BOOL:
        base = Annotated[bool, Field(strict=True, description=desc)]
    else:
        base = Annotated[str, Field(strict=True, max_length=256, description=desc,
                                    json_schema_extra={"x-known-categories": list(f.categories or ())})]
    return base | None if f.nullable else base


def _example(f: Feature) -> Any:
    if f.dtype == DType.CATEGORY:
        return (f.categories or ("",))[0]
    if f.dtype == DType.BOOL:
        return False
    lo = f.min if f.min is not None else 0.0
    hi = f.max if f.max is not None else lo + 1.0
    mid = lo + (hi - lo) / 4
    return int(round(mid)) if f.dtype == DType.INT else round(mid, 2)


def example_record(spec: DatasetSpec) -> dict[str, Any]:
    """A valid record (every value inside the spec's range / categories), for docs and smoke checks."""
    return {f.name: _example(f) for f in spec.features}


def record_model(spec: DatasetSpec) -> type[BaseModel]:
    """``<Spec>Record``: one feature per field, typed and documented from the spec."""
    fields: dict[str, Any] = {}
    for f in spec.features:
        fields[f.name] = (_feature_type(f), ...)
    name = "".join(p.capitalize() for p in spec.name.split("_")) + "Record"
    model = create_model(name, __base__=_Record, __doc__=f"One input record of dataset '{spec.name}'.",
                         **fields)
    # BentoML's OpenAPI 3.0 document takes `example` (singular) at the schema level.
    model.model_config["json_schema_extra"] = {"example": example_record(spec)}
    model.model_rebuild(force=True)
    return model


def prediction_type(spec: DatasetSpec) -> Any:
    if spec.target.task == TaskType.REGRESSION:
        return float
    return Literal[tuple(spec.target.classes or ())]  # type: ignore[valid-type]


def prediction_model(spec: DatasetSpec) -> type[BaseModel]:
    """``<Spec>Prediction``: the label/value, class probabilities, the model version, warnings."""
    fields: dict[str, Any] = {
        "prediction": (prediction_type(spec), Field(description=f"predicted '{spec.target.name}'")),
        "model_version": (str, Field(description="registry version that produced this prediction")),
        "warnings": (list[str], Field(default_factory=list,
                                      description="inputs served but outside the spec (range, category)")),
    }
    if spec.target.task != TaskType.REGRESSION:
        fields["probabilities"] = (dict[str, float], Field(description="probability per class label"))
    if spec.target.task == TaskType.BINARY:
        fields["probability"] = (float, Field(description=f"P({spec.target.name} = positive class)"))
        fields["threshold"] = (float, Field(description="decision threshold chosen on validation: the prediction "
                                                        "is the positive class when probability >= threshold"))
    name = "".join(p.capitalize() for p in spec.name.split("_")) + "Prediction"
    return create_model(name, __base__=BaseModel, **fields)


def batch_request_model(spec: DatasetSpec, record: type[BaseModel], max_records: int) -> type[BaseModel]:
    name = "".join(p.capitalize() for p in spec.name.split("_")) + "Batch"
    return create_model(
        name, __base__=_Record,
        records=(list[record], Field(min_length=1, max_length=max_records,  # type: ignore[valid-type]
                                     description=f"1 to {max_records} records")),
    )


def batch_response_model(spec: DatasetSpec, prediction: type[BaseModel]) -> type[BaseModel]:
    name = "".join(p.capitalize() for p in spec.name.split("_")) + "BatchPrediction"
    return create_model(name, __base__=BaseModel,
                        predictions=(list[prediction], ...),  # type: ignore[valid-type]
                        model_version=(str, ...))


def out_of_spec(spec: DatasetSpec, record: dict[str, Any]) -> list[str]:
    """Human-readable warnings for values the schema accepts but the spec does not expect."""
    out: list[str] = []
    for f in spec.features:
        value = record.get(f.name)
        if value is None:
            continue
        if f.dtype.is_numeric and isinstance(value, int | float) and not isinstance(value, bool):
            if (f.min is not None and value < f.min) or (f.max is not None and value > f.max) or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                out.append(f"{f.name}={value!r} is outside the expected range [{f.min}, {f.max}]")
        elif f.dtype == DType.CATEGORY and value not in (f.categories or ()):
            out.append(f"{f.name}={value!r} is not a known category; scored as out-of-vocabulary")
    return out

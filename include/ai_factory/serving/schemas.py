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

from pydantic import BaseModel, Field, create_model

from ai_factory.configfile import StrictModel
from ai_factory.spec import DatasetSpec, DType, Feature, TaskType

# Integers beyond this lose precision as float64 (the model's input type).
MAX_SAFE_INT = 2**53


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
    model = create_model(name, __base__=StrictModel, __doc__=f"One input record of dataset '{spec.name}'.",
                         **fields)
    # BentoML's OpenAPI 3.0 document takes `example` (singular) at the schema level.
    model.model_config["json_schema_extra"] = {"example": example_record(spec)}
    model.model_rebuild(force=True)
    return model


def prediction_type(spec: DatasetSpec) -> Any:
    if spec.target.task == TaskType.REGRESSION:
        return float
    return Literal[tuple(spec.target.classes or ())]


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
        name, __base__=StrictModel,
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


# -- the OpenAPI document ------------------------------------------------------------------------
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "title": "Message"},
        "detail": {
            "type": "array",
            "title": "Problems",
            "description": "one entry per problem; `loc` names the field (or header) at fault",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
_ERROR_COMPONENTS = {"InvalidArgument": "Bad Request", "NotFound": "Not Found",
                     "InternalServerError": "Internal Server Error", "UnsupportedMediaType": "Unsupported Media Type"}


def _nullable_30(node: Any) -> Any:
    """pydantic's ``anyOf: [X, {type: null}]`` (JSON Schema / OpenAPI 3.1) → OpenAPI 3.0's ``X`` + ``nullable: true``."""
    if isinstance(node, list):
        return [_nullable_30(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:  # before the children: they hold the null
        rest = [o for o in options if o != {"type": "null"}]
        del node["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            node = {**rest[0], **node}
        else:  # siblings of a $ref are ignored in 3.0, so wrap it
            node["anyOf" if len(rest) > 1 else "allOf"] = rest
        node["nullable"] = True
    node = {k: _nullable_30(v) for k, v in node.items()}
    if node.get("type") == "null":  # a bare null type has no 3.0 spelling
        del node["type"]
        node["nullable"] = True
        node["enum"] = [None]
    return node


def openapi_document(doc: dict[str, Any], json_routes: tuple[str, ...], event_time_routes: tuple[str, ...],
                     event_time_note: str, request_models: dict[str, type[BaseModel]] | None = None,
                     ) -> dict[str, Any]:
    """BentoML's OpenAPI 3.0 document made true to what the service answers.

    * Error bodies: ``{"error": str, "detail": [{"loc", "msg", "type"}]}`` for every error status
      (BentoML declares ``detail`` a string but answers a list; :class:`~ai_factory.serving.middleware.Rejections`
      gives every 4xx this shape).
    * 415 on the JSON routes (:class:`~ai_factory.serving.middleware.JSONOnly`), 503 where BentoML sheds load.
    * Nullable fields as OpenAPI 3.0 writes them (``nullable: true``), not 3.1's ``type: null``.
    * The request body of each route in ``request_models`` is that model's schema, and required:
      BentoML inlines it and keeps only the first ``anyOf`` branch of each field, so a nullable
      feature read as non-nullable there (the service accepts ``null``).
    * The ``X-Event-Time`` header described on the scoring routes. It is not declared as a
      parameter: its valid range moves with the clock, which a static schema cannot say.
    """
    ref = "#/components/schemas/{}".format
    doc = dict(doc)
    doc["paths"] = {path: dict(item) for path, item in doc.get("paths", {}).items()}
    components = {**doc.get("components", {}).get("schemas", {})}
    for path, model in (request_models or {}).items():
        post = doc["paths"].get(path, {}).get("post")
        if post is None:
            continue
        schema = model.model_json_schema(ref_template=ref("{model}"))
        components.update(schema.pop("$defs", {}))
        old = post.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        schema["title"] = old.get("title", schema.get("title"))
        doc["paths"][path] = {**doc["paths"][path], "post": {
            **post, "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}}
    doc["components"] = {**doc.get("components", {}), "schemas": components}
    out = _nullable_30(doc)
    schemas = out["components"]["schemas"]
    for name, phrase in _ERROR_COMPONENTS.items():
        schemas[name] = {**ERROR_SCHEMA, "title": name, "description": phrase}
    for path, item in out.get("paths", {}).items():
        post = item.get("post")
        if post is None:
            if path == "/readyz":
                item["get"]["responses"]["503"] = {"description": "Not ready: `failed: <reason>` (text), or the "
                                                                  "model runner is not ready"}
                item["get"]["responses"]["200"]["description"] = (
                    "Ready; the body says `degraded: <reason>` when the prediction log drops or fails to write rows")
            continue
        responses = post.setdefault("responses", {})
        if path in json_routes:
            responses["415"] = {"description": "Unsupported Media Type: the body is not application/json",
                                "content": {"application/json": {"schema": {"$ref": ref("UnsupportedMediaType")}}}}
        responses["503"] = {"description": "Service Unavailable: load shed or model runner not ready; retry later"}
        if path in event_time_routes:
            post["description"] = f"{post.get('description', '')}\n\n{event_time_note}".strip()
    return out

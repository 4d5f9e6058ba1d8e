"""The AI Factory model service (BentoML): one registry version behind a typed HTTP API.

Two services, composed the BentoML way:

* ``ModelRunner`` holds the model (a ``BentoModel`` from the registry's store) and exposes one
  **batchable** method. Batch requests from every client are merged by BentoML's adaptive
  batcher into one model call (``config/serving.yaml``: ``adaptive_batching``).
* ``ModelService`` is the HTTP API: ``POST /predict`` (one record), ``POST /predict_batch``
  (``{"records": [...]}``), ``POST /model_info``; BentoML adds ``/readyz``, ``/livez``,
  ``/metrics`` and the OpenAPI document at ``/docs.json``. Request and response schemas are
  generated from the served model's dataset spec (:mod:`ai_factory.serving.schemas`). Every
  served record is queued for ``predictions/ds=YYYY-MM-DD/`` (a background writer; see
  :mod:`ai_factory.serving.prediction_log`); ``/readyz`` says ``degraded: <reason>`` while
  that log drops or fails to write rows. The ASGI middleware at the bottom of this file
  (:mod:`ai_factory.serving.middleware`) checks ``Content-Type`` and ``X-Event-Time``, logs
  each rejected request as one line and corrects BentoML's OpenAPI document.

Single records are scored in the API process itself by default (``single_record_scoring:
in_process``): with pandas-free preprocessing one record costs well under a millisecond of
CPU, less than the hop to the runner process and its batching queue (``docs/benchmarks.md``).
``single_record_scoring: runner`` sends them through the batcher like batches.

Which version is served: ``bentoml build --arg model_tag=<name:version>`` (what the deployment
DAG does), else ``$AI_FACTORY_MODEL_TAG``, else the registry's champion. Run from source with
``cd bentos && bentoml serve service:ModelService``.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import bentoml
from bentoml.models import BentoModel
from pydantic import BaseModel

from ai_factory.serving import schemas
from ai_factory.serving.config import load_serving_config
from ai_factory.serving.middleware import (
    EventTime,
    JSONOnly,
    Readiness,
    Rejections,
    RewriteJSON,
    event_time,
    quiet_client_errors,
)
from ai_factory.serving.prediction_log import COUNTS
from ai_factory.serving.runtime import (
    MODEL_TAG_ARG,
    Scorer,
    decision_threshold,
    records_array,
    resolve_model_tag,
    spec_of_model,
)

with bentoml.importing():
    import aiohttp
    import numpy as np

log = logging.getLogger("ai_factory.service")

CONFIG = load_serving_config()
_ARGS = bentoml.use_arguments()
MODEL = BentoModel(resolve_model_tag(getattr(_ARGS, MODEL_TAG_ARG, None)))
SPEC = spec_of_model(MODEL.resolve().path)
RECORD = schemas.record_model(SPEC)
PREDICTION = schemas.prediction_model(SPEC)
BATCH = schemas.batch_request_model(SPEC, RECORD, CONFIG.max_batch_records)
BATCH_PREDICTION = schemas.batch_response_model(SPEC, PREDICTION)
BATCHING = CONFIG.adaptive_batching
SCORING_ROUTES = ("/predict", "/predict_batch")
JSON_ROUTES = (*SCORING_ROUTES, "/model_info")

PREDICTIONS_TOTAL = bentoml.metrics.Counter(
    name="ai_factory_predictions", documentation="Records scored, by endpoint and model version",
    labelnames=["endpoint", "model_version"])
RUNNER_RETRIES_TOTAL = bentoml.metrics.Counter(
    name="ai_factory_runner_retries", documentation="Model runner calls retried after a dropped connection")
STALLS_TOTAL = bentoml.metrics.Counter(
    name="ai_factory_event_loop_stalls",
    documentation="API event-loop stalls longer than stall_watchdog_ms (0 = watchdog off)")
OUT_OF_SPEC_TOTAL = bentoml.metrics.Counter(
    name="ai_factory_out_of_spec_values", documentation="Served values outside the spec (range or category)",
    labelnames=["feature"])
LOG_ROWS_TOTAL = {kind: bentoml.metrics.Counter(
    name=f"ai_factory_prediction_log_rows_{kind}",
    documentation=f"Served rows the prediction log {kind} (written: in predictions/ds=…; rejected: kept aside in "
                  "predictions/_rejected/ with the reason; dropped: lost, the buffer was full)")
    for kind in COUNTS}


@bentoml.service(
    name="ai_factory_model_runner",
    resources={"cpu": CONFIG.resources.cpu},
    traffic={"timeout": CONFIG.traffic.timeout_seconds, "max_concurrency": CONFIG.traffic.max_concurrency},
    workers=1,
    runner_connection={"max_requests": CONFIG.runner_connection.max_requests,
                       "max_age": CONFIG.runner_connection.max_age_seconds},
)
class ModelRunner:
    """Holds the model; one batchable inference method."""

    bento_model = MODEL

    def __init__(self) -> None:
        import torch

        from ai_factory.training.predictor import Predictor

        # One intra-op thread: the API process and the batcher need the other core.
        torch.set_num_threads(1)
        stored = self.bento_model  # the class attribute resolves to the stored model
        self.predictor = Predictor.from_dir(str(stored.path), version=stored.tag.version)
        self.scorer = Scorer(SPEC, self.predictor.classes)
        log.info("model %s loaded from %s", stored.tag, stored.path)
        _freeze_heap()

    @bentoml.api(batchable=BATCHING.enabled, max_batch_size=BATCHING.max_batch_size,
                 max_latency_ms=BATCHING.max_latency_ms)
    def infer(self, rows: np.ndarray) -> np.ndarray:
        # Rows travel as an object array (one column per spec feature): BentoML's batcher
        # merges ndarrays along axis 0 (its DataFrame container cannot size a batch in 1.4.39).
        return self.scorer.outputs(self.predictor, rows)


@bentoml.service(
    name="ai_factory_model",
    resources={"cpu": CONFIG.resources.cpu},
    traffic={"timeout": CONFIG.traffic.timeout_seconds, "max_concurrency": CONFIG.traffic.max_concurrency},
    workers=CONFIG.api_workers,
    endpoints={"livez": "/livez", "readyz": "/readyz"},
    logging={"access": {"enabled": CONFIG.access_log}},
    **({} if CONFIG.trace_predictions else {"tracing": {"excluded_urls": ",".join(SCORING_ROUTES)}}),
)
class ModelService:
    """Typed HTTP API in front of :class:`ModelRunner`."""

    runner = bentoml.depends(ModelRunner)

    def __init__(self) -> None:
        from ai_factory.serving.prediction_log import PredictionLogger
        from ai_factory.storage import DataLake

        self.version = MODEL.tag.version or ""
        self.scorer = Scorer(SPEC, _classes(), threshold=decision_threshold(MODEL.resolve().path))
        self.logger = PredictionLogger(DataLake.from_settings(), SPEC, CONFIG.prediction_log.to_log_config())
        self.logger.on_count(lambda kind, n: LOG_ROWS_TOTAL[kind].inc(n))
        self.predictor = _local_predictor() if CONFIG.single_record_scoring == "in_process" else None
        log.info("serving %s (single records %s, batching %s, prediction log %s)", MODEL.tag,
                 CONFIG.single_record_scoring, "on" if BATCHING.enabled else "off",
                 "on" if CONFIG.prediction_log.enabled else "off")
        _freeze_heap()
        self.watchdog = None
        if CONFIG.stall_watchdog_ms:
            from ai_factory.serving.watchdog import StallWatchdog

            # The instance is created on the server's event loop (BentoML's lifespan).
            self.watchdog = StallWatchdog(CONFIG.stall_watchdog_ms).start()
            self.watchdog.on_stall(lambda _stall: STALLS_TOTAL.inc())

    async def _score(self, records: list[dict[str, Any]], endpoint: str) -> list[dict[str, Any]]:
        warnings = [schemas.out_of_spec(SPEC, r) for r in records]
        flagged = [w for ws in warnings for w in ws]
        if flagged:
            log.warning("%s: served %d out-of-spec value(s): %s", endpoint, len(flagged), "; ".join(flagged[:5]))
            for w in flagged:
                OUT_OF_SPEC_TOTAL.labels(feature=w.split("=", 1)[0]).inc()
        if self.predictor is not None and len(records) == 1:
            # One record (either endpoint), scored inline on the event loop: well under a millisecond
            # of CPU, cheaper than a hop to the runner or a thread hand-off.
            outputs = self.scorer.outputs(self.predictor, records)
        else:
            outputs = await self._infer(records_array(SPEC, records))
        responses = self.scorer.responses(np.asarray(outputs), self.version, warnings)
        predictions, probabilities = Scorer.log_columns(responses)
        self.logger.log(records, predictions, probabilities, self.version, event_time())
        PREDICTIONS_TOTAL.labels(endpoint=endpoint, model_version=self.version).inc(len(records))
        return responses

    async def _infer(self, rows: np.ndarray) -> np.ndarray:
        try:
            return await self.runner.to_async.infer(rows)
        except aiohttp.ClientConnectionError as exc:
            # BentoML's client to the runner can drop a request in flight when it recycles its
            # session or reuses a connection the runner just closed (bentoml/BentoML#4971, #5540).
            # Scoring has no side effects, so one retry on a fresh connection is safe.
            log.warning("model runner connection failed (%s: %s); retrying once", type(exc).__name__, exc)
            RUNNER_RETRIES_TOTAL.inc()
            return await self.runner.to_async.infer(rows)

    @bentoml.api(route="/predict", input_spec=RECORD, output_spec=PREDICTION)
    async def predict(self, **record: Any) -> BaseModel:
        """Score one record."""
        [response] = await self._score([record], "predict")
        return PREDICTION.model_validate(response)

    @bentoml.api(route="/predict_batch", input_spec=BATCH, output_spec=BATCH_PREDICTION)
    async def predict_batch(self, records: list[BaseModel]) -> BaseModel:
        """Score up to ``max_batch_records`` records in one request."""
        rows = [r.model_dump() for r in records]
        responses = await self._score(rows, "predict_batch")
        return BATCH_PREDICTION.model_validate({"predictions": responses, "model_version": self.version})

    @bentoml.api(route="/model_info")
    def model_info(self) -> dict[str, Any]:
        """The served version, its dataset spec and the request limits."""
        return {"model_tag": str(MODEL.tag), "model_version": self.version, "spec": SPEC.model_dump(mode="json"),
                "max_batch_records": CONFIG.max_batch_records, "adaptive_batching": BATCHING.model_dump(),
                "single_record_scoring": CONFIG.single_record_scoring,
                "prediction_log": CONFIG.prediction_log.enabled}

    @bentoml.on_shutdown
    def flush_prediction_log(self) -> None:
        self.logger.close()


def _health() -> tuple[str, str] | None:
    """The prediction log's health for ``/readyz`` (``None`` before the service instance exists)."""
    logger = getattr(bentoml.get_current_service(), "logger", None)
    return logger.health() if logger is not None else None


def _openapi(doc: dict[str, Any]) -> dict[str, Any]:
    window = CONFIG.event_time
    note = (f"Replayed traffic may send `X-Event-Time: <ISO 8601 date or datetime>` (naive = UTC) to log its "
            f"records under that day: accepted from {window.max_days_back:g} days before to "
            f"{window.max_days_ahead:g} day(s) after the server's clock, otherwise a 400 naming the header.")
    return schemas.openapi_document(doc, json_routes=JSON_ROUTES, event_time_routes=SCORING_ROUTES,
                                    event_time_note=note, request_models={"/predict": RECORD, "/predict_batch": BATCH})


# Outermost first: one log line and one body shape per 4xx, then the routes' own checks.
quiet_client_errors()
ModelService.add_asgi_middleware(Rejections)
ModelService.add_asgi_middleware(Readiness, path="/readyz", health=_health)
ModelService.add_asgi_middleware(RewriteJSON, path="/docs.json", rewrite=_openapi)
ModelService.add_asgi_middleware(JSONOnly, paths=JSON_ROUTES, body_required=SCORING_ROUTES)
ModelService.add_asgi_middleware(EventTime, paths=SCORING_ROUTES, window=CONFIG.event_time.window())


def _freeze_heap() -> None:
    """Exempt everything loaded at start-up (torch, pandas, the model, BentoML) from garbage collection.

    Measured in the API process at 200 req/s: a full (generation 2) collection walks that whole
    heap and took 170-325 ms, during which no request is served; that, not the model, was the
    p99. Objects created per request are still collected as usual.
    """
    gc.collect()
    gc.freeze()


def _local_predictor() -> Any:
    import torch

    from ai_factory.training.predictor import Predictor

    # One intra-op thread: a one-row forward pass gains nothing from more, and the runner needs the other core.
    torch.set_num_threads(1)
    path = MODEL.resolve().path
    predictor = Predictor.from_dir(str(path), version=MODEL.tag.version)
    log.info("model %s loaded in the API process from %s (single records scored here)", MODEL.tag, path)
    return predictor


def _classes() -> list[Any]:
    from ai_factory.training.preprocess import class_order

    return class_order(SPEC) if SPEC.target.classes else []

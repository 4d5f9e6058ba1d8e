"""The BentoML service under a real ``bentoml serve`` (subprocess, free port, real HTTP).

Predictions equal the registry model's offline ones; every kind of bad request gets a 4xx that
names the field; out-of-spec values are served and flagged; served records land in
``predictions/ds=…`` with the drift monitor's columns; a schemathesis fuzz run of the service's
own OpenAPI document finds no 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from ai_factory.deployment.local import free_port, wait_ready
from ai_factory.deployment.smoke import frame_to_records
from ai_factory.registry import ModelRegistry
from ai_factory.spec import default_spec
from ai_factory.storage import DataLake, Zone
from ai_factory.training.predictor import Predictor

pytestmark = pytest.mark.serving
REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def _serve(store, lake_root: Path, **env_extra: str) -> Iterator[dict]:
    """``bentoml serve service:ModelService`` from source, serving version ``a``."""
    port = free_port()
    version = store.versions["a"]
    env = {**os.environ, "BENTOML_HOME": str(store.model_home), "AI_FACTORY_DATA_ROOT": str(lake_root),
           "AI_FACTORY_MODEL_TAG": f"credit_default:{version}", "BENTOML_DO_NOT_TRACK": "true",
           "PYTHONPATH": os.pathsep.join([str(REPO / "include"), os.environ.get("PYTHONPATH", "")]), **env_extra}
    log_path = lake_root.parent / f"serve-{lake_root.name}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "service:ModelService", "--host",
                                 "127.0.0.1", "--port", str(port)], cwd=REPO / "bentos", env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc.pid, 180, log_path)
        yield {"url": url, "version": version, "proc": proc, "lake": DataLake(str(lake_root)), "log": log_path,
               "store": store}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture(scope="module")
def server(trained_store, tmp_path_factory):
    """The default configuration (single records scored in the API process), logging predictions."""
    with _serve(trained_store, tmp_path_factory.mktemp("served-lake")) as s:
        yield s


@pytest.fixture(scope="module")
def runner_server(trained_store, tmp_path_factory):
    """Single records through the model runner and its adaptive batcher; no prediction log.

    The event-loop stall watchdog is on. Its own BENTOML_HOME: ``bentoml serve`` wipes ``$BENTOML_HOME/prometheus_multiproc_dir`` at
    start, which would reset the metrics of the other server.
    """
    home = tmp_path_factory.mktemp("runner-bentoml") / "bentoml"
    shutil.copytree(trained_store.model_home, home, symlinks=True)
    # A 2 ms stall threshold: scoring a request holds the loop about that long, so the watchdog has stalls to report.
    with _serve(trained_store, tmp_path_factory.mktemp("runner-lake"), AI_FACTORY_SERVE_SINGLE="runner",
                AI_FACTORY_PREDICTION_LOG="false", BENTOML_HOME=str(home), AI_FACTORY_SERVE_STALL_MS="2") as s:
        yield s


@pytest.fixture(scope="module")
def log_fault_server(trained_store, tmp_path_factory):
    """One API worker (so /readyz and /metrics see its writer), flushing every 0.3 s, degraded for 3 s after a fault."""
    root = tmp_path_factory.mktemp("log-fault")
    home = root / "bentoml"
    shutil.copytree(trained_store.model_home, home, symlinks=True)
    config = root / "serving.yaml"
    config.write_text("api_workers: 1\nprediction_log: {flush_seconds: 0.3, health_window_seconds: 3}\n")
    with _serve(trained_store, root / "lake", BENTOML_HOME=str(home), AI_FACTORY_SERVING_CONFIG=str(config)) as s:
        yield s


@pytest.fixture(scope="module")
def holdout(trained_store) -> pd.DataFrame:
    lake = DataLake(str(trained_store.lake_root))
    return lake.read_partition(Zone.VALIDATED, lake.partitions(Zone.VALIDATED)[-1]).head(200)


@pytest.fixture
def good_record(holdout) -> dict:
    return frame_to_records(default_spec(), holdout.head(1))[0]


def test_served_predictions_equal_offline_predictions(server, holdout):
    reg = ModelRegistry(server["store"].model_home, "credit_default")
    predictor = Predictor.from_dir(str(reg.get(server["version"]).path))
    offline = predictor.predict_proba(holdout)
    records = frame_to_records(default_spec(), holdout)
    resp = httpx.post(f"{server['url']}/predict_batch", json={"records": records}, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == server["version"] and len(body["predictions"]) == len(records)
    served = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in body["predictions"]])
    assert np.abs(served - offline).max() < 1e-5
    # Labels at the model's decision threshold (chosen on validation), the same offline and served.
    assert [p["prediction"] for p in body["predictions"]] == predictor.predict(holdout).tolist()
    assert {p["threshold"] for p in body["predictions"]} == {predictor.threshold}
    for i in range(3):
        one = httpx.post(f"{server['url']}/predict", json=records[i], timeout=10).json()
        assert one["probability"] == pytest.approx(offline[i, 1], abs=1e-5) and one["warnings"] == []
    # SyncHTTPClient, as the README shows it.
    import bentoml

    with bentoml.SyncHTTPClient(server["url"]) as client:
        out = client.predict(**records[0])
    assert out["probability"] == pytest.approx(offline[0, 1], abs=1e-5)


def test_the_stall_watchdog_reports_to_the_log_and_metrics(runner_server, good_record):
    for _ in range(20):
        assert httpx.post(f"{runner_server['url']}/predict_batch", json={"records": [good_record] * 200},
                          timeout=30).status_code == 200
    metrics = httpx.get(f"{runner_server['url']}/metrics").text
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("ai_factory_event_loop_stalls_total"))
    assert counted > 0, metrics[-2000:]
    log = runner_server["log"].read_text(errors="replace")
    assert "event loop blocked for" in log and "loop thread was at:" in log


def test_single_records_through_the_runner_equal_offline_predictions(runner_server, holdout):
    reg = ModelRegistry(runner_server["store"].model_home, "credit_default")
    offline = Predictor.from_dir(str(reg.get(runner_server["version"]).path)).predict_proba(holdout.head(5))
    info = httpx.post(f"{runner_server['url']}/model_info", json={}, timeout=10).json()
    assert info["single_record_scoring"] == "runner" and info["prediction_log"] is False
    for i, record in enumerate(frame_to_records(default_spec(), holdout.head(5))):
        one = httpx.post(f"{runner_server['url']}/predict", json=record, timeout=10).json()
        assert one["probability"] == pytest.approx(offline[i, 1], abs=1e-5)


async def _burst(url: str, bodies: list[dict], concurrency: int, retries_on_503: int = 5) -> list[list[int]]:
    """Every status each request got: a 503 (BentoML shedding load) is retried, as a client should."""
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30) as client:
        async def one(body: dict) -> list[int]:
            codes: list[int] = []
            async with sem:
                while True:
                    codes.append((await client.post(url, json=body)).status_code)
                    if codes[-1] != 503 or len(codes) > retries_on_503:
                        return codes
                    await asyncio.sleep(0.1 * len(codes))

        return await asyncio.gather(*(one(b) for b in bodies))


@pytest.mark.parametrize(("which", "route"), [("server", "predict_batch"), ("runner_server", "predict")])
def test_concurrent_traffic_through_the_runner_gets_no_server_error(request, which, route, holdout):
    """BentoML's client to the runner used to drop in-flight requests every 100 calls (500s)."""
    srv = request.getfixturevalue(which)
    records = frame_to_records(default_spec(), holdout.head(8))
    bodies = [{"records": records[i % 4: i % 4 + 4]} if route == "predict_batch" else records[i % 8]
              for i in range(300)]
    tries = asyncio.run(_burst(f"{srv['url']}/{route}", bodies, concurrency=12))
    # 503 is BentoML shedding load on a busy machine, which a client retries; anything else is a bug.
    seen = sorted({code for codes in tries for code in codes})
    assert set(seen) <= {200, 503}, seen
    assert [codes[-1] for codes in tries] == [200] * len(bodies), seen  # every request answered in the end


def test_health_and_metrics_endpoints(server, good_record):
    # A labelled counter shows up after its first increment.
    assert httpx.post(f"{server['url']}/predict", json=good_record, timeout=10).status_code == 200
    ready = httpx.get(f"{server['url']}/readyz")
    assert ready.status_code == 200 and ready.text == "\n"
    assert httpx.get(f"{server['url']}/livez").status_code == 200
    metrics = httpx.get(f"{server['url']}/metrics").text
    assert "ai_factory_predictions_total" in metrics and "bentoml_service_request_duration_seconds" in metrics
    for kind in ("written", "rejected", "dropped"):
        assert f"ai_factory_prediction_log_rows_{kind}_total" in metrics, kind


@pytest.mark.parametrize("raw", ["0001-01-01", "9999-12-31T23:59:59-05:00", "2010-06-01", "2999-01-01"])
def test_event_times_outside_the_window_get_a_400_at_once(server, good_record, raw):
    """Probes: 0001-01-01 was a 200 that killed the prediction log's writer; the -05:00 one a 500 after 10 s."""
    # A 5 s client timeout: the hang waited for BentoML's 10 s request timeout.
    resp = httpx.post(f"{server['url']}/predict", json=good_record, headers={"X-Event-Time": raw}, timeout=5)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert f"X-Event-Time {raw!r} is outside the accepted window" in body["error"]
    assert "400 days back, 1 ahead" in body["error"] and body["detail"][0]["loc"] == ["header", "X-Event-Time"]
    assert httpx.post(f"{server['url']}/predict", json=good_record, timeout=10).status_code == 200


def _log_lines_after(path: Path, offset: int, expected: int, timeout: float = 15) -> list[str]:
    """The log's lines after byte ``offset`` once there are ``expected`` (workers write asynchronously)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        with open(path, "rb") as fh:
            fh.seek(offset)
            lines = fh.read().decode(errors="replace").splitlines()
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_each_rejected_request_writes_one_short_log_line(server, good_record):
    """Every rejected request used to write a ~5 KB traceback (14 MB of log in minutes of fuzzing)."""
    url = server["url"]
    offset = server["log"].stat().st_size
    sent = [
        httpx.post(f"{url}/predict", json={"age": 35}),  # 20 missing fields
        httpx.post(f"{url}/predict", json={**good_record, "age": "thirty"}),
        httpx.post(f"{url}/predict", content=b'{"age": ', headers={"Content-Type": "application/json"}),
        httpx.post(f"{url}/predict_batch", json={"records": []}),
        httpx.post(f"{url}/predict", json=good_record, headers={"X-Event-Time": "yesterday"}),
        httpx.post(f"{url}/predict", content=b"age=3", headers={"Content-Type": "text/plain"}),
        httpx.post(f"{url}/predict"),
        httpx.put(f"{url}/predict", json=good_record),
    ]
    assert [r.status_code for r in sent] == [400, 400, 400, 400, 400, 415, 400, 405]
    lines = _log_lines_after(server["log"], offset, len(sent))
    text = "\n".join(lines)
    assert len(lines) == len(sent) and "Traceback" not in text, text[-3000:]
    assert all(len(line) < 500 for line in lines), max(map(len, lines))
    import re

    # Two API workers write to the log: compare (method, path, status) as multisets, not in order.
    logged = sorted(re.search(r" (POST|PUT) (/predict\S*) (\d{3}) ", line).groups() for line in lines)
    assert logged == sorted((r.request.method, r.request.url.path, str(r.status_code)) for r in sent), text
    assert any("POST /predict 400 20 validation error" in line and "annual_income: Field required" in line
               for line in lines), text
    assert any("POST /predict 415 Content-Type 'text/plain' is not supported" in line for line in lines), text


def test_a_post_without_a_body_gets_the_same_answer_direct_and_through_the_front(server, tmp_path):
    """It was a 400 direct and a 415 through the front (aiohttp adds application/octet-stream to an empty body)."""
    from ai_factory.deployment.local import wait_ready

    port = int(server["url"].rsplit(":", 1)[1])
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"active": {"port": port, "version": server["version"]}}))
    front_port = free_port()
    log_path = tmp_path / "front.log"
    with open(log_path, "wb") as out:
        front = subprocess.Popen([sys.executable, "-m", "ai_factory.deployment.front", "--state", str(state),
                                  "--port", str(front_port)], stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                     [str(REPO / "include"), os.environ.get("PYTHONPATH", "")])})
    try:
        front_url = f"http://127.0.0.1:{front_port}"
        wait_ready(front_url, front.pid, 60, log_path)
        for path, headers in (("/predict", {}), ("/predict_batch", {}), ("/predict", {"Content-Type": "text/plain"}),
                              ("/model_info", {})):
            direct = httpx.post(f"{server['url']}{path}", headers=headers, timeout=10)
            proxied = httpx.post(f"{front_url}{path}", headers=headers, timeout=10)
            assert proxied.headers["X-AI-Factory-Backend"] == server["version"]
            assert (direct.status_code, direct.json()) == (proxied.status_code, proxied.json()), (path, headers)
            if path != "/model_info":
                assert direct.status_code == 400 and direct.json()["detail"][0]["loc"] == ["body"]
            else:
                assert direct.status_code == 200  # no input: an empty body is a valid call
    finally:
        front.terminate()
        front.wait(20)


def _bad(kind: str, rec: dict) -> tuple[str, object, bytes | None]:
    """(endpoint, json body or None, raw body) for each kind of bad request."""
    if kind == "malformed_json":
        return "/predict", None, b'{"age": 35, "annual_income": '
    if kind == "missing_field":
        return "/predict", {k: v for k, v in rec.items() if k != "credit_score"}, None
    if kind == "extra_field":
        return "/predict", {**rec, "favourite_colour": "blue"}, None
    if kind == "wrong_type":
        return "/predict", {**rec, "age": "thirty-five"}, None
    if kind == "null_not_nullable":
        return "/predict", {**rec, "loan_amount": None}, None
    if kind == "nan":
        return "/predict", None, json.dumps({**rec, "interest_rate": math.nan}).encode()
    if kind == "inf":
        return "/predict", None, json.dumps({**rec, "debt_to_income": math.inf}).encode()
    if kind == "batch_too_large":
        return "/predict_batch", {"records": [rec] * 1001}, None
    if kind == "empty_batch":
        return "/predict_batch", {"records": []}, None
    if kind == "not_json_content_type":
        return "/predict", None, b"age=35"
    if kind == "bad_event_time":
        return "/predict", rec, None
    raise AssertionError(kind)


@pytest.mark.parametrize(("kind", "status", "field", "phrase"), [
    ("malformed_json", 400, None, "Invalid JSON"),
    ("missing_field", 400, "credit_score", "Field required"),
    ("extra_field", 400, "favourite_colour", "Extra inputs are not permitted"),
    ("wrong_type", 400, "age", "valid integer"),
    ("null_not_nullable", 400, "loan_amount", "valid number"),
    ("nan", 400, "interest_rate", "finite number"),
    ("inf", 400, "debt_to_income", "finite number"),
    ("batch_too_large", 400, "records", "at most 1000 items"),
    ("empty_batch", 400, "records", "at least 1 item"),
    ("not_json_content_type", 415, "Content-Type", "application/json"),
    ("bad_event_time", 400, "X-Event-Time", "ISO 8601"),
])
def test_bad_requests_get_a_4xx_naming_the_field(server, good_record, kind, status, field, phrase):
    path, payload, raw = _bad(kind, good_record)
    headers = {"Content-Type": "application/x-www-form-urlencoded" if kind == "not_json_content_type"
               else "application/json"}
    if kind == "bad_event_time":
        headers["X-Event-Time"] = "yesterday"
    resp = httpx.post(f"{server['url']}{path}", content=raw if raw is not None else json.dumps(payload).encode(),
                      headers=headers, timeout=30)
    assert resp.status_code == status, resp.text
    body = resp.json()
    text = json.dumps(body)
    assert phrase in text
    if field is not None:
        assert any(field in map(str, d.get("loc", [])) for d in body["detail"]), body["detail"]


def test_out_of_range_and_unknown_category_are_served_and_flagged(server, good_record):
    rec = {**good_record, "age": 150, "region": "atlantis"}
    resp = httpx.post(f"{server['url']}/predict", json=rec, timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert 0.0 <= body["probability"] <= 1.0
    assert any(w.startswith("age=150 is outside the expected range [18.0, 100.0]") for w in body["warnings"])
    assert any("region='atlantis' is not a known category" in w for w in body["warnings"])
    metrics = httpx.get(f"{server['url']}/metrics").text
    assert 'ai_factory_out_of_spec_values_total{feature="age"}' in metrics


def test_the_openapi_document_is_true_openapi_30(server):
    doc = httpx.get(f"{server['url']}/docs.json").json()
    assert doc["openapi"].startswith("3.0") and "'null'" not in json.dumps(doc).replace('"', "'")
    predict = doc["paths"]["/predict"]["post"]
    assert predict["requestBody"]["required"] is True
    assert predict["requestBody"]["content"]["application/json"]["schema"]["properties"]["savings_balance"][
        "nullable"] is True
    assert {"400", "415", "503"} <= set(predict["responses"]) and "X-Event-Time" in predict["description"]
    assert doc["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]["type"] == "array"


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_with_all_checks_finds_nothing(server, mode):
    """Schemathesis (``--checks all``) against the served OpenAPI document: status codes, bodies and
    content types as documented, valid data accepted, invalid data rejected, no 5xx."""
    st = Path(sys.executable).parent / "st"
    offset = server["log"].stat().st_size
    proc = subprocess.run([str(st), "run", f"{server['url']}/docs.json", "--url", server["url"], "--checks", "all",
                           "--mode", mode, "--max-examples", "15", "--seed", "1234", "--workers", "2", "--no-color"],
                          capture_output=True, text=True, timeout=300, cwd=server["log"].parent)
    tail = proc.stdout[-4000:]
    assert proc.returncode == 0, tail
    assert "No issues found" in tail and " passed" in tail, tail
    with open(server["log"], "rb") as fh:
        fh.seek(offset)
        assert b"Traceback" not in fh.read()


def test_served_records_are_logged_for_drift_monitoring(server, good_record):
    httpx.post(f"{server['url']}/predict", json={**good_record, "savings_balance": None}, timeout=10)
    replayed = httpx.post(f"{server['url']}/predict_batch", json={"records": [good_record] * 3},
                          headers={"X-Event-Time": "2026-04-07T22:30:00+02:00"}, timeout=10)
    assert replayed.status_code == 200, replayed.text
    proc: subprocess.Popen = server["proc"]
    os.killpg(proc.pid, signal.SIGTERM)  # a clean stop flushes the buffer
    proc.wait(60)
    lake: DataLake = server["lake"]
    event_day = date(2026, 4, 7)  # 20:30 UTC: the header's day, not the serving day
    [day] = [d for d in lake.partitions(Zone.PREDICTIONS) if d != event_day]
    assert event_day in lake.partitions(Zone.PREDICTIONS)
    replay = lake.read_partition(Zone.PREDICTIONS, event_day)
    assert len(replay) == 3 and (replay["timestamp"] == pd.Timestamp("2026-04-07T20:30:00Z")).all()
    logged = lake.read_partition(Zone.PREDICTIONS, day)
    spec = default_spec()
    assert list(logged.columns) == [*spec.feature_names, "prediction", "probability", "model_version", "timestamp"]
    assert len(logged) > 200 and set(logged["model_version"]) == {server["version"]}
    assert str(logged["timestamp"].dt.tz) == "UTC" and logged["probability"].between(0, 1).all()
    assert logged["savings_balance"].isna().any() and logged["region"].eq("atlantis").any()
    assert not [p for p in Path(lake.partition_path(Zone.PREDICTIONS, day)).iterdir() if p.name.startswith(".")]


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


def _until(condition, timeout: float = 20.0):
    import time

    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return result


def test_a_failing_prediction_log_degrades_readyz_and_recovers_without_losing_rows(log_fault_server, holdout):
    """The store refuses one day's writes: /readyz says degraded (still 200), rows wait; once it accepts, all land."""
    from datetime import UTC, datetime, timedelta

    url, lake = log_fault_server["url"], log_fault_server["lake"]
    records = frame_to_records(default_spec(), holdout.head(12))
    good_day, bad_day = ((datetime.now(UTC) - timedelta(days=n)).date() for n in (2, 3))

    def served(day, recs) -> int:
        return httpx.post(f"{url}/predict_batch", json={"records": recs}, timeout=30,
                          headers={"X-Event-Time": day.isoformat()}).status_code

    assert served(good_day, records[:5]) == 200
    assert _until(lambda: _metric(url, "ai_factory_prediction_log_rows_written_total") >= 5)
    assert httpx.get(f"{url}/readyz").text == "\n"

    blocker = Path(lake.partition_path(Zone.PREDICTIONS, bad_day))
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the day's folder goes: every write of that day fails")
    assert served(bad_day, records[5:]) == 200
    ready = _until(lambda: (r := httpx.get(f"{url}/readyz")).text.startswith("degraded") and r)
    assert ready and ready.status_code == 200 and "failed" in ready.text and str(bad_day) in ready.text, ready

    blocker.unlink()
    assert _until(lambda: _metric(url, "ai_factory_prediction_log_rows_written_total") >= 12)
    assert _until(lambda: httpx.get(f"{url}/readyz").text == "\n", timeout=15)
    assert _metric(url, "ai_factory_prediction_log_rows_dropped_total") == 0
    assert _metric(url, "ai_factory_prediction_log_rows_rejected_total") == 0
    assert len(lake.read_partition(Zone.PREDICTIONS, good_day)) == 5
    assert len(lake.read_partition(Zone.PREDICTIONS, bad_day)) == 7  # rows lost: 0

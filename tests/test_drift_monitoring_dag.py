"""``dag.test()`` runs of drift_monitoring: real Airflow metadata DB, real Evidently, real files."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ai_factory.storage import Zone

from airflow_helpers import asset_events, task_states
from drift_fixtures import drift, week_before, write_config, write_predictions, write_validated

pytestmark = pytest.mark.e2e

ALL_TASKS = ("wait_for_inputs", "assemble", "report", "decide", "emit_drift_event")


@pytest.fixture
def champion(lake, tmp_path, monkeypatch):
    """The drift config points at the test champion's reference provider."""
    from ai_factory.settings import reset_settings

    monkeypatch.setenv("AI_FACTORY_DRIFT_CONFIG", str(write_config(tmp_path / "drift.yaml")))
    reset_settings()
    yield lake
    reset_settings()


def _run(dagbag, ds: date):
    dag = dagbag.get_dag("drift_monitoring")
    return dag.test(logical_date=datetime(ds.year, ds.month, ds.day, tzinfo=UTC))


@pytest.mark.parametrize(("kind", "rule"), [("covariate", "key column(s) drifted"), ("concept", "quality degraded")])
def test_drifted_day_emits_the_drift_event_and_writes_reports(airflow_db, dagbag, champion, kind, rule, caplog):
    lake, ds = champion, date(2026, 6, 3)
    write_predictions(lake, ds, 3000, cfg=drift(kind, ds))
    before = len(asset_events("drift_detected"))
    dr = _run(dagbag, ds)
    assert str(dr.state) == "success"
    assert task_states(dr) == dict.fromkeys(ALL_TASKS, "success")
    events = asset_events("drift_detected")[before:]
    assert len(events) == 1 and events[0]["source_dag_id"] == "drift_monitoring"
    extra = events[0]["extra"]
    assert set(extra) == {"ds", "share", "columns", "reason"}
    assert extra["ds"] == ds.isoformat() and rule in extra["reason"]
    summary = lake.read_json(lake.partition_path(Zone.REPORTS_DRIFT, ds) + "/summary.json")
    assert summary["decision"]["drift"] is True and summary["decision"]["reason"] == extra["reason"]
    assert extra["columns"] == summary["drift"]["drifted_columns"]
    assert summary["reference"]["kind"] == "provider" and summary["current"]["source"] == "predictions"
    assert set(lake.read_partition_files(Zone.REPORTS_DRIFT, ds)) == {"report.html", "report.json", "summary.json"}
    notes = [r.getMessage() for r in caplog.records if "AI-FACTORY NOTIFY" in r.getMessage()]
    assert notes and f"drift detected for ds={ds}" in notes[-1] and rule in notes[-1]


def test_undrifted_day_writes_reports_and_emits_nothing(airflow_db, dagbag, champion):
    lake, ds = champion, date(2026, 6, 5)
    write_predictions(lake, ds, 3000)
    before = len(asset_events("drift_detected"))
    dr = _run(dagbag, ds)
    assert str(dr.state) == "success"
    states = task_states(dr)
    assert {k: states[k] for k in ALL_TASKS[:4]} == dict.fromkeys(ALL_TASKS[:4], "success")
    assert states["emit_drift_event"] == "skipped"
    assert len(asset_events("drift_detected")) == before
    summary = lake.read_json(lake.partition_path(Zone.REPORTS_DRIFT, ds) + "/summary.json")
    assert summary["decision"]["drift"] is False and summary["decision"]["reason"].startswith("no drift:")


def test_validated_day_without_a_champion_uses_the_window(airflow_db, dagbag, lake):
    ds = date(2026, 6, 12)
    week_before(lake, ds, rows=800)
    write_validated(lake, ds, 2000, cfg=drift("covariate", ds))
    before = len(asset_events("drift_detected"))
    dr = _run(dagbag, ds)
    assert str(dr.state) == "success" and task_states(dr)["emit_drift_event"] == "success"
    assert len(asset_events("drift_detected")) == before + 1
    summary = lake.read_json(lake.partition_path(Zone.REPORTS_DRIFT, ds) + "/summary.json")
    assert summary["current"]["source"] == "validated" and summary["reference"]["kind"] == "window"


def test_quarantined_day_is_skipped_not_failed(airflow_db, dagbag, lake):
    ds = date(2026, 6, 14)
    week_before(lake, ds, rows=300)
    lake.replace_partition(Zone.QUARANTINE, ds, {"part-0.parquet": b"not parquet"})
    before = len(asset_events("drift_detected"))
    dr = _run(dagbag, ds)
    assert str(dr.state) == "success"
    states = task_states(dr)
    assert states["wait_for_inputs"] == "success" and states["assemble"] == "skipped"
    assert states["report"] == "skipped" and states["emit_drift_event"] == "skipped"
    assert len(asset_events("drift_detected")) == before
    assert not lake.partition_exists(Zone.REPORTS_DRIFT, ds)


def test_bad_served_file_fails_with_the_file_and_column(airflow_db, dagbag, lake, caplog):
    from ai_factory.data.generate import generate_day, to_parquet_bytes

    from drift_fixtures import served

    ds = date(2026, 6, 16)
    week_before(lake, ds, rows=300)
    df = served(generate_day(ds, 300), ds).drop(columns=["age"])
    lake.replace_partition(Zone.PREDICTIONS, ds, {"part-0.parquet": to_parquet_bytes(df)})
    dr = _run(dagbag, ds)
    assert str(dr.state) == "failed" and task_states(dr)["report"] == "failed"
    msgs = [r.getMessage() for r in caplog.records if "missing required column(s) age" in r.getMessage()]
    assert msgs and f"predictions/ds={ds}/part-0.parquet" in msgs[-1]

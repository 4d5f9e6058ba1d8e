"""``dag.test()`` runs of data_quality: real Airflow metadata DB, real GX, real files."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ai_factory.data.generate import Corruption, write_day
from ai_factory.storage import Zone

from airflow_helpers import asset_events, task_states

pytestmark = pytest.mark.e2e


def _run(dagbag, ds: str):
    dag = dagbag.get_dag("data_quality")
    d = datetime.fromisoformat(ds).replace(tzinfo=UTC)
    # ds=None explicitly: a run_conf given to an earlier dag.test() of the same DAG sticks to later
    # runs (seen on Airflow 3.3), and the manual-ds test below passes one.
    return dag.test(logical_date=d, run_conf={"ds": None})


def test_good_day_publishes_emits_asset_and_writes_data_docs(airflow_db, dagbag, lake):
    ds = "2026-01-05"
    write_day(lake, ds, 1200)
    before = len(asset_events("validated_data"))
    dr = _run(dagbag, ds)
    assert str(dr.state) == "success"
    assert task_states(dr) == {"wait_for_landing": "success", "validate": "success"}
    assert lake.partition_exists(Zone.VALIDATED, ds)
    events = asset_events("validated_data")[before:]
    assert len(events) == 1
    extra = events[0]["extra"]
    assert extra["ds"] == ds and extra["rows"] == 1200
    assert extra["path"].endswith(f"validated/ds={ds}")
    summary = lake.read_json(lake.partition_path(Zone.REPORTS_QUALITY, ds) + "/summary.json")
    page = Path(summary["data_docs_site"]) / summary["data_docs_page"].replace("%3D", "=")
    assert page.is_file() and "credit_default" in page.read_text()


@pytest.mark.parametrize("kind", list(Corruption))
def test_corrupt_day_is_quarantined_and_fails_clearly(airflow_db, dagbag, lake, kind, caplog):
    ds = "2026-01-07"
    write_day(lake, ds, 600, corruption=kind)
    original = lake.read_partition_files(Zone.LANDING, ds)["part-0.parquet"]
    before = len(asset_events("validated_data"))
    dr = _run(dagbag, ds)
    assert str(dr.state) == "failed"
    assert task_states(dr)["validate"] == "failed"
    assert len(asset_events("validated_data")) == before  # no event for a bad day
    q = lake.read_partition_files(Zone.QUARANTINE, ds)
    assert q["part-0.parquet"] == original
    assert json.loads(q["validation_result.json"])["success"] is False
    assert not lake.partition_exists(Zone.LANDING, ds) and not lake.partition_exists(Zone.VALIDATED, ds)
    failure = [r.getMessage() for r in caplog.records if "data quality failed" in r.getMessage()]
    assert failure and f"ds={ds}" in failure[-1] and "validation_result.json" in failure[-1]


def test_quarantined_day_notifies_not_only_logs(airflow_db, dagbag, lake, webhook, monkeypatch):
    """The failure notifier sits in every DAG's default_args: a quarantined day reaches Slack."""
    monkeypatch.setenv("AIRFLOW_CONN_AI_FACTORY_SLACK", f"http://127.0.0.1:{webhook.server_address[1]}/services/T/B/x")
    ds = "2026-01-08"
    write_day(lake, ds, 300, corruption=Corruption.MISSING_COLUMN)
    assert str(_run(dagbag, ds).state) == "failed"
    texts = [body["text"] for _, body in webhook.received]
    assert any("data_quality.validate failed" in t and f"data quality failed for ds={ds}" in t for t in texts), texts


def test_rerunning_a_day_is_idempotent_and_a_manual_ds_param_wins_over_the_logical_date(airflow_db, dagbag, lake):
    ds, other = "2026-01-09", "2026-01-20"
    write_day(lake, ds, 500)
    write_day(lake, other, 300)  # landed too: validating the logical date instead of `ds` would succeed as well
    assert str(_run(dagbag, ds).state) == "success"
    snapshot = {z: lake.read_partition_files(z, ds) for z in (Zone.LANDING, Zone.VALIDATED, Zone.REPORTS_QUALITY)}
    before = len(asset_events("validated_data"))
    # The runbook's re-run of one day by hand: the `ds` Param, on a run whose logical date is another day.
    rerun = dagbag.get_dag("data_quality").test(logical_date=datetime.fromisoformat(other).replace(tzinfo=UTC), run_conf={"ds": ds})
    assert str(rerun.state) == "success"
    assert {z: lake.read_partition_files(z, ds) for z in snapshot} == snapshot
    assert lake.partitions(Zone.VALIDATED) == [datetime.fromisoformat(ds).date()]
    assert lake.partition_exists(Zone.LANDING, other)
    [event] = asset_events("validated_data")[before:]
    assert event["extra"]["ds"] == ds and event["extra"]["rows"] == 500


def test_missing_landing_partition_times_out_with_the_path(airflow_db, dagbag, lake, caplog):
    ds = "2026-01-11"
    dr = _run(dagbag, ds)
    assert str(dr.state) == "failed"
    assert task_states(dr)["wait_for_landing"] == "failed"
    assert "validate" not in task_states(dr) or task_states(dr)["validate"] != "success"
    msgs = [r.getMessage() for r in caplog.records if "no data landed at" in r.getMessage()]
    assert msgs and f"landing/ds={ds}" in msgs[-1]


def test_refresh_suite_param_learns_distributions_from_the_days_before(airflow_db, dagbag, lake, tmp_path,
                                                                       monkeypatch):
    """The contract-only suite of a new dataset gains its distribution warnings through the DAG's Param."""
    import shutil

    from ai_factory.quality.project import init_suite
    from ai_factory.quality.validate import run_quality_gate
    from ai_factory.settings import get_settings, reset_settings
    from ai_factory.spec import default_spec

    gx = tmp_path / "gx"
    gx.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "great_expectations" / "great_expectations.yml", gx)
    monkeypatch.setenv("AI_FACTORY_GX_ROOT", str(gx))
    monkeypatch.setenv("AI_FACTORY_QUALITY_REFERENCE_DAYS", "2")
    reset_settings()
    assert init_suite(default_spec(), get_settings())["reference_days"] == []
    for ds in ("2026-01-05", "2026-01-06", "2026-01-07"):
        write_day(lake, ds, 1000)
    for ds in ("2026-01-05", "2026-01-06"):
        assert run_quality_gate(ds)["status"] == "passed"
    suite = gx / "expectations" / "credit_default.json"
    contract = len(json.loads(suite.read_text())["expectations"])

    dag = dagbag.get_dag("data_quality")
    dr = dag.test(logical_date=datetime(2026, 1, 7, tzinfo=UTC), run_conf={"refresh_suite": True, "ds": None})
    assert str(dr.state) == "success"
    learned = json.loads(suite.read_text())
    assert learned["meta"]["distributions"]["days"] == ["2026-01-05", "2026-01-06"]  # before ds, not ds itself
    warnings = [e for e in learned["expectations"] if e.get("severity") == "warning"]
    assert len(warnings) == 2 * len(default_spec().numeric_features) and len(learned["expectations"]) > contract
    summary = lake.read_json(lake.partition_path(Zone.REPORTS_QUALITY, "2026-01-07") + "/summary.json")
    assert summary["expectations"]["evaluated"] == len(learned["expectations"])
    assert summary["expectations"]["warnings"] == 0

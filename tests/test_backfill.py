"""Airflow's own backfill (scheduler + api-server + dag-processor) over five days, one corrupt."""

from __future__ import annotations

from datetime import date

import pytest

from ai_factory.data.generate import write_day
from ai_factory.storage import Zone

from airflow_helpers import asset_events, create_backfill, run_task_states, wait_for_dag, wait_for_runs

pytestmark = pytest.mark.e2e

DAYS = [date(2026, 4, d) for d in range(1, 6)]
CORRUPT = date(2026, 4, 3)


def test_backfill_five_days_with_one_corrupt(airflow_stack, lake):
    for day in DAYS:
        write_day(lake, day, 800, corruption="unknown_category" if day == CORRUPT else None)
    before = len(asset_events("validated_data"))
    stack = airflow_stack()
    wait_for_dag("data_quality", stack=stack)
    proc = create_backfill(stack, "data_quality", DAYS[0], DAYS[-1])
    assert proc.returncode == 0, proc.stderr[-2000:]

    runs = wait_for_runs("data_quality", count=5, run_type="backfill", timeout=420)
    by_day = {r["logical_date"].date(): r for r in runs if r["logical_date"].date() in DAYS}
    assert sorted(by_day) == DAYS
    for day, run in by_day.items():
        expected = "failed" if day == CORRUPT else "success"
        assert run["state"] == expected, (day, run, run_task_states("data_quality", run["run_id"]))

    assert lake.partitions(Zone.VALIDATED) == [d for d in DAYS if d != CORRUPT]
    assert lake.partitions(Zone.QUARANTINE) == [CORRUPT]
    assert lake.partitions(Zone.LANDING) == [d for d in DAYS if d != CORRUPT]
    assert run_task_states("data_quality", by_day[CORRUPT]["run_id"])["validate"] == "failed"
    events = asset_events("validated_data")[before:]
    assert sorted(e["extra"]["ds"] for e in events) == [d.isoformat() for d in DAYS if d != CORRUPT]
    assert all(e["source_dag_id"] == "data_quality" for e in events)

"""SIGKILL the Airflow scheduler (its whole process group, as when its container dies) mid-backfill.

A new scheduler is started: every run completes, the task the kill cut short is retried
(heartbeat timeout → up_for_retry), and what reaches the lake is what an undisturbed run
writes: each day's validated partition holds exactly the landed bytes, one asset event per day.
"""

from __future__ import annotations

import time
from datetime import date

import pytest

from ai_factory.data.generate import write_day
from ai_factory.storage import Zone

from airflow_helpers import (
    asset_events,
    create_backfill,
    dag_runs,
    run_task_states,
    wait_for_dag,
    wait_for_runs,
)
from fault_helpers import kill_component, start_component, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

DAYS = [date(2026, 5, d) for d in range(1, 4)]


def _try_numbers(dag_id: str, task_id: str) -> dict[str, int]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.execute(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                         TaskInstance.task_id == task_id)).scalars().all()
        return {ti.run_id: ti.try_number for ti in tis}


def _latest_scheduler_job() -> int | None:
    from airflow.jobs.job import Job
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(select(func.max(Job.id)).where(Job.job_type == "SchedulerJob",
                                                             Job.latest_heartbeat.is_not(None)))


def test_scheduler_killed_mid_run_a_new_one_completes_it_and_nothing_is_lost(airflow_stack, lake):
    for day in DAYS:
        write_day(lake, day, 800)
    landed = {day: lake.read_partition_files(Zone.LANDING, day) for day in DAYS}
    before = len(asset_events("validated_data"))
    stack = airflow_stack(
        # Notice the dead scheduler's tasks in seconds, not the production minutes.
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="20",
        AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD="10",
        AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL="10",
    )
    wait_for_dag("data_quality", stack=stack)
    proc = create_backfill(stack, "data_quality", DAYS[0], DAYS[-1])
    assert proc.returncode == 0, proc.stderr[-2000:]

    def validating() -> str | None:
        for run in dag_runs("data_quality", "backfill"):
            if run_task_states("data_quality", run["run_id"]).get("validate") == "running":
                return run["run_id"]
        return None

    try:
        cut_run = wait_until("a validate task running", validating, timeout=480, every=0.2)
    except TimeoutError as exc:
        states = {r["run_id"]: (r["state"], run_task_states("data_quality", r["run_id"]))
                  for r in dag_runs("data_quality", "backfill")}
        raise AssertionError(f"{exc}; runs: {states}") from None
    kill_component(stack, "scheduler")
    killed_at = time.monotonic()
    first_job = _latest_scheduler_job()
    start_component(stack, "scheduler")
    wait_until("the new scheduler's heartbeat", lambda: _latest_scheduler_job() != first_job, timeout=180, every=0.2,
               alive=stack.procs["scheduler"])
    healthy_after = time.monotonic() - killed_at

    runs = wait_for_runs("data_quality", count=len(DAYS), run_type="backfill", timeout=420)
    recovered_after = time.monotonic() - killed_at
    by_day = {r["logical_date"].date(): r for r in runs}
    assert sorted(by_day) == DAYS
    for day, run in by_day.items():
        assert run["state"] == "success", (day, run, run_task_states("data_quality", run["run_id"]))
    tries = _try_numbers("data_quality", "validate")
    assert tries[cut_run] >= 2, tries  # the kill cut a running task; it ran again

    for day in DAYS:  # a task run twice wrote the same bytes, once, where they belong
        assert lake.read_partition_files(Zone.VALIDATED, day) == landed[day]
    assert lake.partitions(Zone.VALIDATED) == DAYS and lake.partitions(Zone.QUARANTINE) == []
    events = asset_events("validated_data")[before:]
    assert sorted(e["extra"]["ds"] for e in events) == [d.isoformat() for d in DAYS]
    print(f"\nfault scheduler-kill: new scheduler heartbeating {healthy_after:.1f}s after the kill; all runs done "
          f"{recovered_after:.1f}s after it; tries {sorted(tries.values())}")

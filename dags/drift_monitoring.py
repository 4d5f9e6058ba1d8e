"""
### drift_monitoring — nightly Evidently drift check that triggers retraining

One run per day `ds` (data-interval schedule, `catchup=True`: `airflow backfill create` over a
range checks each day in it; manual runs may pass `ds`):

1. **wait_for_inputs** — reschedule-mode sensor until the day has served predictions
   (`predictions/ds=…`), a validated partition, or a quarantine.
2. **assemble** — current data = the day's served inputs, else the validated partition;
   reference = the champion's reference sample (`reference.provider` in
   `config/drift.yaml`), else the last validated days. Skips a quarantined day and a day
   with no reference yet (cold start); returns what is compared (XCom).
3. **report** — Evidently's default drift tests on every row (fast path), quality against
   the reference when labels are known, the Evidently HTML/JSON report (sampled on large
   days) and `summary.json` under `reports/drift/ds=…`; returns the summary (XCom).
4. **decide** — drift if the share of drifted features ≥ threshold, a key column drifted, or
   quality dropped by more than its margin. No drift: the run ends here (no event).
5. **emit_drift_event** — the `drift_detected` Asset event (extras: ds, share, columns,
   reason), which schedules `training`; notifies (log, email/Slack when configured).

Failures notify too. Re-running a day replaces that day's reports and nothing else.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from ai_factory.orchestration.assets import DRIFT_DETECTED
from ai_factory.orchestration.defaults import default_args
from ai_factory.orchestration.notify import FactoryNotifier
from ai_factory.orchestration.partitions import resolve_ds
from ai_factory.settings import get_settings

SETTINGS = get_settings()
REPORT_TASK = "report"
DRIFT_NOTIFIER = FactoryNotifier.drift(
    subject="[AI Factory] drift detected for ds={{ ti.xcom_pull(task_ids='" + REPORT_TASK + "')['ds'] }}",
    message="{{ ti.xcom_pull(task_ids='" + REPORT_TASK + "')['reason'] }} "
            "Report: {{ ti.xcom_pull(task_ids='" + REPORT_TASK + "')['report_path'] }}/report.html",
)


@dag(
    dag_id="drift_monitoring",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=SETTINGS.start_datetime,
    catchup=True,
    max_active_runs=2,
    dagrun_timeout=timedelta(seconds=SETTINGS.sensor_timeout_seconds) + timedelta(hours=1),
    max_consecutive_failed_dag_runs=0,
    default_args=default_args(retries=2, execution_timeout=timedelta(minutes=30)),
    params={"ds": Param(None, type=["null", "string"], format="date", title="Partition date",
                        description="Check this day instead of the run's logical date (YYYY-MM-DD).")},
    tags=["ai-factory", "monitoring", "drift", "evidently"],
    doc_md=__doc__,
)
def drift_monitoring() -> None:
    @task.sensor(task_id="wait_for_inputs", poke_interval=SETTINGS.sensor_poke_seconds,
                 timeout=SETTINGS.sensor_timeout_seconds, mode="reschedule", retries=0, execution_timeout=None)
    def wait_for_inputs(**context) -> bool:
        from ai_factory.monitoring.assembly import inputs_arrived
        from ai_factory.storage import DataLake

        return inputs_arrived(DataLake.from_settings(), resolve_ds(context))

    @task
    def assemble(**context) -> dict:
        """Which current data and which reference the day is checked with."""
        from ai_factory.orchestration.drift import assemble_inputs

        return assemble_inputs(resolve_ds(context))

    @task(task_id=REPORT_TASK)
    def report(plan: dict) -> dict:
        """Drift tests, quality, Evidently report and summary.json for the day."""
        from ai_factory.orchestration.drift import check_day

        return check_day(plan)

    @task.short_circuit
    def decide(summary: dict) -> bool:
        """Continue to the Asset event only on drift."""
        return bool(summary["drift"])

    @task(outlets=[DRIFT_DETECTED], on_success_callback=DRIFT_NOTIFIER)
    def emit_drift_event(summary: dict, *, outlet_events: Any = None) -> dict:
        extra = {k: summary[k] for k in ("ds", "share", "columns", "reason")}
        outlet_events[DRIFT_DETECTED].extra = extra
        return extra

    plan = assemble()
    wait_for_inputs() >> plan
    summary = report(plan)
    decide(summary) >> emit_drift_event(summary)


drift_monitoring()

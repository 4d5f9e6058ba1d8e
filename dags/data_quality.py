"""
### data_quality — the nightly Great Expectations gate

One run per day `ds` (the run's logical date; data-interval schedule, `catchup=True`, so
`airflow backfill create` over a range validates each day in it):

1. **wait_for_landing** — reschedule-mode sensor on `landing/ds=…`; fails with the path
   after `AI_FACTORY_SENSOR_TIMEOUT` seconds.
2. **validate** — runs the GX checkpoint (suite built from the dataset spec) on the
   partition and updates Data Docs.
   * pass: publishes the partition atomically to `validated/ds=…` and emits the
     `validated_data` Asset event (extras: ds, rows, path), which schedules `training`;
   * fail: moves the partition byte-for-byte to `quarantine/ds=…` beside its validation
     result and fails with the failed expectations, the columns and where the report is.
     Unreadable or schema-broken files are quarantined the same way.

Re-running a day is idempotent: it replaces that day's outputs and nothing else. A
quarantined day re-validates from quarantine (same outcome) until ops land a fixed file.
Manual runs may pass `ds` to validate a specific day, and `refresh_suite=true` to relearn the
suite's distribution expectations first from the latest validated days before `ds`
(`AI_FACTORY_QUALITY_REFERENCE_DAYS` of them; fewer: the spec's contract alone), as
`ai-factory quality init` does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from ai_factory.orchestration.assets import VALIDATED_DATA
from ai_factory.orchestration.defaults import default_args
from ai_factory.orchestration.partitions import LandingPartitionSensor, resolve_ds
from ai_factory.settings import get_settings

SETTINGS = get_settings()


@dag(
    dag_id="data_quality",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=SETTINGS.start_datetime,
    catchup=True,
    max_active_runs=4,
    dagrun_timeout=timedelta(seconds=SETTINGS.sensor_timeout_seconds) + timedelta(hours=1),
    max_consecutive_failed_dag_runs=0,
    default_args=default_args(retries=2, execution_timeout=timedelta(minutes=30)),
    params={
        "ds": Param(None, type=["null", "string"], format="date", title="Partition date",
                    description="Validate this day instead of the run's logical date (YYYY-MM-DD)."),
        "refresh_suite": Param(False, type="boolean", title="Refresh the suite",
                               description="Relearn the distribution expectations from the latest validated days "
                                           "before this day, then validate (as `ai-factory quality init`)."),
    },
    tags=["ai-factory", "data-quality", "great-expectations"],
    doc_md=__doc__,
)
def data_quality() -> None:
    wait = LandingPartitionSensor(
        task_id="wait_for_landing",
        poke_interval=SETTINGS.sensor_poke_seconds,
        timeout=SETTINGS.sensor_timeout_seconds,
        execution_timeout=None,
        retries=0,
    )

    @task(outlets=[VALIDATED_DATA])
    def validate(*, outlet_events: Any = None, **context) -> dict:
        """Validate the day; publish to validated/ or quarantine with a clear failure."""
        from airflow.sdk.exceptions import AirflowFailException

        from ai_factory.quality.project import refresh_suite
        from ai_factory.quality.validate import QualityGateFailed, run_quality_gate

        ds = resolve_ds(context)
        if context["params"].get("refresh_suite"):
            refresh_suite(before=ds)
        try:
            summary = run_quality_gate(ds)
        except QualityGateFailed as exc:
            raise AirflowFailException(str(exc)) from exc
        outlet_events[VALIDATED_DATA].extra = {
            "ds": summary["ds"], "rows": summary["rows"], "path": summary["path"],
        }
        return {k: summary[k] for k in ("ds", "status", "rows", "path", "report", "data_docs_page")}

    wait >> validate()


data_quality()

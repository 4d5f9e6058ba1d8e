"""Which day a DAG run works on, and the sensor that waits for that day's landing partition."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

log = logging.getLogger(__name__)


def resolve_ds(context: Any) -> str:
    """The run's partition date: the ``ds`` param when given (manual runs), else the logical date.

    Time-scheduled DAGs use data-interval timetables, so a scheduled or backfilled run's
    logical date is the start of the day it covers.
    """
    params = context.get("params") or {}
    explicit = params.get("ds")
    if explicit:
        try:
            return date.fromisoformat(str(explicit)).isoformat()
        except ValueError:
            raise AirflowFailException(f"param ds={explicit!r} is not a date (YYYY-MM-DD)") from None
    ds = context.get("ds")
    if not ds:
        raise AirflowFailException(
            "this run has no logical date and no 'ds' param: trigger it with a logical date or set ds"
        )
    return str(ds)


class LandingPartitionSensor(BaseSensorOperator):
    """Wait until ``landing/ds=…`` (or a kept ``quarantine/ds=…``) holds files for the run's day.

    Use ``mode="reschedule"`` so a waiting sensor does not hold a worker slot. On timeout the
    task fails with the path it was waiting for.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        from ai_factory.quality.validate import partition_arrived
        from ai_factory.storage import DataLake, Zone

        ds = resolve_ds(context)
        lake = DataLake.from_settings()
        arrived = partition_arrived(lake, ds)
        log.info("ds=%s: landing partition %s %s", ds, lake.partition_path(Zone.LANDING, ds),
                 "is there" if arrived else "has not arrived yet")
        return arrived

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            from ai_factory.storage import DataLake, Zone

            path = DataLake.from_settings().partition_path(Zone.LANDING, resolve_ds(context))
            raise AirflowSensorTimeout(
                f"no data landed at {path} within {self.timeout:.0f}s; land the day's file there "
                f"and clear this task to retry"
            ) from exc

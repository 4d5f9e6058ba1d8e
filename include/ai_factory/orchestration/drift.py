"""Airflow adapters for the drift_monitoring DAG: call the monitoring package, map its errors.

A quarantined day, or a day with no reference yet (cold start), is *skipped* (the data-quality
DAG already failed loudly for the first; there is nothing to compare for the second). Bad
inputs fail without retries (a retry would read the same bad file); anything else fails and
is retried by the DAG's policy. Heavy imports stay inside the functions: DAG files import this
module at parse time.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def assemble_inputs(ds: str) -> dict[str, Any]:
    """Plan the day's check (see :func:`ai_factory.monitoring.assembly.plan_inputs`) as a JSON-able dict."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from ai_factory.monitoring.assembly import (
        AssemblyError,
        CurrentDataQuarantined,
        NoReferenceError,
        plan_inputs,
        resolve_provider,
    )
    from ai_factory.monitoring.config import load_config
    from ai_factory.spec import default_spec
    from ai_factory.storage import DataLake

    spec = default_spec()
    config = load_config().check_against(spec)
    try:
        plan = plan_inputs(DataLake.from_settings(), ds, spec, config, resolve_provider(config.reference.provider))
    except (CurrentDataQuarantined, NoReferenceError) as exc:
        log.warning("skipping the drift check: %s", exc)
        raise AirflowSkipException(str(exc)) from exc
    except AssemblyError as exc:
        raise AirflowFailException(str(exc)) from exc
    return plan.model_dump(mode="json")


def check_day(plan: dict[str, Any]) -> dict[str, Any]:
    """Run the check for a planned day and return the summary's XCom view."""
    from airflow.sdk.exceptions import AirflowFailException

    from ai_factory.monitoring.assembly import AssemblyError, InputPlan
    from ai_factory.monitoring.monitor import run_drift_check
    from ai_factory.monitoring.stattests import DriftInputError

    parsed = InputPlan.model_validate(plan)
    try:
        check = run_drift_check(parsed.ds, plan=parsed)
    except (AssemblyError, DriftInputError) as exc:
        raise AirflowFailException(str(exc)) from exc
    return check.summary.xcom(check.partition_url)

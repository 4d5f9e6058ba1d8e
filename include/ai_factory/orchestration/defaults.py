"""Reliability defaults every DAG uses: retries with backoff, timeouts, the failure notifier.

The notifier lives here, in ``default_args``, so no DAG can forget it: every failed task
(a quarantined day included) logs a greppable line and goes out by email and/or Slack when
those connections exist (:mod:`ai_factory.orchestration.notify`).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from ai_factory.orchestration.notify import FactoryNotifier

log = logging.getLogger(__name__)

OWNER = "ai-factory"


def on_failure(context: Any) -> None:
    """Log a one-line, greppable account of a failed task (notifiers add email/Slack on top)."""
    ti = context.get("ti") or context.get("task_instance")
    exc = context.get("exception")
    log.error(
        "AI-FACTORY FAILURE dag=%s task=%s run=%s try=%s: %s",
        getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?"), getattr(ti, "run_id", "?"),
        getattr(ti, "try_number", "?"), exc,
    )


def default_args(
    retries: int = 2,
    retry_delay: timedelta = timedelta(minutes=1),
    execution_timeout: timedelta = timedelta(hours=1),
    **overrides: Any,
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": execution_timeout,
        "on_failure_callback": [on_failure, FactoryNotifier()],
    }
    args.update(overrides)
    return args

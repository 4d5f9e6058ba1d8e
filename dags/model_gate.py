"""
### model_gate — does the new model replace the champion?

Runs when `training` registers a version (`model_candidate`), or by hand with `version`.

1. **judge** — re-scores the challenger *and* the champion on the same holdout (the newest
   validated partition; the champion's stored numbers are not used), then applies the rules
   of `include/ai_factory/config/gate.yaml`: absolute floor, primary metric (beat the champion
   by `min_delta`, or stay within `tolerance` when trained on newer data), secondary metrics
   within tolerance, inference-latency budget. Every decision is recorded in the registry with
   all numbers and the deciding rule (`ai-factory models show <version>`).
2. **decide** — approved → **approve** emits `approved_candidate` {version, decision}, which
   schedules `deployment`; rejected → **report_rejection** logs the reason with the numbers and
   the run still succeeds (a rejected challenger is a normal night, not an incident).

Problems that make judging impossible (no holdout, a challenger that saw the holdout, a model
that does not load) fail the run loudly.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from ai_factory.orchestration.assets import APPROVED_CANDIDATE, MODEL_CANDIDATE
from ai_factory.orchestration.defaults import default_args

APPROVE = "approve"
REJECT = "report_rejection"


def _event_version(context: dict[str, Any]) -> str | None:
    events = (context.get("triggering_asset_events") or {}).get(MODEL_CANDIDATE) or []
    return (events[-1].extra or {}).get("version") if events else None


@dag(
    dag_id="model_gate",
    schedule=MODEL_CANDIDATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    max_consecutive_failed_dag_runs=5,
    default_args=default_args(retries=2, retry_delay=timedelta(seconds=30), execution_timeout=timedelta(minutes=30)),
    tags=["ai-factory", "gate", "models"],
    doc_md=__doc__,
    params={
        "version": Param(None, type=["null", "string"], title="Model version",
                         description="Judge this registry version (default: the version the training run registered)."),
    },
)
def model_gate() -> None:
    @task
    def judge(params: dict[str, Any] | None = None, **context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from ai_factory.gating import GateError, run_gate

        version = (params or {}).get("version") or _event_version(context)
        if not version:
            raise AirflowFailException("no version to judge: trigger from model_candidate or set the 'version' param")
        try:
            decision = run_gate(version)
        except GateError as exc:
            raise AirflowFailException(str(exc)) from exc
        return {"version": decision.version, "decision": decision.decision, "approved": decision.approved,
                "rule": decision.deciding_rule, "reason": decision.reason, "champion": decision.champion}

    @task.branch
    def decide(verdict: dict[str, Any], approve_task: str, reject_task: str) -> str:
        return approve_task if verdict["approved"] else reject_task

    @task(outlets=[APPROVED_CANDIDATE])
    def approve(verdict: dict[str, Any], *, outlet_events: Any = None) -> dict[str, Any]:
        outlet_events[APPROVED_CANDIDATE].extra = {"version": verdict["version"], "decision": verdict["reason"]}
        return verdict

    @task
    def report_rejection(verdict: dict[str, Any]) -> dict[str, Any]:
        import logging

        logging.getLogger("ai_factory.gating").warning("REJECTED %s (rule %s): %s — deployment skipped",
                                                       verdict["version"], verdict["rule"], verdict["reason"])
        return verdict

    verdict = judge()
    decide(verdict, APPROVE, REJECT) >> [approve(verdict), report_rejection(verdict)]


model_gate()

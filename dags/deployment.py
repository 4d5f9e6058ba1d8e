"""
### deployment — ship an approved model: build → start beside → smoke test → switch → promote

Runs on `approved_candidate` (from `model_gate`), or by hand: **deploy** a given `version`, or
**rollback** to the previous champion. Target `local` (embedded default: managed
`bentoml serve` processes behind the stable address `AI_FACTORY_SERVE_HOST:PORT`) or
`kubernetes` (Deployment + Service of the Bento image, rolling update).

1. **plan** — which version, replacing which champion, where.
2. **build** — `bentoml build bentos/ --arg model_tag=<name:version>`: one Bento per version.
3. **start_candidate** — the new version starts *beside* the live one (its own port / a
   candidate Deployment); the live version keeps serving all traffic.
4. **smoke_test** — holdout rows through the candidate's endpoint must equal the registry
   model's offline predictions (tolerance 1e-4) and name the right version.
5. **switch** — the stable address now routes to the candidate (checked through it).
6. **promote** — only now the registry's `champion` alias moves (compare-and-set) and the
   `champion` Asset event {version, previous} is emitted.
7. **retire_previous** — the old version is drained and stopped.

**rollback** runs if any step fails: traffic goes back to the previous champion, the candidate
is stopped, the alias does not move, and the run fails with the step's reason.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, chain, dag, task

from ai_factory.orchestration.assets import APPROVED_CANDIDATE, CHAMPION
from ai_factory.orchestration.defaults import default_args


@dag(
    dag_id="deployment",
    schedule=APPROVED_CANDIDATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    max_consecutive_failed_dag_runs=3,
    default_args=default_args(retries=1, retry_delay=timedelta(seconds=5), execution_timeout=timedelta(minutes=20)),
    tags=["ai-factory", "deployment", "bentoml"],
    doc_md=__doc__,
    params={
        "action": Param("deploy", type="string", enum=["deploy", "rollback"], title="Action",
                        description="deploy a version, or roll back to the previous champion."),
        "version": Param(None, type=["null", "string"], title="Model version",
                         description="Version to deploy (default: the approved candidate that triggered the run)."),
        "target": Param(None, type=["null", "string"], enum=[None, "local", "kubernetes"], title="Target",
                        description="Where to serve (default: AI_FACTORY_SERVE_TARGET, else local)."),
    },
)
def deployment() -> None:
    # Every step reads the run's DeploymentPlan from its JSON in XCom (docs/architecture.md, Hand-offs).
    @task
    def plan(params: dict[str, Any] | None = None, **context: Any) -> dict[str, Any]:
        from ai_factory.deployment import flow

        events = (context.get("triggering_asset_events") or {}).get(APPROVED_CANDIDATE) or []
        p = params or {}
        return flow.plan(p.get("action") or "deploy", version=p.get("version"), target=p.get("target"),
                         event_version=(events[-1].extra or {}).get("version") if events else None,
                         ).model_dump(mode="json")

    @task
    def build(p: dict[str, Any]) -> str:
        from ai_factory.deployment import flow

        return flow.build(flow.DeploymentPlan.model_validate(p))

    @task
    def start_candidate(p: dict[str, Any], bento: str) -> dict[str, Any]:
        from ai_factory.deployment import flow

        return flow.start_candidate(flow.DeploymentPlan.model_validate(p), bento)

    @task
    def smoke_test(p: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
        from ai_factory.deployment import flow

        return flow.smoke(flow.DeploymentPlan.model_validate(p), candidate)

    @task
    def switch(p: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
        from ai_factory.deployment import flow

        return flow.switch(flow.DeploymentPlan.model_validate(p), candidate)

    @task(outlets=[CHAMPION])
    def promote(p: dict[str, Any], *, outlet_events: Any = None) -> dict[str, Any]:
        from ai_factory.deployment import flow

        promoted = flow.promote(flow.DeploymentPlan.model_validate(p))
        outlet_events[CHAMPION].extra = {"version": promoted["version"], "previous": promoted["previous"]}
        return promoted

    @task
    def retire_previous(p: dict[str, Any], switched: dict[str, Any]) -> dict[str, Any]:
        from ai_factory.deployment import flow

        return flow.retire(flow.DeploymentPlan.model_validate(p), switched)

    @task(trigger_rule="one_failed")
    def rollback(p: dict[str, Any] | None = None) -> dict[str, Any]:
        from ai_factory.deployment import flow

        return flow.rollback(flow.DeploymentPlan.model_validate(p) if p else None)

    p = plan()
    bento = build(p)
    candidate = start_candidate(p, bento)
    smoked = smoke_test(p, candidate)
    switched = switch(p, candidate)
    promoted = promote(p)
    chain(smoked, switched, promoted, retire_previous(p, switched))
    [bento, candidate, smoked, switched, promoted] >> rollback(p)


deployment()

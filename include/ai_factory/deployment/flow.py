"""The deployment steps the ``deployment`` DAG runs: plan → build → start → smoke → switch → promote → retire.

Every step takes the run's :class:`DeploymentPlan` (XCom carries its JSON:
``plan.model_dump(mode="json")`` out, ``DeploymentPlan.model_validate(xcom)`` in) and returns a
small JSON-able dict. The champion alias moves only in
:func:`promote`, after the new version has passed its smoke test and taken the traffic; any
failure before that leaves the alias where it was, and :func:`rollback` puts the traffic back
on the previous champion and stops the candidate. So a failed deploy never changes what
serves or what the registry calls champion.

Targets: ``local`` (:class:`~ai_factory.deployment.local.LocalTarget`, the embedded default)
and ``kubernetes`` (:class:`~ai_factory.deployment.kubernetes.KubernetesTarget`). Both expose
``start_candidate``, ``switch``, ``retire`` and ``rollback`` over the same plan.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ai_factory.configfile import StrictModel

if TYPE_CHECKING:
    from ai_factory.deployment.local import LocalTarget
    from ai_factory.registry import ModelRegistry

log = logging.getLogger(__name__)

TARGETS = ("local", "kubernetes")
ACTIONS = ("deploy", "rollback")
TARGET_ENV = "AI_FACTORY_SERVE_TARGET"


class PlanError(ValueError):
    """The requested deployment cannot be planned (no such version, nothing to roll back to)."""


class DeploymentPlan(StrictModel):
    """What the ``deployment`` DAG's plan task hands every later step: which version goes out, where, replacing what."""

    action: Literal["deploy", "rollback"]
    version: str
    tag: str  # the model's store tag (name:version) the Bento is built from
    previous: str | None  # the champion when planned (None: the first deploy); promote compares against it
    target: Literal["local", "kubernetes"]
    reason: str  # recorded with the champion alias when it moves


class DeploymentTarget(Protocol):
    """What a target (local processes, a Kubernetes namespace) does for the flow."""

    def start_candidate(self, p: DeploymentPlan, bento: str) -> dict[str, Any]: ...

    def switch(self, p: DeploymentPlan, candidate: dict[str, Any]) -> dict[str, Any]: ...

    def retire(self, p: DeploymentPlan, switched: dict[str, Any]) -> dict[str, Any]: ...

    def rollback(self, p: DeploymentPlan) -> dict[str, Any]: ...


def default_target() -> str:
    target = os.environ.get(TARGET_ENV) or "local"
    if target not in TARGETS:
        raise PlanError(f"{TARGET_ENV}={target!r} must be one of {', '.join(TARGETS)}")
    return target


def get_target(name: str) -> DeploymentTarget:
    if name == "local":
        from ai_factory.deployment.local import LocalTarget

        return _LocalSteps(LocalTarget.from_settings())
    if name == "kubernetes":
        from ai_factory.deployment.kubernetes import KubernetesTarget

        return KubernetesTarget.from_settings()
    raise PlanError(f"unknown deployment target {name!r}; choose from {', '.join(TARGETS)}")


# -- plan -------------------------------------------------------------------------------------------
def plan(action: str = "deploy", version: str | None = None, target: str | None = None,
         event_version: str | None = None, registry: ModelRegistry | None = None) -> DeploymentPlan:
    """Which version goes out, replacing which champion, where."""
    from ai_factory.registry import ModelRegistry

    if action not in ACTIONS:
        raise PlanError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    registry = registry or ModelRegistry.from_settings()
    target = target or default_target()
    if target not in TARGETS:
        raise PlanError(f"unknown deployment target {target!r}; choose from {', '.join(TARGETS)}")
    champion = registry.champion()
    previous = champion.version if champion else None
    if action == "rollback":
        history = registry.champion_history()
        back_to = history[-1].get("previous") if history else None
        if not back_to:
            raise PlanError(f"nothing to roll back to: model '{registry.name}' has "
                            f"{'no champion' if not history else 'no previous champion'}")
        chosen, reason = back_to, f"rollback from {previous} to the previous champion {back_to}"
    else:
        ref = version or event_version
        if not ref:
            raise PlanError("no version to deploy: pass the 'version' param or trigger from an approved candidate")
        chosen = registry.get(ref).version
        decision = registry.latest_decision(chosen)
        if decision is None or decision["decision"] != "approved":
            log.warning("deploying %s although the gate has not approved it (latest decision: %s)", chosen,
                        decision and decision["decision"])
        reason = f"deployed {chosen} (approved by {decision['gate']}: {decision['reason']})" if (
            decision and decision["decision"] == "approved") else f"deployed {chosen} by request"
    mv = registry.get(chosen)
    out = DeploymentPlan.model_validate({"action": action, "version": mv.version, "tag": mv.tag,
                                         "previous": previous, "target": target, "reason": reason})
    log.info("deployment plan: %s", out)
    return out


# -- steps ---------------------------------------------------------------------------------------------
def build(p: DeploymentPlan) -> str:
    from ai_factory.deployment.bento import build_bento

    return build_bento(p.tag, wheel=p.target == "kubernetes")


def start_candidate(p: DeploymentPlan, bento: str) -> dict[str, Any]:
    return get_target(p.target).start_candidate(p, bento)


def smoke(p: DeploymentPlan, candidate: dict[str, Any]) -> dict[str, Any]:
    from ai_factory.deployment.smoke import smoke_test

    return smoke_test(candidate["url"], p.version).to_dict()


def switch(p: DeploymentPlan, candidate: dict[str, Any]) -> dict[str, Any]:
    return get_target(p.target).switch(p, candidate)


def promote(p: DeploymentPlan, registry: ModelRegistry | None = None) -> dict[str, Any]:
    """Move the champion alias (compare-and-set against the planned previous champion)."""
    from ai_factory.registry import ModelRegistry

    registry = registry or ModelRegistry.from_settings()
    record = registry.set_champion(p.version, reason=p.reason, actor="deployment", expected=p.previous,
                                   check_expected=True)
    return {"version": record["version"], "previous": record["previous"], "since": record["since"]}


def retire(p: DeploymentPlan, switched: dict[str, Any]) -> dict[str, Any]:
    return get_target(p.target).retire(p, switched)


def rollback(p: DeploymentPlan | None) -> dict[str, Any]:
    """Undo a failed deploy: traffic back on the previous champion, candidate stopped, alias untouched."""
    if not p:
        log.warning("rollback: the deployment was never planned; nothing to undo")
        return {"rolled_back": False}
    out = get_target(p.target).rollback(p)
    log.warning("rolled back the deployment of %s: %s", p.version, out)
    return out


# -- local target adapter ------------------------------------------------------------------------------
class _LocalSteps:
    """The flow's step interface over :class:`~ai_factory.deployment.local.LocalTarget`."""

    def __init__(self, target: LocalTarget) -> None:
        self.target = target

    def start_candidate(self, p: DeploymentPlan, bento: str) -> dict[str, Any]:
        state = self.target.read_state()
        existing = (state.get("candidates") or {}).get(p.version)
        from ai_factory.deployment.local import pid_alive

        if existing and existing.get("bento") == bento and pid_alive(existing.get("pid")):
            log.info("candidate %s is already running on port %s (task retry); reusing it", p.version,
                     existing["port"])
            return existing
        return self.target.start_backend(p.version, bento)

    def switch(self, p: DeploymentPlan, candidate: dict[str, Any]) -> dict[str, Any]:
        from ai_factory.deployment.local import DeploymentError, http_post_json
        from ai_factory.deployment.smoke import SmokeTestFailed

        previous = self.target.switch_to(candidate, reason=p.reason)
        # Confirm through the stable address, not just the candidate's own port.
        status, info = http_post_json(f"{self.target.url}/model_info", {}, timeout=10)
        if status != 200 or info.get("model_version") != p.version:
            raise DeploymentError(f"after the switch {self.target.url} serves {info!r} (HTTP {status}), "
                                  f"expected {p.version}")
        if previous is not None and previous.get("version") == p.version and previous.get("pid") != candidate.get(
                "pid"):
            log.info("replaced a running copy of the same version %s", p.version)
        try:
            from ai_factory.deployment.smoke import smoke_test

            smoke_test(self.target.url, p.version, rows=16, single=1)
        except SmokeTestFailed as exc:
            raise DeploymentError(f"through the stable address after the switch: {exc}") from exc
        return {"url": self.target.url, "active": candidate, "replaced": previous}

    def retire(self, p: DeploymentPlan, switched: dict[str, Any]) -> dict[str, Any]:
        old = switched.get("replaced")
        if not old or old.get("pid") == switched["active"].get("pid"):
            return {"stopped": None}
        self.target.retire(old)
        return {"stopped": {k: old.get(k) for k in ("version", "port", "pid")}}

    def rollback(self, p: DeploymentPlan) -> dict[str, Any]:
        from ai_factory.deployment.local import pid_alive
        from ai_factory.registry import ModelRegistry

        champion = ModelRegistry.from_settings().champion()
        if champion is not None and champion.version == p.version and p.previous != p.version:
            log.warning("rollback: %s was already promoted; leaving it serving", p.version)
            return {"rolled_back": False, "reason": "already promoted"}
        state = self.target.read_state()
        active = state.get("active") or {}
        candidates = state.get("candidates") or {}
        restored = None
        if active.get("version") == p.version and p.previous != p.version:
            old = candidates.get(f"{p.previous}@retiring")
            if old and pid_alive(old.get("pid")):
                self.target.switch_to(old, reason=f"rollback of {p.version}")
                restored = old["version"]
            else:
                log.error("rollback: the previous champion's server is gone; the front keeps %s", p.version)
        stopped = []
        state = self.target.read_state()
        serving_pid = (state.get("active") or {}).get("pid")
        for key, backend in list((state.get("candidates") or {}).items()):
            if key in (p.version, f"{p.version}@retiring") and backend and backend.get("pid") != serving_pid:
                self.target.stop_backend(backend)
                with self.target._locked() as st:
                    st.setdefault("candidates", {}).pop(key, None)
                stopped.append(backend.get("port"))
        return {"rolled_back": True, "restored": restored, "stopped_ports": stopped,
                "serving": (self.target.read_state().get("active") or {}).get("version")}

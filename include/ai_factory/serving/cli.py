"""``ai-factory gate``, ``ai-factory deploy`` and ``ai-factory serve …`` (heavy imports inside the commands)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ai_factory.cliutil import emit as _emit

log = logging.getLogger("ai_factory.serving")


def cmd_gate(args: argparse.Namespace) -> int:
    from ai_factory.gating import GateError, run_gate

    try:
        decision = run_gate(args.version)
    except GateError as exc:
        log.error("%s", exc)
        return 2
    _emit(decision.to_dict())
    return 0 if decision.approved else 1


def run_deployment(action: str, version: str | None, target: str | None) -> dict[str, Any]:
    """The deployment DAG's steps in one process, with the same rollback on failure."""
    from ai_factory.deployment import flow

    p = flow.plan(action, version=version, target=target)
    try:
        bento = flow.build(p)
        candidate = flow.start_candidate(p, bento)
        smoke = flow.smoke(p, candidate)
        switched = flow.switch(p, candidate)
        promoted = flow.promote(p)
    except Exception:
        flow.rollback(p)
        raise
    retired = flow.retire(p, switched)
    return {"plan": p.model_dump(mode="json"), "bento": bento, "smoke": smoke, "promoted": promoted, "retired": retired,
            "url": switched.get("url")}


def cmd_deploy(args: argparse.Namespace) -> int:
    _emit(run_deployment("rollback" if args.rollback else "deploy", args.version, args.target))
    return 0


def _local_target() -> Any:
    """The local target of the running stack: ``ai-factory up`` records where its state lives."""
    from ai_factory.deployment.local import LocalTarget
    from ai_factory.orchestration.local import adopt_running_stack

    adopted = adopt_running_stack()
    if adopted:
        log.info("using the stack recorded in %s (model store %s)", adopted["file"], adopted["model_store"])
    return LocalTarget.from_settings()


def cmd_serve_status(args: argparse.Namespace) -> int:
    from ai_factory.deployment.local import marked_processes, pid_alive

    target = _local_target()
    state = target.read_state()
    active = state.get("active") or {}
    procs = marked_processes(target.home)
    _emit({"url": target.url, "serving_home": str(target.home), "front": target.front_status(), "active": active,
           "active_alive": pid_alive(active.get("pid")), "standby": state.get("standby"),
           "candidates": state.get("candidates"),
           "orphans": {k: [pid for pid, _ in v] for k, v in procs.items() if not any(lead for _, lead in v)},
           "history": (state.get("history") or [])[-5:]})
    return 0


def cmd_serve_stop(args: argparse.Namespace) -> int:
    _local_target().stop_all()
    return 0


def cmd_serve_ensure(args: argparse.Namespace) -> int:
    """Serve the champion at the stable address if nothing serves it (after a reboot, ``make up``)."""
    from ai_factory.deployment.local import pid_alive
    from ai_factory.registry import ModelRegistry

    target = _local_target()
    if getattr(args, "forget_processes", False):
        target.forget_processes("ensure --forget-processes: the serving host restarted")
    # Workers whose arbiter was killed keep serving (and holding memory) unseen: stop them first,
    # so that a dead backend is replaced, not doubled.
    reaped = target.reap_orphans()
    champion = ModelRegistry.from_settings().champion()
    if champion is None:
        log.info("no champion yet: nothing to serve")
        _emit({"serving": None})
        return 0
    active = target.read_state().get("active") or {}
    if active.get("version") == champion.version:
        revived = None if pid_alive(active.get("pid")) else target.revive_active(reason="serve ensure")
        target.ensure_front()
        _emit({"serving": champion.version, "url": target.url, "restarted": revived is not None,
               "orphans_stopped": reaped})
        return 0
    from ai_factory.deployment.bento import build_bento

    backend = target.start_backend(champion.version, build_bento(champion.tag))
    target.switch_to(backend, reason="ensure: champion was not being served")
    _emit({"serving": champion.version, "url": target.url, "restarted": True, "orphans_stopped": reaped})
    return 0


def cmd_serve_manifests(args: argparse.Namespace) -> int:
    from ai_factory.deployment.kubernetes import ServeK8sConfig, render_manifests, to_yaml

    sys.stdout.write(to_yaml(*render_manifests(ServeK8sConfig.from_settings(), args.version)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gate", help="judge a model version against the champion and record the decision")
    g.add_argument("--version", required=True)
    g.set_defaults(func=cmd_gate)
    d = sub.add_parser("deploy", help="build, start beside, smoke-test, switch and promote a version (or roll back)")
    d.add_argument("--version", help="version to deploy")
    d.add_argument("--rollback", action="store_true", help="go back to the previous champion")
    d.add_argument("--target", choices=["local", "kubernetes"])
    d.set_defaults(func=cmd_deploy)
    s = sub.add_parser("serve", help="the local model server behind the stable address")
    ssub = s.add_subparsers(dest="serve_cmd", required=True)
    ssub.add_parser("status", help="what serves at the stable address").set_defaults(func=cmd_serve_status)
    ssub.add_parser("stop", help="stop the front and every model server").set_defaults(func=cmd_serve_stop)
    e = ssub.add_parser("ensure", help="serve the champion if nothing does")
    e.add_argument("--forget-processes", action="store_true",
                   help="the host or container restarted: treat every recorded server as gone (pids are "
                        "not comparable across restarts) and start the champion afresh")
    e.set_defaults(func=cmd_serve_ensure)
    m = ssub.add_parser("manifests", help="print the Kubernetes Deployment + Service for a version")
    m.add_argument("--version", required=True)
    m.set_defaults(func=cmd_serve_manifests)

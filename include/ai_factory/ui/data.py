"""What the UI pages show, assembled from the lake's reports and the model registry.

Every function returns plain JSON-able dicts (the JSON endpoints return them as they are) and
reads only what the factory already writes:

* quality: ``reports/quality/ds=…/summary.json`` (the GX gate's day summary), else the zones
  (``quarantine/ds=…`` with its ``reason.json``, ``validated/``, ``landing/``);
* drift: ``reports/drift/ds=…/summary.json`` (the monitor's compact record);
* models: the registry (versions and their metadata, ``decisions/<version>.json``, the
  champion alias and its history) and the gate's rules for the primary metric.

Report links are paths relative to the reports folder (``report_path``); the app turns them
into URLs under its own prefix.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any
from urllib.parse import unquote

from ai_factory.storage import DataLake, Zone

log = logging.getLogger(__name__)

DEFAULT_DAYS = 14
MAX_DAYS = 366
SUMMARY_FILE = "summary.json"
DRIFT_HTML = "report.html"
QUARANTINE_REASON = "reason.json"
# Shown per quarantined day "at a glance"; the rest is in its Data Docs page.
MAX_FAILURES_SHOWN = 8

QUALITY_STATES = ("passed", "quarantined", "pending", "missing")


class RangeError(ValueError):
    """A date-range query parameter is malformed or out of bounds."""


# -- date range ------------------------------------------------------------------------------
def _parse_day(name: str, raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise RangeError(f"query parameter '{name}': {raw!r} is not a date (YYYY-MM-DD)") from None


def newest_day(lake: DataLake) -> date | None:
    """The newest day any zone or report knows of (the default end of a range)."""
    zones: Iterable[str] = (Zone.LANDING, Zone.VALIDATED, Zone.QUARANTINE, Zone.REPORTS_QUALITY, Zone.REPORTS_DRIFT)
    days = [d for z in zones for d in lake.partitions(z)[-1:]]
    return max(days) if days else None


def resolve_range(lake: DataLake, start: str | None, end: str | None, today: date | None = None) -> tuple[date, date]:
    """``start``/``end`` from the query, defaulting to the :data:`DEFAULT_DAYS` days up to the newest data."""
    end_day = _parse_day("end", end) if end else None
    start_day = _parse_day("start", start) if start else None
    if end_day is None:
        end_day = (start_day + timedelta(days=DEFAULT_DAYS - 1)) if start_day else (
            newest_day(lake) or today or date.today())
    if start_day is None:
        start_day = end_day - timedelta(days=DEFAULT_DAYS - 1)
    if start_day > end_day:
        raise RangeError(f"query parameters: start {start_day} is after end {end_day}")
    span = (end_day - start_day).days + 1
    if span > MAX_DAYS:
        raise RangeError(f"query parameters: the range {start_day}..{end_day} spans {span} days; at most {MAX_DAYS}")
    return start_day, end_day


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _read_json(lake: DataLake, path: str) -> tuple[Any, str | None]:
    """(payload, None) or (None, error) for a JSON file that may be missing or broken."""
    try:
        return lake.read_json(path), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None, f"{path}: {exc}"


def _reports_relative(lake: DataLake, path: str) -> str | None:
    """``path`` relative to the reports folder, or None when it lies elsewhere."""
    root = lake.zone_path("reports").rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else None


# -- data quality ------------------------------------------------------------------------------
def _data_docs_path(lake: DataLake, summary: dict[str, Any]) -> str | None:
    """The day's Data Docs page relative to the reports folder (None if it is not there)."""
    from ai_factory.quality.context import site_dir

    page = summary.get("data_docs_page")
    try:
        site = site_dir(lake)
    except NotImplementedError:  # object-store lakes keep Data Docs where GX's config puts them
        return None
    if not page:
        return None
    # GX hands out the page as a URL (``ds%3D2026-03-08``); on disk it is ``ds=2026-03-08``.
    page_path = unquote(page)
    if page_path.startswith("/"):  # an absolute page outside the site (older summaries)
        candidate = page_path
    else:
        candidate = posixpath.join(site, page_path)
    rel = _reports_relative(lake, candidate)
    return rel if rel and lake.exists(candidate) else None


def _failure_view(f: dict[str, Any]) -> dict[str, Any]:
    keep = ("expectation", "column", "rule", "severity", "unexpected_count", "unexpected_percent", "examples",
            "observed", "exception")
    return {k: f.get(k) for k in keep}


def quality_day(lake: DataLake, day: date) -> dict[str, Any]:
    """One day's data-quality status with its failures and its Data Docs page."""
    ds = day.isoformat()
    summary, error = _read_json(lake, posixpath.join(lake.partition_path(Zone.REPORTS_QUALITY, day), SUMMARY_FILE))
    out: dict[str, Any] = {"ds": ds, "status": "missing", "rows": None, "expectations": None, "failures": [],
                           "failures_total": 0, "reasons": [], "warnings": 0, "read_error": None,
                           "data_docs_path": None, "report_error": error}
    in_quarantine = lake.partition_exists(Zone.QUARANTINE, day)
    if isinstance(summary, dict):
        failures = summary.get("failures") or []
        out.update(
            status=summary.get("status", "missing"),
            rows=summary.get("rows"),
            expectations=summary.get("expectations"),
            failures=[_failure_view(f) for f in failures[:MAX_FAILURES_SHOWN]],
            failures_total=len(failures),
            warnings=len(summary.get("warnings") or []),
            read_error=summary.get("read_error"),
            data_docs_path=_data_docs_path(lake, summary),
        )
    elif in_quarantine:
        out["status"] = "quarantined"
    elif lake.partition_exists(Zone.VALIDATED, day):
        out["status"] = "passed"
    elif lake.files(lake.partition_path(Zone.LANDING, day)):
        out["status"] = "pending"  # landed, not validated yet
    if out["status"] == "quarantined" and in_quarantine:
        reason, _ = _read_json(lake, posixpath.join(lake.partition_path(Zone.QUARANTINE, day), QUARANTINE_REASON))
        if isinstance(reason, dict):
            out["reasons"] = list(reason.get("reasons") or [])
            if not out["failures"]:
                failures = reason.get("failures") or []
                out["failures"] = [_failure_view(f) for f in failures[:MAX_FAILURES_SHOWN]]
                out["failures_total"] = len(failures)
    return out


def quality_overview(lake: DataLake, start: date, end: date) -> dict[str, Any]:
    days = [quality_day(lake, d) for d in _days(start, end)]
    counts = {s: sum(1 for d in days if d["status"] == s) for s in QUALITY_STATES}
    try:
        from ai_factory.quality.context import site_dir

        index = posixpath.join(site_dir(lake), "index.html")
        site_index = _reports_relative(lake, index) if lake.exists(index) else None
    except NotImplementedError:
        site_index = None
    return {"start": start.isoformat(), "end": end.isoformat(), "counts": counts, "days": days,
            "data_docs_index_path": site_index}


# -- drift ---------------------------------------------------------------------------------------
def drift_day(lake: DataLake, day: date) -> dict[str, Any]:
    """One day's drift check: share, drifted columns, decision and its Evidently report."""
    ds = day.isoformat()
    part = lake.partition_path(Zone.REPORTS_DRIFT, day)
    summary, error = _read_json(lake, posixpath.join(part, SUMMARY_FILE))
    out: dict[str, Any] = {"ds": ds, "status": "missing", "share": None, "share_threshold": None,
                           "drifted_count": None, "feature_count": None, "drifted_columns": [],
                           "drifted_key_columns": [], "reason": None, "triggers": [], "current": None,
                           "reference": None, "quality": [], "report_path": None, "report_error": error}
    if error:
        out["status"] = "error"
    if not isinstance(summary, dict):
        return out
    drift = summary.get("drift") or {}
    decision = summary.get("decision") or {}
    html = posixpath.join(part, (summary.get("report") or {}).get("html_file") or DRIFT_HTML)
    out.update(
        status="drift" if decision.get("drift") else "no_drift",
        share=drift.get("share"),
        share_threshold=drift.get("share_threshold"),
        drifted_count=drift.get("drifted_count"),
        feature_count=drift.get("feature_count"),
        drifted_columns=list(drift.get("drifted_columns") or []),
        drifted_key_columns=list(drift.get("drifted_key_columns") or []),
        reason=decision.get("reason"),
        triggers=list(decision.get("triggers") or []),
        current={k: (summary.get("current") or {}).get(k) for k in ("source", "rows", "labeled_rows")},
        reference={k: (summary.get("reference") or {}).get(k) for k in ("kind", "source", "rows", "model_version")},
        quality=[{k: m.get(k) for k in ("name", "reference", "current", "degradation", "breached")}
                 for m in ((summary.get("quality") or {}).get("metrics") or [])],
        report_path=_reports_relative(lake, html) if lake.exists(html) else None,
    )
    return out


def drift_overview(lake: DataLake, start: date, end: date) -> dict[str, Any]:
    days = [drift_day(lake, d) for d in _days(start, end)]
    counts = {s: sum(1 for d in days if d["status"] == s) for s in ("drift", "no_drift", "missing", "error")}
    thresholds = [d["share_threshold"] for d in days if d["share_threshold"] is not None]
    return {"start": start.isoformat(), "end": end.isoformat(), "counts": counts, "days": days,
            "share_threshold": thresholds[-1] if thresholds else None}


# -- models ----------------------------------------------------------------------------------------
def _primary_metric(task: str | None, objective: str | None) -> tuple[str | None, bool]:
    """(metric, higher_is_better): the gate's primary metric for the task, else the tuning objective."""
    from ai_factory.gating import MINIMIZE, GateError, load_gate_config

    metric = objective
    if task:
        try:
            metric = load_gate_config().rules_for(task).primary.metric
        except GateError as exc:
            log.warning("no gate rules for task %r (%s); using the tuning objective %r", task, exc, objective)
    return metric, metric not in MINIMIZE


def _decision_view(entry: dict[str, Any], primary: str | None) -> dict[str, Any]:
    details = entry.get("details") or {}
    metrics = entry.get("metrics") or details.get("metrics") or {}
    challenger = metrics.get("challenger") or {}
    champion = metrics.get("champion") or {}
    rules = [{k: r.get(k) for k in ("rule", "passed", "metric", "challenger", "champion", "threshold",
                                       "improvement", "message")} for r in details.get("rules") or []]
    return {
        "decision": entry.get("decision"),
        "at": entry.get("at"),
        "gate": entry.get("gate"),
        "reason": entry.get("reason"),
        "deciding_rule": details.get("deciding_rule"),
        "champion": details.get("champion"),
        "holdout": details.get("holdout"),
        "primary": {"metric": primary, "challenger": challenger.get(primary) if primary else None,
                    "champion": champion.get(primary) if primary else None},
        "rules": rules,
        "latency_ms": details.get("latency_ms"),
    }


def _reference_view(ref: dict[str, Any] | None, metrics: dict[str, Any], primary: str | None) -> dict[str, Any] | None:
    """The version's MLP against the HistGradientBoosting fitted on the same rows, on the primary metric."""
    if not ref:
        return None
    ref_metrics = ref.get("metrics") or {}
    return {"family": ref.get("family"), "metric": primary, "model": metrics.get(primary) if primary else None,
            "reference": ref_metrics.get(primary) if primary else None, "fit_seconds": ref.get("fit_seconds"),
            "error": ref.get("error"), "metrics": ref_metrics}


def models_overview(registry: Any) -> dict[str, Any]:
    """Versions (newest first) with metrics, gate decisions and champion status, plus the leaderboard."""
    versions = registry.list_versions()
    history = registry.champion_history()
    # The alias record is its newest history entry: the current champion.
    champion_record = history[-1] if history else None
    champion_version = (champion_record or {}).get("version")
    task = next((v.metadata.get("task") for v in versions if v.metadata.get("task")), None)
    objective = next((v.metadata.get("objective") for v in versions if v.metadata.get("objective")), None)
    primary, higher_better = _primary_metric(task, objective)
    rows = []
    for v in versions:
        decisions = [_decision_view(d, primary) for d in registry.decisions(v.version)]
        promoted = [h.get("since") for h in history if h.get("version") == v.version]
        rows.append({
            "version": v.version,
            "tag": v.tag,
            "created_at": v.created_at.isoformat(),
            "run_key": v.metadata.get("run_key"),
            "objective": v.metadata.get("objective"),
            "metrics": v.metrics,
            "primary_value": v.metrics.get(primary) if primary else None,
            "reference": _reference_view(v.metadata.get("reference_baseline"), v.metrics, primary),
            "window": v.metadata.get("window"),
            "params": v.metadata.get("params"),
            "code_version": v.metadata.get("code_version"),
            "is_champion": v.version == champion_version,
            "promoted_at": promoted,
            "decision": decisions[-1] if decisions else None,
            "decisions": decisions,
        })
    champion = None
    if champion_record:
        champion = {k: champion_record.get(k) for k in ("version", "since", "reason", "actor", "previous")}
    leaderboard = [
        {"version": r["version"], "created_at": r["created_at"], "value": r["primary_value"],
         "gate_value": (r["decision"] or {}).get("primary", {}).get("challenger"),
         "decision": (r["decision"] or {}).get("decision"), "is_champion": r["is_champion"]}
        for r in sorted(rows, key=lambda r: r["created_at"])
    ]
    return {"model": registry.name, "task": task, "primary_metric": primary, "higher_is_better": higher_better,
            "champion": champion, "champion_history": history, "versions": rows, "leaderboard": leaderboard}


def dumps(payload: Any) -> str:
    """JSON for the endpoints: NaN/inf (e.g. AUC on a one-class day) become null."""
    return json.dumps(_finite(payload), default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value

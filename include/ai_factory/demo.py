"""The factory's story, run for real: days land one by one and Airflow's scheduler does the rest.

``make demo`` (``ai-factory demo``) and the scenario tests use this. For each simulated day
it lands that day's data, asks Airflow for that day's runs of the time-scheduled DAGs
(``airflow backfill create`` over one day: logical dates, not wall-clock days), waits
until every run they trigger through Assets has finished, and reads back what happened
from the metadata DB and the data zones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from ai_factory.data.generate import DriftConfig, DriftKind, write_day
from ai_factory.orchestration.stack import AirflowStack
from ai_factory.storage import DataLake, Zone

log = logging.getLogger(__name__)

# DAGs that run on the clock; each simulated day gets one run of each (in this order).
TIME_SCHEDULED_DAGS = ("data_quality",)


@dataclass(frozen=True)
class Scenario:
    """What the simulated days hold."""

    start: date
    days: int = 10
    rows: int = 3000
    corrupt: dict[date, str] = field(default_factory=dict)
    drift_start: date | None = None
    drift_kind: DriftKind = DriftKind.COVARIATE
    seed: int = 0

    @property
    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    @classmethod
    def standard(cls, end: date, days: int = 10, rows: int = 3000) -> Scenario:
        """``days`` days up to ``end``: one corrupt day (the 4th), covariate drift from the 7th."""
        start = end - timedelta(days=days - 1)
        return cls(start=start, days=days, rows=rows,
                   corrupt={start + timedelta(days=3): "out_of_range"} if days >= 4 else {},
                   drift_start=start + timedelta(days=6) if days >= 7 else None)


@dataclass
class DayStory:
    ds: date
    quality: str
    rows: int
    detail: str = ""
    runs: dict[str, list[str]] = field(default_factory=dict)

    def line(self) -> str:
        runs = ", ".join(f"{dag}: {'/'.join(states)}" for dag, states in sorted(self.runs.items()))
        return f"{self.ds}  quality={self.quality:<11} rows={self.rows:<6} {self.detail}  [{runs}]"


def _db_runs_since(since: datetime) -> list[Any]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(DagRun).where(DagRun.queued_at >= since)).scalars().all()
        session.expunge_all()
        return list(rows)


def _busy() -> tuple[int, int]:
    """(unfinished runs, queued asset triggers) in the metadata DB."""
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        unfinished = session.scalar(
            select(func.count()).select_from(DagRun).where(DagRun.state.in_(("queued", "running")))
        )
        pending = session.scalar(select(func.count()).select_from(AssetDagRunQueue))
    return int(unfinished or 0), int(pending or 0)


class DemoRunner:
    """Drive a scenario through a running :class:`AirflowStack`."""

    def __init__(self, stack: AirflowStack, lake: DataLake, scenario: Scenario,
                 day_timeout: float = 900, settle_seconds: float = 6) -> None:
        self.stack, self.lake, self.scenario = stack, lake, scenario
        self.day_timeout, self.settle_seconds = day_timeout, settle_seconds
        self.stories: list[DayStory] = []

    def wait_for_dags(self, dag_ids: tuple[str, ...] = TIME_SCHEDULED_DAGS, timeout: float = 180) -> None:
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with create_session() as session:
                if all((dm := session.get(DagModel, d)) is not None and not dm.is_stale for d in dag_ids):
                    return
            time.sleep(1)
        raise TimeoutError(f"DAGs {dag_ids} were not parsed by the dag-processor within {timeout:.0f}s")

    def backfill_day(self, dag_id: str, day: date, attempts: int = 15) -> None:
        for _ in range(attempts):
            proc = self.stack.airflow("backfill", "create", "--dag-id", dag_id, "--from-date", day.isoformat(),
                                      "--to-date", day.isoformat(), "--reprocess-behavior", "completed",
                                      check=False)
            if proc.returncode == 0:
                return
            time.sleep(2)
        raise RuntimeError(f"airflow backfill create {dag_id} {day} failed:\n{proc.stderr[-3000:]}")

    def wait_quiescent(self) -> None:
        """Until no run is queued or running and no asset trigger waits, twice in a row."""
        deadline = time.monotonic() + self.day_timeout
        calm = 0
        while time.monotonic() < deadline:
            unfinished, pending = _busy()
            calm = calm + 1 if (unfinished, pending) == (0, 0) else 0
            if calm * 2 >= self.settle_seconds:
                return
            time.sleep(2)
        raise TimeoutError(f"Airflow still busy after {self.day_timeout:.0f}s: {_busy()} (runs, asset triggers)")

    def land(self, day: date) -> None:
        s = self.scenario
        drift = DriftConfig(start=s.drift_start, kind=s.drift_kind) if s.drift_start else None
        write_day(self.lake, day, s.rows, seed=s.seed, drift=drift, corruption=s.corrupt.get(day))

    def run_day(self, day: date) -> DayStory:
        since = datetime.now().astimezone()
        self.land(day)
        for dag_id in TIME_SCHEDULED_DAGS:
            self.backfill_day(dag_id, day)
            self.wait_quiescent()
        story = self.describe(day, since)
        log.info("%s", story.line())
        self.stories.append(story)
        return story

    def run(self) -> list[DayStory]:
        self.wait_for_dags()
        for day in self.scenario.dates:
            self.run_day(day)
        return self.stories

    def describe(self, day: date, since: datetime) -> DayStory:
        runs: dict[str, list[str]] = {}
        for r in _db_runs_since(since):
            runs.setdefault(r.dag_id, []).append(str(getattr(r.state, "value", r.state)))
        summary_path = self.lake.partition_path(Zone.REPORTS_QUALITY, day) + "/summary.json"
        if self.lake.exists(summary_path):
            q = self.lake.read_json(summary_path)
            detail = "" if q["status"] == "passed" else "; ".join(
                f"{f['expectation']}({f.get('column') or 'table'})" for f in q["failures"][:3]
            ) or (q.get("read_error") or "")
            return DayStory(day, q["status"], int(q["rows"]), detail, runs)
        return DayStory(day, "missing", 0, "no quality summary", runs)


def serving_summary() -> dict[str, Any]:
    """Registry versions with their gate decisions, the champion, and one live prediction from the stable address."""
    from ai_factory.deployment.local import LocalTarget, http_post_json
    from ai_factory.deployment.smoke import frame_to_records
    from ai_factory.registry import ModelRegistry

    registry = ModelRegistry.from_settings()
    target = LocalTarget.from_settings()
    versions = []
    for v in reversed(registry.list_versions()):
        decision = registry.latest_decision(v.version)
        versions.append({"version": v.version, "holdout": (v.metadata.get("window") or {}).get("holdout"),
                         "roc_auc": v.metrics.get("roc_auc"), "decision": decision and decision["decision"],
                         "reason": decision and decision["reason"]})
    champion = registry.champion()
    out: dict[str, Any] = {"versions": versions, "champion": champion.version if champion else None,
                           "url": target.url, "prediction": None}
    if champion is not None:
        lake = DataLake.from_settings()
        day = lake.partitions(Zone.VALIDATED)[-1]
        record = frame_to_records(champion_spec(champion), lake.read_partition(Zone.VALIDATED, day).head(1))[0]
        status, body = http_post_json(f"{target.url}/predict", record, timeout=10)
        out["prediction"] = body if status == 200 else {"error": f"HTTP {status}: {body}"}
    return out


def champion_spec(version: Any) -> Any:
    from ai_factory.serving.runtime import spec_of_model

    return spec_of_model(version.path)


def render(stories: list[DayStory], lake: DataLake, serving: dict[str, Any] | None = None) -> str:
    lines = ["", "AI Factory demo: day by day", "=" * 27]
    lines += [s.line() for s in stories]
    lines += ["", "Outputs:",
              f"  validated partitions : {lake.zone_path(Zone.VALIDATED)}",
              f"  quarantined days     : {lake.zone_path(Zone.QUARANTINE)}",
              f"  quality summaries    : {lake.zone_path(Zone.REPORTS_QUALITY)}/ds=*/summary.json",
              f"  Data Docs            : {lake.zone_path(Zone.REPORTS_QUALITY)}/_gx/site/index.html"]
    if serving is not None:
        lines += ["", "Models (gate decisions):"]
        for v in serving["versions"]:
            auc = "n/a" if v["roc_auc"] is None else f"{v['roc_auc']:.4f}"
            lines.append(f"  {v['version']}  holdout={','.join(v['holdout'] or [])}  roc_auc={auc}  "
                         f"{v['decision'] or 'not judged'}: {v['reason'] or ''}")
        lines += [f"  champion             : {serving['champion'] or 'none'}",
                  f"  served at            : {serving['url']}  (POST /predict, /predict_batch)",
                  f"  live prediction      : {serving['prediction']}"]
    return "\n".join(lines)

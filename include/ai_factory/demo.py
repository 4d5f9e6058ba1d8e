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

# DAGs that run on the clock; each simulated day gets one run of each (in this order). Between
# the two, the day's validated rows are replayed as traffic to the served champion.
TIME_SCHEDULED_DAGS = ("data_quality", "drift_monitoring")
ALL_DAGS = ("data_quality", "training", "model_gate", "deployment", "drift_monitoring")
REPLAY_BATCH = 500


def demo_environment(serve_port: int, trials: int = 4, workers: int = 2, window_days: int = 5) -> dict[str, str]:
    """Settings of a demo (and scenario test) installation: short sensor waits, small tuning."""
    from ai_factory.settings import PACKAGE_DIR

    return {
        "AI_FACTORY_SENSOR_POKE": "2",
        "AI_FACTORY_SENSOR_TIMEOUT": "120",
        "AI_FACTORY_SERVE_PORT": str(serve_port),
        "AI_FACTORY_TRAIN_TRIALS": str(trials),
        "AI_FACTORY_TRAIN_WORKERS": str(workers),
        "AI_FACTORY_TRAIN_WINDOW_DAYS": str(window_days),
        "AI_FACTORY_SEARCH_SPACE": str(PACKAGE_DIR / "config" / "search_space_demo.yaml"),
    }


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
class RunRecord:
    """One DAG run the day caused, as the metadata DB has it."""

    dag_id: str
    run_id: str
    state: str
    run_type: str
    triggered_by: list[str]
    start: datetime | None
    end: datetime | None
    task_seconds: float
    tasks: dict[str, str]

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds() if self.start and self.end else 0.0


@dataclass
class DayStory:
    ds: date
    quality: str
    rows: int
    detail: str = ""
    runs: list[RunRecord] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    champion: str | None = None
    served: int = 0
    drift: dict[str, Any] | None = None
    wall_seconds: float = 0.0

    def runs_of(self, dag_id: str) -> list[RunRecord]:
        return [r for r in self.runs if r.dag_id == dag_id]

    def line(self) -> str:
        """The day as a few readable lines: quality, training, gate, deploy, drift."""
        q = f"quality  {self.quality} ({self.rows} rows)" + (f": {self.detail}" if self.detail else "")
        out = [f"{self.ds}  [{self.wall_seconds:.0f} s]", f"    {q}"]
        for r in self.runs_of("training"):
            why = "+".join(r.triggered_by) or r.run_type
            if r.tasks.get("plan") == "skipped":
                out.append(f"    training ({why}) skipped: not enough validated days yet")
            else:
                out.append(f"    training ({why}) {r.state}")
        for m in self.models:
            auc = "n/a" if m.get("roc_auc") is None else f"{m['roc_auc']:.4f}"
            out.append(f"    gate     {m['version']} roc_auc={auc}: {m.get('decision') or 'not judged'}"
                       + (f" ({m['reason']})" if m.get("reason") else ""))
        for r in self.runs_of("deployment"):
            out.append(f"    deploy   {r.state}")
        out.append(f"    champion {self.champion or 'none'}" + (f", served {self.served} replayed requests"
                                                              if self.served else ""))
        if self.drift is not None:
            d = self.drift
            cols = ", ".join(d.get("drifted_columns") or []) or "none"
            verdict = "DRIFT" if d.get("drift") else "no drift"
            out.append(f"    drift    {verdict}: share {float(d.get('share') or 0):.2f}, drifted: {cols}"
                       + (f" ({d['reason']})" if d.get("drift") and d.get("reason") else ""))
        else:
            for r in self.runs_of("drift_monitoring"):
                out.append(f"    drift    {r.state}: {_skip_reason(r)}")
        return "\n".join(out)


def _skip_reason(run: RunRecord) -> str:
    skipped = [t for t, s in run.tasks.items() if s == "skipped"]
    return f"skipped {', '.join(sorted(skipped))}" if skipped else ", ".join(f"{t}={s}" for t, s in run.tasks.items())


def _db_runs_since(since: datetime) -> list[RunRecord]:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    out = []
    with create_session() as session:
        runs = session.execute(select(DagRun).where(DagRun.queued_at >= since).order_by(DagRun.queued_at)).scalars()
        for r in runs.all():
            tis = session.execute(select(TaskInstance).where(TaskInstance.dag_id == r.dag_id,
                                                             TaskInstance.run_id == r.run_id)).scalars().all()
            assets = sorted({e.asset.name for e in r.consumed_asset_events if e.asset is not None})
            out.append(RunRecord(
                dag_id=r.dag_id, run_id=r.run_id, state=str(getattr(r.state, "value", r.state)),
                run_type=str(getattr(r.run_type, "value", r.run_type)), triggered_by=assets,
                start=r.start_date, end=r.end_date,
                task_seconds=sum(float(ti.duration or 0) for ti in tis),
                tasks={(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"):
                       str(getattr(ti.state, "value", ti.state)) for ti in tis},
            ))
    return out
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

    def wait_for_dags(self, dag_ids: tuple[str, ...] = ALL_DAGS, timeout: float = 180) -> None:
        """Until the dag-processor has serialized every DAG; unpause any that are paused."""
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with create_session() as session:
                models = {d: session.get(DagModel, d) for d in dag_ids}
            if all(dm is not None and not dm.is_stale for dm in models.values()):
                for d, dm in models.items():
                    if dm is not None and dm.is_paused:  # the scheduler never starts a paused DAG's runs
                        self.stack.airflow("dags", "unpause", d)
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

    def replay_traffic(self, day: date, timeout: float = 120) -> int:
        """Send the day's validated rows (features only) to the served champion, as of ``day``.

        Requests carry ``X-Event-Time: day``, so the service logs them under
        ``predictions/ds=day`` where that day's drift run reads them. Returns the rows served
        (0 when no champion is serving yet or the day was quarantined). Waits until the
        prediction log has written them.
        """
        from ai_factory.deployment.local import LocalTarget, http_get, http_post_json
        from ai_factory.deployment.smoke import frame_to_records
        from ai_factory.spec import default_spec

        target = LocalTarget.from_settings()
        if target.active() is None or not self.lake.partition_exists(Zone.VALIDATED, day):
            return 0
        status, _ = http_get(f"{target.url}/readyz", timeout=5)
        if status != 200:
            log.warning("the model server at %s is not ready (HTTP %s); no traffic replayed for %s", target.url,
                        status, day)
            return 0
        records = frame_to_records(default_spec(), self.lake.read_partition(Zone.VALIDATED, day))
        for i in range(0, len(records), REPLAY_BATCH):
            status, body = http_post_json(f"{target.url}/predict_batch", {"records": records[i:i + REPLAY_BATCH]},
                                          timeout=60, headers={"X-Event-Time": day.isoformat()})
            if status != 200:
                raise RuntimeError(f"replaying {day} to {target.url}: HTTP {status}: {body}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.lake.partition_exists(Zone.PREDICTIONS, day) and len(
                    self.lake.read_partition(Zone.PREDICTIONS, day)) >= len(records):
                return len(records)
            time.sleep(1)
        raise TimeoutError(f"the prediction log did not write {len(records)} rows for {day} within {timeout:.0f}s")

    def run_day(self, day: date) -> DayStory:
        since = datetime.now().astimezone()
        t0 = time.monotonic()
        self.land(day)
        self.backfill_day("data_quality", day)
        self.wait_quiescent()  # quality → (validated_data) training → gate → deployment
        served = self.replay_traffic(day)
        self.backfill_day("drift_monitoring", day)
        self.wait_quiescent()  # drift → (drift_detected) training → gate → deployment
        story = self.describe(day, since)
        story.served, story.wall_seconds = served, time.monotonic() - t0
        log.info("%s", story.line())
        self.stories.append(story)
        return story

    def run(self) -> list[DayStory]:
        self.wait_for_dags()
        for day in self.scenario.dates:
            self.run_day(day)
        return self.stories

    def describe(self, day: date, since: datetime) -> DayStory:
        from ai_factory.registry import ModelRegistry

        runs = _db_runs_since(since)
        summary_path = self.lake.partition_path(Zone.REPORTS_QUALITY, day) + "/summary.json"
        if self.lake.exists(summary_path):
            q = self.lake.read_json(summary_path)
            detail = "" if q["status"] == "passed" else "; ".join(
                f"{f['expectation']}({f.get('column') or 'table'})" for f in q["failures"][:3]
            ) or (q.get("read_error") or "")
            story = DayStory(day, q["status"], int(q["rows"]), detail, runs)
        else:
            story = DayStory(day, "missing", 0, "no quality summary", runs)
        registry = ModelRegistry.from_settings()
        for v in registry.list_versions():
            if v.created_at >= since:
                decision = registry.latest_decision(v.version) or {}
                story.models.append({"version": v.version, "roc_auc": v.metrics.get("roc_auc"),
                                     "decision": decision.get("decision"), "reason": decision.get("reason")})
        story.models.sort(key=lambda m: m["version"])
        champion = registry.champion()
        story.champion = champion.version if champion else None
        drift_path = self.lake.partition_path(Zone.REPORTS_DRIFT, day) + "/summary.json"
        if self.lake.exists(drift_path):
            from ai_factory.monitoring.summary import DriftSummary

            summary = DriftSummary.model_validate(self.lake.read_json(drift_path))
            story.drift = {**summary.xcom(), "drifted_columns": summary.drift.drifted_columns,
                           "reference_kind": summary.reference.kind}
        return story


def stage_timings(stories: list[DayStory]) -> dict[str, Any]:
    """Wall time per DAG (run start → end) and the task compute inside it, over the whole loop.

    The orchestration overhead ratio is the loop's wall time ÷ the sum of task durations:
    1.0 would mean every second went into task bodies.
    """
    stages: dict[str, dict[str, float]] = {}
    for story in stories:
        for r in story.runs:
            st = stages.setdefault(r.dag_id, {"runs": 0, "run_seconds": 0.0, "task_seconds": 0.0})
            st["runs"] += 1
            st["run_seconds"] += r.seconds
            st["task_seconds"] += r.task_seconds
    wall = sum(s.wall_seconds for s in stories)
    task_total = sum(st["task_seconds"] for st in stages.values())
    return {"days": len(stories), "wall_seconds": wall, "task_seconds": task_total,
            "overhead_ratio": wall / task_total if task_total else float("nan"), "stages": stages}


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
        out["record"] = record
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
              f"  Data Docs            : {lake.zone_path(Zone.REPORTS_QUALITY)}/_gx/site/index.html",
              f"  drift reports        : {lake.zone_path(Zone.REPORTS_DRIFT)}/ds=*/report.html",
              f"  served predictions   : {lake.zone_path(Zone.PREDICTIONS)}/ds=*/"]
    t = stage_timings(stories)
    lines += ["", f"Time: {t['wall_seconds']:.0f} s wall over {t['days']} days; tasks computed "
                  f"{t['task_seconds']:.0f} s (orchestration overhead ratio {t['overhead_ratio']:.2f})"]
    for dag_id, st in sorted(t["stages"].items()):
        lines.append(f"  {dag_id:<17} {int(st['runs']):>3} runs  {st['run_seconds']:>7.0f} s in runs  "
                     f"{st['task_seconds']:>7.0f} s in tasks")
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

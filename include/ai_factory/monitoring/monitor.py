"""One day's drift check, end to end: plan → load → test every column → quality → decide → report → write.

``run_drift_check`` is what the ``drift_monitoring`` DAG and ``ai-factory drift run`` call. It
writes ``reports/drift/ds=…/{report.html, report.json, summary.json}`` as one atomic partition
swap (a re-run replaces that day's reports and nothing else) and returns the summary.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import date
from importlib.metadata import PackageNotFoundError, version

import pandas as pd

from ai_factory.monitoring.assembly import (
    InputPlan,
    Reference,
    ReferenceProvider,
    day_seed,
    load_inputs,
    plan_inputs,
    resolve_provider,
    sample_rows,
)
from ai_factory.monitoring.config import MonitoringConfig, load_config
from ai_factory.monitoring.decision import Decision, decide, drift_share
from ai_factory.monitoring.evidently_report import banner_html, run_evidently, stable_ids, with_banner
from ai_factory.monitoring.quality import QualityComparison, compare_quality
from ai_factory.monitoring.stattests import (
    ColumnDrift,
    ColumnKind,
    ColumnRole,
    ColumnTest,
    bound_frames,
    detect_drift,
)
from ai_factory.monitoring.summary import (
    HTML_FILE,
    JSON_FILE,
    SUMMARY_FILE,
    ColumnResult,
    CurrentInfo,
    DriftSection,
    DriftSummary,
    ReferenceInfo,
    ReportInfo,
    RuleInfo,
    Rules,
)
from ai_factory.spec import DatasetSpec, TaskType, default_spec
from ai_factory.storage import DataLake, Zone, as_date

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftCheck:
    """A finished check: the summary, where its partition was written, and how long each stage took."""

    summary: DriftSummary
    partition: str
    partition_url: str
    seconds: dict[str, float]


def _any(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and bool(df[col].notna().any())


def _all(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and len(df) > 0 and bool(df[col].notna().all())


def drift_tests(
    spec: DatasetSpec, config: MonitoringConfig, current: pd.DataFrame, reference: pd.DataFrame
) -> list[ColumnTest]:
    """Every feature, plus the target and prediction columns when both sides have values."""
    th = config.drift.thresholds
    tests = [
        ColumnTest(f.name, ColumnKind.NUMERICAL if f.dtype.is_numeric else ColumnKind.CATEGORICAL,
                   ColumnRole.FEATURE, th.for_column(f.name, "numerical" if f.dtype.is_numeric else "categorical"))
        for f in spec.features
    ]
    label_kind = ColumnKind.NUMERICAL if spec.target.task == TaskType.REGRESSION else ColumnKind.CATEGORICAL
    extra = [(spec.target.name, label_kind, ColumnRole.TARGET), (config.serving.prediction, label_kind, ColumnRole.PREDICTION)]
    if spec.target.task == TaskType.BINARY:
        extra.append((config.serving.probability, ColumnKind.NUMERICAL, ColumnRole.PREDICTION))
    for name, kind, role in extra:
        if _any(current, name) and _any(reference, name):
            tests.append(ColumnTest(name, kind, role, th.for_column(name, kind.value)))
    return tests


def _report_quality_inputs(
    spec: DatasetSpec, config: MonitoringConfig, current: pd.DataFrame, reference: pd.DataFrame
) -> tuple[bool, bool]:
    """(quality in the Evidently report?, with probabilities?): every row of both sides labelled and predicted."""
    s = config.serving
    labelled = all(_all(df, spec.target.name) and _all(df, s.prediction) for df in (current, reference))
    proba = spec.target.task == TaskType.BINARY and all(_all(df, s.probability) for df in (current, reference))
    return labelled, labelled and proba


def _versions() -> dict[str, str]:
    out = {"summary_schema": "1"}
    for pkg in ("evidently", "ai-factory"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _import_evidently_in_background() -> threading.Thread:
    """Start importing Evidently (2-3 s of module loading) while the data loads and the tests run.

    pyarrow and numpy release the GIL for reading and sorting, so the import mostly overlaps
    with them. A failed import is not hidden: the report step imports again and raises.
    """

    def load() -> None:
        for name in ("evidently", "evidently.presets", "evidently.metrics", "plotly.graph_objs"):
            try:
                importlib.import_module(name)
            except ImportError as exc:
                log.warning("background import of %s failed (the report step will retry and raise): %s", name, exc)
                return

    thread = threading.Thread(target=load, name="evidently-import", daemon=True)
    thread.start()
    return thread


def run_drift_check(
    ds: str | date,
    *,
    lake: DataLake | None = None,
    spec: DatasetSpec | None = None,
    config: MonitoringConfig | None = None,
    provider: ReferenceProvider | None = None,
    plan: InputPlan | None = None,
) -> DriftCheck:
    """Check one day and write its reports. ``provider`` defaults to ``reference.provider`` from the config."""
    day = as_date(ds).isoformat()
    lake = lake or DataLake.from_settings()
    spec = spec or default_spec()
    config = (config or load_config()).check_against(spec)
    if provider is None:
        provider = resolve_provider(config.reference.provider)
    t0 = time.perf_counter()
    warmup = _import_evidently_in_background()
    plan = plan or plan_inputs(lake, day, spec, config, provider)
    current, reference = load_inputs(lake, plan, spec, config, provider)
    # The drift tests import parts of Evidently themselves: two threads importing the same
    # package at once can deadlock on its circular imports (CPython raises _DeadlockError in
    # one and leaves the other with a half-initialised module). Overlap the import with the
    # data loading only.
    warmup.join()
    t_load = time.perf_counter()

    tests = drift_tests(spec, config, current, reference.data)
    columns = detect_drift(tests, reference.data, current, config.compute.max_workers)
    quality = compare_quality(current, reference.data, reference.metrics, spec, config)
    key_columns = config.drift.resolved_key_columns(spec)
    decision = decide(columns, quality, key_columns, config.drift.share_threshold)
    t_decide = time.perf_counter()

    summary, html_text, json_text = _report_and_summary(day, plan, spec, config, current, reference, tests, columns,
                                                         quality, decision, key_columns)
    t_report = time.perf_counter()
    partition = lake.replace_partition(Zone.REPORTS_DRIFT, day, {
        HTML_FILE: html_text.encode(), JSON_FILE: json_text.encode(), SUMMARY_FILE: summary.to_json_bytes(),
    })
    t_end = time.perf_counter()
    seconds = {"load": t_load - t0, "tests_and_quality": t_decide - t_load, "report": t_report - t_decide,
               "write": t_end - t_report, "total": t_end - t0}
    log.info("drift check ds=%s: %s | %s -> %s", day, decision.reason,
             ", ".join(f"{k} {v:.2f}s" for k, v in seconds.items()), partition)
    return DriftCheck(summary=summary, partition=partition, partition_url=lake.url(partition), seconds=seconds)


def _report_and_summary(
    day: str,
    plan: InputPlan,
    spec: DatasetSpec,
    config: MonitoringConfig,
    current: pd.DataFrame,
    reference: Reference,
    tests: list[ColumnTest],
    columns: list[ColumnDrift],
    quality: QualityComparison,
    decision: Decision,
    key_columns: list[str],
) -> tuple[DriftSummary, str, str]:
    seed = day_seed(config.report.seed, day)
    cur_s = sample_rows(current, config.report.max_rows, seed)
    ref_s = sample_rows(reference.data, config.report.max_rows, seed + 1)
    sampled = len(cur_s) < len(current) or len(ref_s) < len(reference.data)
    with_quality, with_proba = _report_quality_inputs(spec, config, cur_s, ref_s)
    # The report sees the values the tests saw: clipped to finite bounds (no range overflows in its histograms).
    cur_b, ref_b = bound_frames(tests, cur_s, ref_s, bounds_from=reference.data)
    ev = run_evidently(cur_b, ref_b, spec, tests, config, day, quality=with_quality, probability=with_proba)

    disagreements = [c.name for c in columns if c.name in ev.columns and ev.columns[c.name].drifted != c.drifted]
    diffs = [abs(ev.columns[c.name].score - c.score) for c in columns if c.name in ev.columns]
    if disagreements and not sampled:
        log.warning("fast path and Evidently disagree on the full data for %s: %s", day, disagreements)
    elif disagreements:
        log.info("on the report sample, %s flag(s) differ from the full data: %s", day, disagreements)

    share, drifted_features, n_features = drift_share(columns)
    keys = set(key_columns)
    results = [
        ColumnResult(**c.as_dict(), key=c.name in keys,
                     report_score=ev.columns[c.name].score if c.name in ev.columns else None,
                     report_drifted=ev.columns[c.name].drifted if c.name in ev.columns else None)
        for c in columns
    ]
    summary = DriftSummary(
        dataset=spec.name, spec_fingerprint=spec.fingerprint(), ds=day,
        current=CurrentInfo(source=plan.current.source, path=plan.current.path, rows=len(current),
                            labeled_rows=quality.labeled_rows, model_versions=plan.current.model_versions),
        reference=ReferenceInfo(kind=plan.reference.kind, source=reference.source, rows=len(reference.data),
                                model_version=reference.model_version, partitions=plan.reference.partitions,
                                sampled_from=plan.reference.sampled_from),
        drift=DriftSection(
            share=share, share_threshold=config.drift.share_threshold, feature_count=n_features,
            drifted_count=len(drifted_features), drifted_columns=[c.name for c in columns if c.drifted],
            drifted_features=drifted_features, key_columns=[k for k in key_columns if any(c.name == k for c in columns)],
            drifted_key_columns=[c.name for c in columns if c.drifted and c.name in keys], columns=results,
        ),
        quality=quality,
        decision=decision,
        rules=Rules(share_threshold=config.drift.share_threshold, key_columns=key_columns,
                    max_degradation=[RuleInfo(metric=r.metric.value, max=r.max, relative=r.relative)
                                     for r in config.quality.rules_for(spec.target.task)]),
        report=ReportInfo(sampled=sampled, current_rows=len(cur_s), reference_rows=len(ref_s), seed=seed,
                          includes_quality=with_quality, disagreements=disagreements,
                          max_abs_score_diff=max(diffs, default=0.0)),
        versions=_versions(),
    )
    banner = banner_html(day, decision.drift, decision.reason, columns, len(current), len(reference.data),
                         len(cur_s), len(ref_s), disagreements, seed)
    return summary, stable_ids(with_banner(ev.html, banner)), ev.json

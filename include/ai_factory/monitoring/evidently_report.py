"""The Evidently report analysts open: DataDriftPreset plus quality, with column types from the spec.

Column mapping: the spec's int/float features are Evidently ``numerical_columns``, category/bool
features ``categorical_columns``; the target (and ``prediction``) are categorical for
classification and numerical for regression; ``probability`` is numerical. Quality
(``ClassificationPreset``/``RegressionPreset``) is added when both the current day and the
reference carry labels and predictions on every row.

On a large day the report runs on a uniform random sample (``report.max_rows``, seeded per
day): drift *decisions* always come from the fast path on every row, and the report's banner
lists any column whose flag differs on the sample. Evidently's HTML embeds random element ids;
they are renumbered in order of appearance so re-running a day writes the same bytes.

Served values reach the report (category values, in tables and plots). Evidently embeds its
data as JSON inside a ``<script>`` without escaping ``<``, so a value like
``</script><img src=x onerror=…>`` would end the script and inject markup.
:func:`escape_data_script` escapes ``<``, ``>`` and ``&`` in that JSON as ``\u003c``,
``\u003e``, ``\u0026``, which is the same JSON to the page's script: the report shows the
true value, as text, and nothing in the data can close the script. ``report.json`` (the
Evidently snapshot) is JSON, not HTML, and keeps the values unchanged.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

import pandas as pd

from ai_factory.monitoring.config import MonitoringConfig
from ai_factory.monitoring.stattests import ColumnDrift, ColumnKind, ColumnRole, ColumnTest
from ai_factory.spec import DatasetSpec, TaskType
from ai_factory.storage import as_date

log = logging.getLogger(__name__)

# The random ids Evidently puts in a report: widget/tab ids (uuid7, time-based) and the dashboard
# variable ``metric_<uuid4 hex>``. Deterministic ids (metric fingerprints) and the UUID constants
# inside Evidently's bundled JavaScript have other shapes and are left alone.
_RANDOM_ID_RE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}|(?<=metric_)[0-9a-f]{32}"
)
# Evidently's data block (evidently.legacy.utils.dashboard.file_html_template): two JSON values.
_DATA_SCRIPT_RE = re.compile(r"<script>\s*var (metric_[0-9a-f]{32}) = ")
_JSON_IN_HTML = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
_QUALITY_METRICS = {
    "Accuracy": "accuracy", "Precision": "precision", "Recall": "recall", "F1Score": "f1", "RocAuc": "roc_auc",
    "RMSE": "rmse", "MAE": "mae", "R2Score": "r2",
}


@dataclass(frozen=True)
class EvidentlyColumn:
    name: str
    method_label: str
    threshold: float
    score: float
    drifted: bool


@dataclass
class EvidentlyResult:
    """What the Evidently run found, parsed from its snapshot, plus the artifacts to save."""

    columns: dict[str, EvidentlyColumn]
    share: float | None
    quality: dict[str, float] = field(default_factory=dict)
    html: str = ""
    json: str = ""


def data_definition(
    spec: DatasetSpec, tests: Sequence[ColumnTest], quality: bool, probability: bool, config: MonitoringConfig
) -> Any:
    """Evidently column types from the spec; ``probability`` says whether binary quality uses probabilities."""
    from evidently import BinaryClassification, DataDefinition, MulticlassClassification, Regression

    numerical = [t.name for t in tests if t.kind == ColumnKind.NUMERICAL]
    categorical = [t.name for t in tests if t.kind == ColumnKind.CATEGORICAL]
    kwargs: dict[str, Any] = {}
    s, target = config.serving, spec.target
    if quality:
        task_cols = [target.name, s.prediction]
        if target.task == TaskType.REGRESSION:
            numerical += [c for c in task_cols if c not in numerical]
            kwargs["regression"] = [Regression(target=target.name, prediction=s.prediction)]
        else:
            categorical += [c for c in task_cols if c not in categorical]
            if target.task == TaskType.BINARY:
                positive = target.positive_class if target.positive_class is not None else (target.classes or (1,))[-1]
                if probability and s.probability not in numerical:
                    numerical.append(s.probability)
                kwargs["classification"] = [BinaryClassification(
                    target=target.name, prediction_labels=s.prediction,
                    prediction_probas=s.probability if probability else None, pos_label=positive,
                )]
            else:
                kwargs["classification"] = [MulticlassClassification(target=target.name, prediction_labels=s.prediction)]
    return DataDefinition(numerical_columns=numerical, categorical_columns=categorical, **kwargs)


def _report(
    spec: DatasetSpec, tests: Sequence[ColumnTest], quality: bool, probability: bool, config: MonitoringConfig
) -> Any:
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import ClassificationPreset, DataDriftPreset, RegressionPreset

    th = config.drift.thresholds
    features = [t.name for t in tests if t.role == ColumnRole.FEATURE]
    items: list[Any] = [DataDriftPreset(
        columns=features, drift_share=config.drift.share_threshold,
        num_threshold=th.numerical, cat_threshold=th.categorical,
        per_column_threshold={k: v for k, v in th.per_column.items() if k in features} or None,
    )]
    items += [ValueDrift(column=t.name, threshold=t.threshold) for t in tests if t.role != ColumnRole.FEATURE]
    if quality:
        if spec.target.task == TaskType.REGRESSION:
            items.append(RegressionPreset())
        else:
            # Evidently accepts a threshold only for binary classification with probabilities.
            threshold = config.quality.probability_threshold if probability else None
            items.append(ClassificationPreset(probas_threshold=threshold))
    return Report(items, include_tests=True)


def _parse(snapshot: Any) -> tuple[dict[str, EvidentlyColumn], float | None, dict[str, float]]:
    d = snapshot.dict()
    # A ValueDrift's default test fails exactly when Evidently flags the column as drifted.
    failed: dict[str, bool] = {}
    for t in d["tests"]:
        cfg = t.get("metric_config") or {}
        if (cfg.get("params") or {}).get("type") == "evidently:metric_v2:ValueDrift":
            failed[cfg["metric_id"]] = str(getattr(t["status"], "value", t["status"])) == "FAIL"
    columns: dict[str, EvidentlyColumn] = {}
    share: float | None = None
    quality: dict[str, float] = {}
    for m in d["metrics"]:
        cfg, value = m["config"], m["value"]
        kind = cfg["type"].rsplit(":", 1)[-1]
        if kind == "ValueDrift":
            col = cfg["column"]
            if m["id"] not in failed:
                raise RuntimeError(f"Evidently report has no drift test for column {col!r} (metric {m['id']})")
            columns[col] = EvidentlyColumn(name=col, method_label=cfg["method"], threshold=float(cfg["threshold"]),
                                           score=float(value), drifted=failed[m["id"]])
        elif kind == "DriftedColumnsCount":
            share = float(value["share"])
        elif kind in _QUALITY_METRICS:
            # Mean/std metrics (MAE) report {"mean": ..., "std": ...}; by-label ones are not summaries.
            if isinstance(value, dict):
                if "mean" in value:
                    quality[_QUALITY_METRICS[kind]] = float(value["mean"])
            else:
                quality[_QUALITY_METRICS[kind]] = float(value)
    return columns, share, quality


def run_evidently(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    spec: DatasetSpec,
    tests: Sequence[ColumnTest],
    config: MonitoringConfig,
    ds: str,
    quality: bool,
    probability: bool = False,
) -> EvidentlyResult:
    """Run Evidently on the given frames (sample them first for large days) and parse its results."""
    from evidently import Dataset

    definition = data_definition(spec, tests, quality, probability, config)
    cols = list(dict.fromkeys(definition.numerical_columns + definition.categorical_columns))
    report = _report(spec, tests, quality, probability, config)
    # The day itself, not the wall clock, so a re-run writes the same snapshot.
    timestamp = datetime.combine(as_date(ds), time(0))
    snapshot = report.run(
        Dataset.from_pandas(current[cols], data_definition=definition),
        Dataset.from_pandas(reference[cols], data_definition=definition),
        timestamp=timestamp, name=f"{spec.name} drift ds={ds}",
    )
    columns, share, quality_values = _parse(snapshot)
    return EvidentlyResult(columns=columns, share=share, quality=quality_values,
                           html=escape_data_script(snapshot.get_html_str(as_iframe=False)), json=snapshot.json())


class ReportMarkupError(RuntimeError):
    """Evidently's HTML does not have the shape escaping relies on (a changed Evidently version)."""


def escape_data_script(report_html: str) -> str:
    """Escape ``<``, ``>``, ``&`` in the JSON Evidently embeds in a ``<script>`` (same data, no way out).

    The JSON values are found by parsing them (``raw_decode``), not by looking for the closing
    tag a value could forge. In JSON these characters only occur inside strings, where
    ``\\u003c`` and ``<`` are the same character, so every byte outside the strings stays as it was.
    Raises :class:`ReportMarkupError` instead of writing a report it cannot make safe.
    """
    m = _DATA_SCRIPT_RE.search(report_html)
    if m is None:
        raise ReportMarkupError("Evidently's report HTML has no data script `<script> var metric_… =`; "
                                "cannot escape it (check the pinned Evidently version)")
    dashboard = m.group(1)
    decoder = json.JSONDecoder()
    pieces, pos = [report_html[:m.end()]], m.end()
    for follows in (rf"\s*;\s*var additional_graphs_{dashboard} = ", r"\s*;\s*</script>"):
        try:
            _, end = decoder.raw_decode(report_html, pos)
        except json.JSONDecodeError as exc:
            raise ReportMarkupError(f"Evidently's report data for {dashboard} is not JSON: {exc}") from exc
        glue = re.compile(follows).match(report_html, end)
        if glue is None:
            raise ReportMarkupError(f"Evidently's report data for {dashboard} is not followed by {follows!r}")
        pieces += [report_html[pos:end].translate(_JSON_IN_HTML), report_html[end:glue.end()]]
        pos = glue.end()
    pieces.append(report_html[pos:])
    return "".join(pieces)


def stable_ids(text: str) -> str:
    """Renumber Evidently's random element ids in order of first appearance (same shape, same use)."""
    mapping: dict[str, str] = {}

    def repl(m: re.Match[str]) -> str:
        token = m.group(0)
        if token not in mapping:
            n = len(mapping) + 1
            # keep the uuid7 shape (version 7, RFC variant) so nothing that parses ids is surprised
            mapping[token] = (f"00000000-0000-7000-8000-{n:012x}" if "-" in token else f"{n:032x}")
        return mapping[token]

    return _RANDOM_ID_RE.sub(repl, text)


def banner_html(
    ds: str,
    decision_drift: bool,
    reason: str,
    columns: Sequence[ColumnDrift],
    current_rows: int,
    reference_rows: int,
    sample_current: int,
    sample_reference: int,
    disagreements: Sequence[str],
    seed: int,
) -> str:
    """The box at the top of the report: the decision, what was sampled, and the full-data scores."""
    e = html.escape
    color = "#b71c1c" if decision_drift else "#1b5e20"
    sampled = sample_current < current_rows or sample_reference < reference_rows
    sample_note = (
        f"The Evidently report below is computed on a uniform random sample of {sample_current:,} of "
        f"{current_rows:,} current rows and {sample_reference:,} of {reference_rows:,} reference rows "
        f"(seed {seed}). The decision uses every row, with the same tests; "
        + (f"column(s) flagged differently on the sample: <b>{e(', '.join(disagreements))}</b>."
           if disagreements else "every column is flagged the same on the sample.")
        if sampled else
        f"The Evidently report below is computed on all {current_rows:,} current and {reference_rows:,} reference rows."
    )
    rows = "".join(
        f"<tr><td>{e(c.name)}</td><td>{e(c.role)}</td><td>{e(c.method_label)}</td>"
        f"<td style='text-align:right'>{c.score:.4g}</td><td style='text-align:right'>{c.threshold:g}</td>"
        f"<td style='color:{'#b71c1c' if c.drifted else '#1b5e20'}'>{'drift' if c.drifted else 'ok'}</td></tr>"
        for c in sorted(columns, key=lambda c: (not c.drifted, c.role != "feature", c.name))
    )
    return (
        "<div id='ai-factory-drift-banner' style='font-family:Roboto,Arial,sans-serif;margin:16px;padding:12px 16px;"
        f"border-left:6px solid {color};background:#fafafa'>"
        f"<h2 style='margin:0 0 6px 0;color:{color}'>ds={e(ds)}: {'DRIFT' if decision_drift else 'no drift'}</h2>"
        f"<p style='margin:4px 0'>{e(reason)}</p><p style='margin:4px 0'>{sample_note}</p>"
        "<details><summary>Per-column results on all rows (these decide)</summary>"
        "<table style='border-collapse:collapse;font-size:13px'><tr><th align='left'>column</th>"
        "<th align='left'>role</th><th align='left'>test</th><th>score</th><th>threshold</th><th></th></tr>"
        f"{rows}</table></details></div>"
    )


def with_banner(report_html: str, banner: str) -> str:
    """Insert the banner right after ``<body>`` (at the top when Evidently's markup changes)."""
    marker = "<body>"
    i = report_html.find(marker)
    if i < 0:
        log.warning("Evidently HTML has no <body> tag; putting the banner first")
        return banner + report_html
    i += len(marker)
    return report_html[:i] + banner + report_html[i:]

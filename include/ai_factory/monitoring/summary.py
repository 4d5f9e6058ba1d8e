"""``reports/drift/ds=…/summary.json``: the compact, stable record of one day's drift check.

The UI plugin, the CLI and the scenario test read this file, not Evidently's JSON. Its shape
is the :class:`DriftSummary` model (``DriftSummary.model_json_schema()`` gives the JSON
Schema); ``schema_version`` changes when a field changes meaning or disappears. It holds no
wall-clock times or durations, so re-running a day writes the same bytes.

Top level::

    schema_version, dataset, spec_fingerprint, ds
    current    {source: predictions|validated, path, rows, labeled_rows, model_versions}
    reference  {kind: provider|window, source, rows, model_version, partitions, sampled_from}
    drift      {share, share_threshold, feature_count, drifted_count, drifted_columns,
                drifted_features, key_columns, drifted_key_columns,
                columns: [{name, role, kind, key, method, method_label, threshold, score, drifted,
                           reference_rows, current_rows, reference_missing_share,
                           current_missing_share, report_score, report_drifted,
                           reference_clipped, current_clipped}]}
    quality    {available, reason, task, labeled_rows, reference_source,
                metrics: [{name, reference, current, degradation, max_degradation, relative, breached}]}
    decision   {drift, reason, triggers: [{rule: drift_share|key_column|quality, detail}]}
    rules      {share_threshold, key_columns, max_degradation: [{metric, max, relative}]}
    report     {html_file, json_file, sampled, current_rows, reference_rows, seed, includes_quality,
                disagreements, max_abs_score_diff}
    versions   {evidently, summary_schema}
"""

from __future__ import annotations

from typing import Any

from ai_factory.configfile import StrictModel
from ai_factory.monitoring.decision import Decision
from ai_factory.monitoring.quality import QualityComparison

SCHEMA_VERSION = 1
SUMMARY_FILE = "summary.json"
HTML_FILE = "report.html"
JSON_FILE = "report.json"


class CurrentInfo(StrictModel):
    source: str
    path: str
    rows: int
    labeled_rows: int
    model_versions: dict[str, int] = {}


class ReferenceInfo(StrictModel):
    kind: str
    source: str
    rows: int
    model_version: str | None = None
    partitions: list[str] = []
    sampled_from: int | None = None


class ColumnResult(StrictModel):
    """One column: the full-data test (decides) and the score shown in the (maybe sampled) report."""

    name: str
    role: str
    kind: str
    key: bool
    method: str
    method_label: str
    threshold: float
    score: float
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_missing_share: float
    current_missing_share: float
    report_score: float | None = None
    report_drifted: bool | None = None
    # finite values outside the reference-derived bounds, clipped before testing (see stattests)
    reference_clipped: int = 0
    current_clipped: int = 0


class DriftSection(StrictModel):
    share: float
    share_threshold: float
    feature_count: int
    drifted_count: int
    drifted_columns: list[str]
    drifted_features: list[str]
    key_columns: list[str]
    drifted_key_columns: list[str]
    columns: list[ColumnResult]


class RuleInfo(StrictModel):
    metric: str
    max: float
    relative: bool


class Rules(StrictModel):
    share_threshold: float
    key_columns: list[str]
    max_degradation: list[RuleInfo]


class ReportInfo(StrictModel):
    html_file: str = HTML_FILE
    json_file: str = JSON_FILE
    sampled: bool
    current_rows: int
    reference_rows: int
    seed: int
    includes_quality: bool
    disagreements: list[str]
    max_abs_score_diff: float


class DriftSummary(StrictModel):
    schema_version: int = SCHEMA_VERSION
    dataset: str
    spec_fingerprint: str
    ds: str
    current: CurrentInfo
    reference: ReferenceInfo
    drift: DriftSection
    quality: QualityComparison
    decision: Decision
    rules: Rules
    report: ReportInfo
    versions: dict[str, str]

    def to_json_bytes(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()

    def xcom(self, partition_url: str | None = None) -> dict[str, Any]:
        """The small dict the DAG passes on (and the Asset event's extras are cut from)."""
        out: dict[str, Any] = {
            "ds": self.ds,
            "drift": self.decision.drift,
            "reason": self.decision.reason,
            "rules_fired": [t.rule for t in self.decision.triggers],
            "share": round(self.drift.share, 6),
            "columns": self.drift.drifted_columns,
            "key_columns": self.drift.drifted_key_columns,
            "current_source": self.current.source,
            "current_rows": self.current.rows,
            "reference": self.reference.source,
            "model_version": self.reference.model_version,
            "quality": {m.name: round(m.current - m.reference, 6) for m in self.quality.metrics},
        }
        if partition_url is not None:
            out["report_path"] = partition_url
        return out

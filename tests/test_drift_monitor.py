"""A whole day's check through ``run_drift_check``: files written, decisions, sampling, re-runs."""

from __future__ import annotations

import json
from datetime import date

import pytest

from ai_factory.monitoring.config import parse_config
from ai_factory.monitoring.monitor import run_drift_check
from ai_factory.monitoring.summary import DriftSummary
from ai_factory.storage import Zone

from drift_fixtures import champion_reference, drift, week_before, write_predictions

DS = date(2026, 4, 10)
WITH_CHAMPION = parse_config({"reference": {"provider": "drift_fixtures:champion_reference"}})


def _files(lake, ds=DS) -> dict[str, bytes]:
    return lake.read_partition_files(Zone.REPORTS_DRIFT, ds)


def test_undrifted_served_day_writes_reports_and_decides_no_drift(lake):
    write_predictions(lake, DS, 3000)
    check = run_drift_check(DS, lake=lake, config=WITH_CHAMPION)
    s = check.summary
    assert check.partition == lake.partition_path(Zone.REPORTS_DRIFT, DS)
    files = _files(lake)
    assert set(files) == {"report.html", "report.json", "summary.json"}
    assert DriftSummary.model_validate_json(files["summary.json"]) == s
    assert s.current.source == "predictions" and s.current.rows == 3000 and s.current.labeled_rows == 3000
    assert s.reference.kind == "provider" and s.reference.model_version == "credit_default:v1"
    assert not s.decision.drift and s.decision.reason.startswith("no drift:")
    assert s.quality.available and s.quality.reference_source == "data"
    assert {m.name for m in s.quality.metrics} == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert s.report.includes_quality and not s.report.sampled and s.report.disagreements == []
    html = files["report.html"].decode()
    assert "ai-factory-drift-banner" in html and f"ds={DS}: no drift" in html
    assert "Jensen-Shannon distance" in html and "ROC AUC" in html  # Evidently's drift table and quality


def test_full_data_quality_numbers_equal_evidentlys(lake):
    """summary.json's quality (scikit-learn on all rows) equals Evidently's numbers in report.json."""
    write_predictions(lake, DS, 3000, cfg=drift("concept", DS))
    s = run_drift_check(DS, lake=lake, config=WITH_CHAMPION).summary
    report = json.loads(_files(lake)["report.json"])
    evidently = {}
    for m in report["metrics"]:
        kind = m["config"]["type"].rsplit(":", 1)[-1]
        if kind in ("Accuracy", "Precision", "Recall", "F1Score", "RocAuc"):
            evidently[kind] = m["value"]
    ours = {m.name: m.current for m in s.quality.metrics}
    assert ours["accuracy"] == pytest.approx(evidently["Accuracy"])
    assert ours["precision"] == pytest.approx(evidently["Precision"])
    assert ours["recall"] == pytest.approx(evidently["Recall"])
    assert ours["f1"] == pytest.approx(evidently["F1Score"])
    assert ours["roc_auc"] == pytest.approx(evidently["RocAuc"])
    assert s.decision.drift and [t.rule for t in s.decision.triggers] == ["quality"]


def test_covariate_drift_on_a_validated_day_against_the_window(lake):
    week_before(lake, DS, rows=1500)
    from drift_fixtures import write_validated

    write_validated(lake, DS, 3000, cfg=drift("covariate", DS))
    s = run_drift_check(DS, lake=lake, config=parse_config({})).summary
    assert s.current.source == "validated" and s.reference.kind == "window"
    assert s.decision.drift and {t.rule for t in s.decision.triggers} == {"drift_share", "key_column"}
    assert s.drift.share >= 0.5 and set(s.drift.drifted_key_columns) == {"age", "annual_income", "credit_score"}
    assert "default" in s.drift.drifted_columns  # label shift is reported (target role)
    assert not s.quality.available and "no predictions" in (s.quality.reason or "")
    key = {c.name: c for c in s.drift.columns}
    assert key["credit_score"].key and not key["region"].key and key["default"].role == "target"


def test_a_large_day_is_reported_on_a_sample_but_decided_on_all_rows(lake):
    write_predictions(lake, DS, 9000, cfg=drift("covariate", DS, 0.3))
    cfg = parse_config({"reference": {"provider": "drift_fixtures:champion_reference"}, "report": {"max_rows": 2500}})
    s = run_drift_check(DS, lake=lake, config=cfg).summary
    assert s.report.sampled and s.report.current_rows == 2500 and s.report.reference_rows == 2500
    assert s.current.rows == 9000
    assert all(c.current_rows + round(c.current_missing_share * 9000) == 9000 for c in s.drift.columns)
    # the shown score is the sample's; it stays near the full-data score that decides
    assert 0 < s.report.max_abs_score_diff < 0.06
    assert s.report.disagreements == [c.name for c in s.drift.columns if c.report_drifted != c.drifted]
    assert "uniform random sample of 2,500 of 9,000 current rows" in _files(lake)["report.html"].decode()


def test_rerunning_a_day_writes_identical_bytes(lake):
    write_predictions(lake, DS, 2000, cfg=drift("covariate", DS))
    run_drift_check(DS, lake=lake, config=WITH_CHAMPION)
    first = _files(lake)
    run_drift_check(DS, lake=lake, config=WITH_CHAMPION)
    assert _files(lake) == first
    assert lake.partitions(Zone.REPORTS_DRIFT) == [DS]


def test_provider_can_be_passed_directly(lake):
    write_predictions(lake, DS, 1500)
    s = run_drift_check(DS, lake=lake, config=parse_config({}), provider=champion_reference).summary
    assert s.reference.kind == "provider" and s.reference.rows == 6000


def test_cli_check_show_and_schema(lake, capsys):
    from ai_factory.cli import main

    write_predictions(lake, DS, 1500, cfg=drift("covariate", DS))
    config = lake.root + "/../drift.yaml"
    with open(config, "w") as fh:
        fh.write("reference:\n  provider: drift_fixtures:champion_reference\n")
    assert main(["drift", "plan", "--ds", DS.isoformat(), "--config", config]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["current"]["source"] == "predictions" and plan["reference"]["kind"] == "provider"
    assert main(["drift", "check", "--ds", DS.isoformat(), "--config", config]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["drift"] is True and out["ds"] == DS.isoformat() and out["seconds"]["total"] > 0
    assert main(["drift", "show", "--ds", DS.isoformat()]) == 0
    assert json.loads(capsys.readouterr().out)["decision"]["reason"] == out["reason"]
    assert main(["drift", "schema"]) == 0
    assert "DriftSummary" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no drift summary for ds=2026-04-11"):
        main(["drift", "show", "--ds", "2026-04-11"])


def test_stable_ids_renumbers_only_evidentlys_random_ids():
    from ai_factory.monitoring.evidently_report import stable_ids

    text = ('var metric_0f1e2d3c4b5a69788796a5b4c3d2e1f0 = {"id": "01a2084d-0f3c-7a1b-9c2d-3e4f5a6b7c8d", '
            '"tabs": [{"id": "01a2084d-0f3c-7a1b-9c2d-3e4f5a6b7c8e"}], "widget": "01a2084d-0f3c-7a1b-9c2d-3e4f5a6b7c8d", '
            '"metric_fingerprint": "27f305fc2041984ada5d8b1d0e1a3814"}; '
            'const DNS="6ba7b810-9dad-11d1-80b4-00c04fd430c8", NIL="00000000-0000-0000-0000-000000000000";')
    out = stable_ids(text)
    assert out == ('var metric_00000000000000000000000000000001 = {"id": "00000000-0000-7000-8000-000000000002", '
                   '"tabs": [{"id": "00000000-0000-7000-8000-000000000003"}], '
                   '"widget": "00000000-0000-7000-8000-000000000002", '
                   '"metric_fingerprint": "27f305fc2041984ada5d8b1d0e1a3814"}; '
                   'const DNS="6ba7b810-9dad-11d1-80b4-00c04fd430c8", NIL="00000000-0000-0000-0000-000000000000";')

"""The quality gate on real GX (file context in great_expectations/, real files), without Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ai_factory.data.generate import Corruption, generate_day, write_day
from ai_factory.quality.suite import CRITICAL, WARNING, expectation_configs, reference_stats
from ai_factory.quality.validate import (
    REASON_FILE,
    RESULT_FILE,
    PartitionMissingError,
    QualityGateFailed,
    run_quality_gate,
)
from ai_factory.settings import get_settings
from ai_factory.spec import default_spec
from ai_factory.storage import Zone

REPO = Path(__file__).resolve().parents[1]
DS = "2026-02-10"


def test_suite_has_a_critical_rule_for_every_spec_constraint():
    spec = default_spec()
    cfgs = expectation_configs(spec)
    by = {(c["type"], c["kwargs"].get("column")): c for c in cfgs}
    assert all(c["severity"] == CRITICAL for c in cfgs)
    for f in spec.features:
        assert ("expect_column_to_exist", f.name) in by
        if not f.nullable:
            assert ("expect_column_values_to_not_be_null", f.name) in by
        else:
            assert ("expect_column_values_to_not_be_null", f.name) not in by
        if f.dtype.is_numeric:
            rng = by[("expect_column_values_to_be_between", f.name)]["kwargs"]
            assert (rng["min_value"], rng["max_value"]) == (f.min, f.max)
        if f.categories:
            assert by[("expect_column_values_to_be_in_set", f.name)]["kwargs"]["value_set"] == list(f.categories)
    assert by[("expect_table_columns_to_match_set", None)]["kwargs"]["column_set"] == spec.columns
    assert ("expect_column_values_to_be_unique", "application_id") in by


def test_distribution_expectations_are_learned_warnings():
    spec = default_spec()
    ref = generate_day("2026-01-01", 5000)
    stats = reference_stats(spec, ref)
    warn = [c for c in expectation_configs(spec, stats) if c["severity"] == WARNING]
    assert len(warn) == 2 * len(spec.numeric_features)
    mean_age = next(c for c in warn if c["type"] == "expect_column_mean_to_be_between" and c["kwargs"]["column"] == "age")
    assert mean_age["kwargs"]["min_value"] < ref["age"].mean() < mean_age["kwargs"]["max_value"]
    with pytest.raises(ValueError, match="reference window is empty"):
        reference_stats(spec, ref.iloc[:0])


def test_committed_suite_is_what_init_builds():
    """great_expectations/expectations/*.json must be regenerated when the spec or generator changes."""
    spec = default_spec()
    ref = pd.concat([generate_day(f"2026-01-0{d}", 5000) for d in range(1, 8)], ignore_index=True)
    expected = expectation_configs(spec, reference_stats(spec, ref, day_rows=5000))  # `quality init --demo-reference`
    committed = json.loads((REPO / "great_expectations" / "expectations" / f"{spec.name}.json").read_text())
    got = [(e["type"], e["kwargs"]) for e in committed["expectations"]]
    want = [(c["type"], json.loads(json.dumps(c["kwargs"]))) for c in expected]
    assert len(got) == len(want)
    for (gt, gk), (wt, wk) in zip(got, want, strict=True):
        assert gt == wt
        assert gk.keys() <= wk.keys(), gt  # GX drops kwargs left at their defaults
        for key in gk:
            if isinstance(wk[key], float):
                assert gk[key] == pytest.approx(wk[key]), (gt, key)
            elif key != "quantile_ranges":
                assert gk[key] == wk[key], (gt, key)


def test_good_day_is_published_with_report_and_data_docs(lake):
    write_day(lake, DS, 1500)
    landed = lake.read_partition_files(Zone.LANDING, DS)
    summary = run_quality_gate(DS)
    assert summary["status"] == "passed"
    assert summary["rows"] == 1500
    assert summary["expectations"]["critical_failed"] == 0
    assert lake.read_partition_files(Zone.VALIDATED, DS) == landed  # published byte for byte
    assert lake.read_partition_files(Zone.LANDING, DS) == landed  # landing is the raw record; kept
    assert not lake.partition_exists(Zone.QUARANTINE, DS)
    page = Path(summary["data_docs_site"]) / summary["data_docs_page"].replace("%3D", "=")
    assert page.is_file(), page
    assert (Path(summary["data_docs_site"]) / "index.html").is_file()
    on_disk = lake.read_json(lake.partition_path(Zone.REPORTS_QUALITY, DS) + "/summary.json")
    assert on_disk["status"] == "passed" and on_disk["sha256"] == summary["sha256"]


EXPECTED_REASON = {
    Corruption.NULLS: ("credit_score", "expect_column_values_to_not_be_null"),
    Corruption.OUT_OF_RANGE: ("age", "expect_column_values_to_be_between"),
    Corruption.UNKNOWN_CATEGORY: ("region", "expect_column_values_to_be_in_set"),
    Corruption.MISSING_COLUMN: ("credit_score", "column 'credit_score' is missing"),
    Corruption.WRONG_DTYPE: ("annual_income", "expect_column_values_to_be_in_type_list"),
    Corruption.EMPTY_FILE: (None, "file is empty (0 bytes)"),
    Corruption.UNREADABLE_FILE: (None, "not a readable Parquet file"),
}


@pytest.mark.parametrize("kind", list(Corruption))
def test_each_corruption_is_quarantined_with_its_report(lake, kind):
    write_day(lake, DS, 800, corruption=kind)
    original = lake.read_partition_files(Zone.LANDING, DS)
    with pytest.raises(QualityGateFailed) as err:
        run_quality_gate(DS)
    column, phrase = EXPECTED_REASON[kind]
    message = str(err.value)
    assert f"ds={DS}" in message and phrase in message
    if column:
        assert column in message
    assert f"quarantine/ds={DS}" in message and RESULT_FILE in message
    files = lake.read_partition_files(Zone.QUARANTINE, DS)
    assert files["part-0.parquet"] == original["part-0.parquet"]  # the bytes, untouched
    assert not lake.partition_exists(Zone.LANDING, DS)  # moved, not copied
    assert not lake.partition_exists(Zone.VALIDATED, DS)
    result = json.loads(files[RESULT_FILE])
    assert result["success"] is False and result["results"]
    reason = json.loads(files[REASON_FILE])
    assert reason["reasons"] and reason["sha256"] == err.value.summary["sha256"]
    assert err.value.summary["status"] == "quarantined"


def test_rerun_of_quarantined_day_is_idempotent_and_a_fix_supersedes_it(lake):
    write_day(lake, DS, 600, corruption="out_of_range")
    with pytest.raises(QualityGateFailed):
        run_quality_gate(DS)
    first = lake.read_partition_files(Zone.QUARANTINE, DS)
    with pytest.raises(QualityGateFailed):
        run_quality_gate(DS)  # re-validates from quarantine
    assert lake.read_partition_files(Zone.QUARANTINE, DS) == first
    # ops land a fixed file: it passes and the old bytes are kept aside, not lost
    write_day(lake, DS, 600)
    assert run_quality_gate(DS)["status"] == "passed"
    assert not lake.partition_exists(Zone.QUARANTINE, DS)
    (kept,) = lake.archived(Zone.QUARANTINE, DS)
    assert kept.reason["reason"].startswith("superseded: ds=2026-02-10 passed validation from landing")
    assert {n: (Path(kept.path) / n).read_bytes() for n in first} == first  # bytes and report, as they were


def test_failed_redelivery_of_a_validated_day_archives_the_good_bytes_and_restore_brings_them_back(lake, capsys):
    """Finding: a corrupt re-delivery of a validated day deleted validated/ds=D (the good bytes were kept nowhere)."""
    from ai_factory.cli import main

    write_day(lake, DS, 600)
    assert run_quality_gate(DS)["status"] == "passed"
    good = lake.read_partition_files(Zone.VALIDATED, DS)
    write_day(lake, DS, 600, corruption="unreadable_file")  # the bad re-delivery
    with pytest.raises(QualityGateFailed) as err:
        run_quality_gate(DS)
    assert not lake.partition_exists(Zone.VALIDATED, DS)  # withdrawn: not served to training as valid
    (withdrawn,) = lake.archived(Zone.VALIDATED, DS)
    assert err.value.summary["withdrawn_validated"] == lake.url(withdrawn.path)
    why = withdrawn.reason
    assert why["reason"].startswith("withdrawn: a re-delivery of this day failed validation") and why["run"]
    assert why["archived_at"] and set(why["files"]) == set(good)
    assert {n: (Path(withdrawn.path) / n).read_bytes() for n in good} == good
    # both deliveries as they landed are in the archive of landing, beside quarantine's copy
    assert len(lake.archived(Zone.LANDING, DS)) == 2
    # and the day's earlier quality summary ("passed") is kept beside the new one ("quarantined")
    (old_report,) = lake.archived(Zone.REPORTS_QUALITY, DS)
    assert json.loads((Path(old_report.path) / "summary.json").read_bytes())["status"] == "passed"

    assert main(["data", "archived", "--zone", "validated", "--ds", DS]) == 0
    listed = json.loads(capsys.readouterr().out)["archived"]
    assert [e["id"] for e in listed] == [withdrawn.id]
    assert main(["data", "restore", "--zone", "validated", "--ds", DS, "--from", withdrawn.id]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["from"] == withdrawn.id and out["restored"] == lake.url(lake.partition_path(Zone.VALIDATED, DS))
    assert lake.read_partition_files(Zone.VALIDATED, DS) == good  # byte for byte
    assert lake.archived(Zone.VALIDATED, DS)[0].id == withdrawn.id  # the archive keeps its copy
    with pytest.raises(SystemExit, match="no archived copy 'nope' of validated/ds=2026-02-10; choose one of"):
        main(["data", "restore", "--zone", "validated", "--ds", DS, "--from", "nope"])


def test_rerun_of_a_good_day_writes_identical_outputs(lake):
    write_day(lake, DS, 700)
    run_quality_gate(DS)
    v1 = lake.read_partition_files(Zone.VALIDATED, DS)
    s1 = lake.read_partition_files(Zone.REPORTS_QUALITY, DS)
    run_quality_gate(DS)
    assert lake.read_partition_files(Zone.VALIDATED, DS) == v1
    assert lake.read_partition_files(Zone.REPORTS_QUALITY, DS) == s1
    assert lake.partitions(Zone.VALIDATED) == [pd.Timestamp(DS).date()]


def test_missing_partition_is_a_clear_error(lake):
    with pytest.raises(PartitionMissingError, match=f"no data for ds={DS}: neither .*landing/ds={DS}"):
        run_quality_gate(DS)


_COMPARE = r"""
import json, sys, datetime
import pandas as pd
from ai_factory.data.generate import generate_day, corrupt
from ai_factory.quality.reader import read_parquet_bytes
from ai_factory.quality.validate import validate_frame
from ai_factory.settings import get_settings
from ai_factory.spec import default_spec
from ai_factory.storage import DataLake
out = {}
for kind in ["none", "nulls", "out_of_range", "unknown_category", "missing_column", "wrong_dtype"]:
    df = generate_day("2026-02-01", 3000)
    data = corrupt(df, kind, seed=3) if kind != "none" else __import__("ai_factory.data.generate", fromlist=["x"]).to_parquet_bytes(df)
    frame = read_parquet_bytes(data)
    s = get_settings()
    res, _ = validate_frame(frame, datetime.date(2026, 2, 1), default_spec(), DataLake(s.data_root), s, update_docs=False)
    out[kind] = [(r["expectation_config"]["type"], r["expectation_config"]["kwargs"].get("column"), r["success"],
                  json.dumps((r.get("result") or {}).get("observed_value"), default=str),
                  (r.get("result") or {}).get("unexpected_count")) for r in res["results"]]
json.dump(out, sys.stdout)
"""


def test_gx_speed_fixes_do_not_change_results(tmp_path):
    def run(fast: str) -> dict:
        env = dict(os.environ, AI_FACTORY_GX_FAST=fast, AI_FACTORY_DATA_ROOT=str(tmp_path / fast))
        proc = subprocess.run([sys.executable, "-c", _COMPARE], env=env, capture_output=True, text=True, check=True)
        return json.loads(proc.stdout)

    fast, slow = run("1"), run("0")
    assert fast.keys() == slow.keys()
    for kind in fast:
        assert sorted(map(tuple, fast[kind]), key=str) == sorted(map(tuple, slow[kind]), key=str), kind
    assert any(not ok for _, _, ok, _, _ in fast["nulls"])  # the comparison covers failures too
    assert get_settings().gx_root.is_dir()

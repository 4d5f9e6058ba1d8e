"""A new dataset's quality suite from its spec alone, then distributions learned from validated days.

Real public data shipped inside scikit-learn (no download), the real CLI in-process, real GX
in a GX project of its own (the repository's config, none of the demo's committed objects).
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ai_factory.cli import main
from ai_factory.settings import get_settings, reset_settings
from ai_factory.storage import DataLake, Zone
from tests.test_spec_infer import breast_cancer_csv

sklearn_datasets = pytest.importorskip("sklearn.datasets")

REPO = Path(__file__).resolve().parents[1]
DAY0 = date(2026, 1, 1)
DAYS = 10
ENOUGH = 6  # AI_FACTORY_QUALITY_REFERENCE_DAYS in these tests


@pytest.fixture
def gx_root(tmp_path: Path, lake: DataLake, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "gx"
    root.mkdir()
    shutil.copy(REPO / "great_expectations" / "great_expectations.yml", root)
    monkeypatch.setenv("AI_FACTORY_GX_ROOT", str(root))
    monkeypatch.setenv("AI_FACTORY_QUALITY_REFERENCE_DAYS", str(ENOUGH))
    reset_settings()
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else {}), out.err


def _warnings(gx_root: Path, name: str) -> list[dict]:
    suite = json.loads((gx_root / "expectations" / f"{name}.json").read_text())
    return [e for e in suite["expectations"] if e.get("severity") == "warning"]


def _ds(i: int) -> str:
    return (DAY0 + timedelta(days=int(i))).isoformat()


def test_onboarding_from_the_spec_alone_then_distributions_from_validated_days(
        tmp_path: Path, lake: DataLake, gx_root: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch):
    """Finding: `quality init` learned from generated credit-default days whatever the spec said (KeyError)."""
    path, df = breast_cancer_csv(tmp_path)
    # Shuffled rows, ten days: every day is drawn from one and the same distribution.
    df["seen_on"] = [_ds(i % DAYS) for i in np.random.default_rng(1).permutation(len(df))]
    df.to_csv(path, index=False)
    spec = str(tmp_path / "breast_cancer.yaml")

    assert _run(capsys, "spec", "infer", str(path), "--target", "diagnosis", "--id", "patient_id",
                "--time", "seen_on", "-o", spec)[0] == 0
    assert _run(capsys, "data", "land", str(path), "--spec", spec, "--by", "seen_on")[0] == 0
    assert lake.partitions(Zone.LANDING) == [DAY0 + timedelta(days=i) for i in range(DAYS)]
    code, _, err = _run(capsys, "quality", "validate", "--ds", _ds(0), "--spec", spec)
    assert code == 2  # before any suite: one line naming what is missing and the fix, nothing moved
    assert "error: no GX checkpoint 'breast_cancer_checkpoint' in" in err
    assert f"`ai-factory quality init --spec {spec}`" in err and "Traceback" not in err
    assert len(lake.partitions(Zone.LANDING)) == DAYS and not lake.partitions(Zone.QUARANTINE)

    code, out, _ = _run(capsys, "quality", "init", "--spec", spec)
    assert code == 0 and out["validated_days_found"] == 0 and out["reference_days"] == []
    assert out["distributions"].startswith(f"none yet: the spec's contract alone; {ENOUGH} more validated day(s)")
    assert _warnings(gx_root, "breast_cancer") == []  # the contract: no distribution expectations
    for i in range(ENOUGH):
        code, summary, _ = _run(capsys, "quality", "validate", "--ds", _ds(i), "--spec", spec)
        assert code == 0 and summary["status"] == "passed", summary["failures"]

    code, out, _ = _run(capsys, "quality", "init", "--spec", spec)
    assert code == 0 and out["reference_days"] == [_ds(i) for i in range(ENOUGH)]
    assert len(_warnings(gx_root, "breast_cancer")) == 2 * 30  # mean and quantiles of the 30 measurements
    for i in range(ENOUGH - 1, DAYS):  # a reference day and the four it never saw: no warnings
        code, summary, _ = _run(capsys, "quality", "validate", "--ds", _ds(i), "--spec", spec)
        assert code == 0 and summary["expectations"]["warnings"] == 0, (_ds(i), summary["warnings"])

    # A day from another distribution (malignant cases only) still raises them, without blocking.
    shifted = tmp_path / "shifted.csv"
    df[df["diagnosis"] == "Yes"].sample(len(df) // DAYS, random_state=0).to_csv(shifted, index=False)
    assert _run(capsys, "data", "land", str(shifted), "--spec", spec, "--ds", _ds(DAYS))[0] == 0
    code, summary, _ = _run(capsys, "quality", "validate", "--ds", _ds(DAYS), "--spec", spec)
    assert code == 0 and summary["status"] == "passed"
    assert summary["expectations"]["warnings"] >= 10, summary["warnings"]
    assert {w["column"] for w in summary["warnings"]} >= {"mean_radius", "worst_area"}
    # The data_quality DAG's refresh_suite Param: learns only from validated days before the run's day.
    from ai_factory.quality.project import refresh_suite

    monkeypatch.setenv("AI_FACTORY_SPEC", spec)
    reset_settings()
    assert refresh_suite(before=_ds(ENOUGH - 1))["reference_days"] == []  # five days: not enough
    assert _warnings(gx_root, "breast_cancer") == []
    assert refresh_suite(before=_ds(DAYS))["reference_days"] == [_ds(i) for i in range(DAYS - ENOUGH, DAYS)]
    assert len(_warnings(gx_root, "breast_cancer")) == 60


def test_demo_reference_is_refused_for_another_dataset(tmp_path: Path, gx_root: Path,
                                                       capsys: pytest.CaptureFixture[str]):
    path, _ = breast_cancer_csv(tmp_path)
    spec = str(tmp_path / "bc.yaml")
    assert _run(capsys, "spec", "infer", str(path), "--target", "diagnosis", "--id", "patient_id",
                "--time", "seen_on", "-o", spec)[0] == 0
    code, _, err = _run(capsys, "quality", "init", "--spec", spec, "--demo-reference")
    assert code == 2 and "--demo-reference generates the credit-default demo's columns, not those of spec" in err
    assert not (gx_root / "expectations").exists()


def _digits_days(n_days: int, seed: int) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    frame = sklearn_datasets.load_digits(as_frame=True).frame
    order = np.random.default_rng(seed).permutation(len(frame))
    return frame, [frame.iloc[order[i::n_days]].reset_index(drop=True) for i in range(n_days)]


@pytest.mark.parametrize("z", [None, 0.0])
def test_days_of_one_distribution_raise_no_distribution_warning(tmp_path: Path, lake: DataLake, gx_root: Path,
                                                                z: float | None):
    """Finding: warnings fired 3-16 times a day on shuffled days of one dataset (band: tolerance × std).

    Digits: 64 pixel columns, many nearly always 0 (skewed, discrete): learn from five random
    days of ~180 rows, validate three others. With the noise band off (z=0, the old rule) the
    same days raise warnings: the test tells the two apart.
    """
    from ai_factory.data.infer import infer_spec
    from ai_factory.quality.project import init_project
    from ai_factory.quality.validate import validate_frame

    frame, days = _digits_days(10, seed=3)
    csv = tmp_path / "digits.csv"
    frame.to_csv(csv, index=False)
    _, spec = infer_spec(str(csv), "target")
    settings = get_settings()
    if z is not None:
        import dataclasses

        settings = dataclasses.replace(settings, quality_noise_z=z)
    reference = days[:5]
    init_project(spec, pd.concat(reference, ignore_index=True), settings, day_rows=min(map(len, reference)))

    def warnings(day: pd.DataFrame) -> list[str]:
        result, _ = validate_frame(day, DAY0, spec, lake, settings, update_docs=False)
        failed = [r for r in result["results"] if not r["success"]]
        assert all(r["expectation_config"]["severity"] == "warning" for r in failed)
        return [r["expectation_config"]["kwargs"]["column"] for r in failed]

    per_day = [warnings(day) for day in days[5:8]]
    if z is None:  # the default tolerance
        assert per_day == [[]] * 3
        zeros = frame[frame["target"] == 0].sample(150, random_state=0).reset_index(drop=True)
        assert len(warnings(zeros)) >= 20  # a day of only one digit: a real shift still shows
    else:
        assert sum(map(len, per_day)) >= 3, per_day


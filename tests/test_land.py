"""`data land` on real data (scikit-learn's breast cancer set), through the real lake and GX gate."""

from __future__ import annotations

import posixpath
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from ai_factory.data.infer import infer_spec
from ai_factory.data.land import PART_NAME, SUPERSEDED, LandError, land
from ai_factory.spec import DatasetSpec
from ai_factory.storage import DataLake, Zone
from tests.test_spec_infer import breast_cancer_csv

REPO = Path(__file__).resolve().parents[1]
D1, D5 = date(2026, 1, 1), date(2026, 1, 5)


@pytest.fixture
def onboarded(tmp_path: Path) -> tuple[Path, pd.DataFrame, DatasetSpec]:
    path, df = breast_cancer_csv(tmp_path)
    _, spec = infer_spec(str(path), "diagnosis", id_column="patient_id", time_column="seen_on")
    return path, df, spec


def _mtimes(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_by_column_lands_one_partition_per_day_and_again_changes_nothing(onboarded, lake: DataLake):
    path, df, spec = onboarded
    first = land(str(path), spec, lake, by="seen_on")
    assert [r.ds for r in first] == [f"2026-01-0{d}" for d in range(1, 6)]
    assert [r.status for r in first] == ["landed"] * 5
    assert sum(r.rows for r in first) == len(df)
    day1 = lake.read_partition(Zone.LANDING, D1)
    assert list(day1.columns) == spec.landing_columns  # features, target, id, time, ignore
    assert day1["patient_id"].tolist() == df["patient_id"].iloc[::5].tolist()  # file order kept
    assert set(day1["diagnosis"]) == {"No", "Yes"}

    before = _mtimes(Path(lake.root))
    again = land(str(path), spec, lake, by="seen_on")
    assert [r.status for r in again] == ["unchanged"] * 5
    assert _mtimes(Path(lake.root)) == before  # not a byte rewritten


def test_a_different_file_is_refused_then_replaced_with_the_old_bytes_kept(onboarded, lake: DataLake, tmp_path: Path):
    path, df, spec = onboarded
    land(str(path), spec, lake, ds=D1)
    old = lake.read_partition_files(Zone.LANDING, D1)
    changed = tmp_path / "fixed.parquet"
    df.iloc[:100].to_parquet(changed)
    before = _mtimes(Path(lake.root))
    with pytest.raises(LandError) as err:
        land(str(changed), spec, lake, ds=D1)
    assert "a different file is already landed for 1 day(s): 2026-01-01 (landing); pass --replace" in str(err.value)
    assert _mtimes(Path(lake.root)) == before

    (result,) = land(str(changed), spec, lake, ds=D1, replace=True)
    assert result.status == "replaced" and result.rows == 100
    assert len(lake.read_partition(Zone.LANDING, D1)) == 100
    (aside,) = result.superseded
    # The lake's archive where it has one (archive/landing/ds=…/<id>/), else landing/_superseded/ds=…/.
    kept = (lake.archive_path(Zone.LANDING, D1) if hasattr(lake, "archive_partition")
            else posixpath.join(lake.zone_path(Zone.LANDING), SUPERSEDED, "ds=2026-01-01"))
    assert aside.startswith(kept + "/")
    assert lake.read_bytes(posixpath.join(aside, PART_NAME)) == old[PART_NAME]
    assert lake.read_json(posixpath.join(aside, "_reason.json"))["reason"].startswith("replaced by `ai-factory data")
    assert lake.partitions(Zone.LANDING) == [D1]  # _superseded is not a day


def test_columns_outside_the_spec_are_named_with_the_fix(onboarded, lake: DataLake, tmp_path: Path):
    path, df, spec = onboarded
    extra = tmp_path / "extra.csv"
    df.assign(leak_after_diagnosis=1).to_csv(extra, index=False)
    with pytest.raises(LandError) as err:
        land(str(extra), spec, lake, ds=D1, spec_source="spec.yaml")
    assert str(err.value) == (f"{extra}: column(s) leak_after_diagnosis are not in the spec: list them under "
                              "`ignore:` in spec.yaml (kept in the lake, never modelled) or drop them from the export")
    short = tmp_path / "short.csv"
    df.drop(columns=["note", "mean_radius"]).to_csv(short, index=False)
    with pytest.raises(LandError, match="missing column\\(s\\) mean_radius, note that spec.yaml declares"):
        land(str(short), spec, lake, ds=D1, spec_source="spec.yaml")
    with pytest.raises(LandError, match="--by column 'clinic' .* does not hold dates"):
        land(str(path), spec, lake, by="clinic")
    assert not lake.exists(lake.zone_path(Zone.LANDING))


def test_landed_days_with_ignored_columns_pass_the_gx_gate(onboarded, lake: DataLake, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    from ai_factory.quality.project import init_project
    from ai_factory.quality.validate import QualityGateFailed, run_quality_gate
    from ai_factory.settings import get_settings, reset_settings

    # A GX project of its own: the repository's config, none of the demo's committed objects.
    (tmp_path / "gx").mkdir()
    shutil.copy(REPO / "great_expectations" / "great_expectations.yml", tmp_path / "gx")
    monkeypatch.setenv("AI_FACTORY_GX_ROOT", str(tmp_path / "gx"))
    reset_settings()
    path, df, spec = onboarded
    land(str(path), spec, lake, by="seen_on")
    init_project(spec, None, get_settings())  # the spec's contract alone: what the ignore columns concern
    summary = run_quality_gate(D5, lake=lake, spec=spec)
    assert summary["status"] == "passed", summary["failures"]
    assert list(lake.read_partition(Zone.VALIDATED, D5).columns) == spec.landing_columns  # kept in the lake
    assert all(r.status == "unchanged" for r in land(str(path), spec, lake, by="seen_on"))
    # The gate judges the file, not the lander: a day whose file breaks the contract is quarantined.
    bad = tmp_path / "bad.csv"
    df.assign(clinic="west").to_csv(bad, index=False)
    land(str(bad), spec, lake, ds=date(2026, 2, 1))
    with pytest.raises(QualityGateFailed, match="column 'clinic'"):
        run_quality_gate(date(2026, 2, 1), lake=lake, spec=spec)

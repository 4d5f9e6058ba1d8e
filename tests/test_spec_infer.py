"""`spec infer` on real public data shipped inside scikit-learn (no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from ai_factory.data import tabular
from ai_factory.data.infer import InferError, infer_spec, write_spec
from ai_factory.spec import DType, TaskType, load_spec, parse_spec

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def _snake(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns=lambda c: c.replace(" ", "_").replace("(", "").replace(")", ""))


def breast_cancer_csv(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """Breast cancer (binary) with the labels a person's export has: No/Yes strings, an id, a date, notes."""
    df = _snake(sklearn_datasets.load_breast_cancer(as_frame=True).frame)
    df["diagnosis"] = np.where(df.pop("target") == 1, "No", "Yes")  # 1 = benign in scikit-learn
    rng = np.random.default_rng(0)
    df["patient_id"] = [f"P{i:05d}" for i in range(len(df))]
    df["seen_on"] = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(len(df)) % 5, unit="D")
    df["clinic"] = rng.choice(["north", "south", "east"], len(df))
    df["note"] = [f"free text {i}" for i in range(len(df))]
    df.loc[::7, "mean_texture"] = np.nan
    path = tmp_path / "breast_cancer.csv"
    df.to_csv(path, index=False)
    return path, df


def test_binary_strings_id_time_and_high_cardinality(tmp_path: Path):
    path, df = breast_cancer_csv(tmp_path)
    text, spec = infer_spec(str(path), "diagnosis", id_column="patient_id", time_column="seen_on")

    assert spec.name == "breast_cancer" and spec.target.task is TaskType.BINARY
    assert spec.target.classes == ("No", "Yes")  # as in the file, strings, not YAML booleans
    assert spec.target.positive_class == "Yes"  # the rarer one (212 of 569)
    assert spec.id_column == "patient_id" and spec.time_column == "seen_on"
    assert spec.ignore == ("note",)  # 569 distinct strings: over the cap, flagged, not enumerated
    assert "note: a string with 569 distinct values, over the category cap of 50" in text
    assert spec.feature("clinic").dtype is DType.CATEGORY
    assert spec.feature("clinic").categories == ("east", "north", "south")
    assert spec.feature("mean_texture").nullable and not spec.feature("mean_radius").nullable
    assert len(spec.features) == 31
    for f in spec.numeric_features:
        lo, hi = df[f.name].min(), df[f.name].max()
        assert f.min is not None and f.max is not None
        assert f.min <= lo and f.max >= hi  # never tighter than the data
        assert f.min >= min(0.0, lo - 0.2 * (hi - lo)) and f.max <= hi + 0.2 * (hi - lo)  # but not loose
    assert 'classes: [\'No\', \'Yes\']' in text and "task binary, inferred: a string target with 2" in text

    out = write_spec(text, tmp_path / "spec.yaml")
    loaded = load_spec(out)
    assert loaded == spec
    # Round trip: the loaded spec, dumped and parsed again, is the same spec.
    assert parse_spec(yaml.safe_load(yaml.safe_dump(loaded.model_dump(mode="json")))) == loaded
    with pytest.raises(InferError, match="already exists; pass --force"):
        write_spec(text, out)


def test_multiclass_and_regression_are_inferred(tmp_path: Path):
    iris = _snake(sklearn_datasets.load_iris(as_frame=True).frame)
    iris.to_parquet(tmp_path / "iris.parquet")
    _, spec = infer_spec(str(tmp_path / "iris.parquet"), "target")
    assert spec.target.task is TaskType.MULTICLASS and spec.target.classes == (0, 1, 2)
    assert [f.dtype for f in spec.features] == [DType.FLOAT] * 4

    diabetes = sklearn_datasets.load_diabetes(as_frame=True, scaled=False).frame
    diabetes.to_csv(tmp_path / "diabetes.csv", index=False)
    text, spec = infer_spec(str(tmp_path / "diabetes.csv"), "target")
    assert spec.target.task is TaskType.REGRESSION and spec.target.classes is None
    assert "task regression, inferred: a numeric target with" in text
    assert spec.feature("sex").dtype is DType.FLOAT  # stored as 1.0/2.0 in scikit-learn's file
    assert (spec.feature("age").min, spec.feature("age").max) == (13, 85)  # 19..79 widened by 6 each side

    with pytest.raises(InferError, match=r"--task binary needs 2 target values, but 'target' has 3"):
        infer_spec(str(tmp_path / "iris.parquet"), "target", task=TaskType.BINARY)
    with pytest.raises(InferError, match=r"--target 'species' is not a column of the file"):
        infer_spec(str(tmp_path / "iris.parquet"), "species")


def test_column_names_a_spec_cannot_hold_get_the_fix(tmp_path: Path):
    raw = sklearn_datasets.load_wine(as_frame=True).frame  # has "od280/od315_of_diluted_wines"
    raw.to_csv(tmp_path / "wine.csv", index=False)
    with pytest.raises(InferError) as err:
        infer_spec(str(tmp_path / "wine.csv"), "target")
    assert "'od280/od315_of_diluted_wines' cannot be feature names" in str(err.value)
    assert "rename them in the export" in str(err.value)
    _, spec = infer_spec(str(tmp_path / "wine.csv"), "target", ignore=["od280/od315_of_diluted_wines"])
    assert spec.ignore == ("od280/od315_of_diluted_wines",) and spec.target.task is TaskType.MULTICLASS


def test_a_later_csv_block_widens_the_type_instead_of_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Arrow infers types from the first block: a column of integers that holds 2.5 further down
    # must come out as float (and a code column that turns textual, as a category), not fail.
    monkeypatch.setattr(tabular, "_BLOCK_BYTES", 4096)
    n = 3000
    df = pd.DataFrame({"x": np.arange(n), "code": np.arange(n) % 3, "y": np.arange(n) % 2})
    df["x"] = df["x"].astype(object)
    df.loc[n - 1, "x"] = 2.5
    df["code"] = df["code"].astype(str)
    df.loc[n - 1, "code"] = "z"
    df.to_csv(tmp_path / "late.csv", index=False)
    _, spec = infer_spec(str(tmp_path / "late.csv"), "y")
    assert spec.feature("x").dtype is DType.FLOAT
    assert spec.feature("code").dtype is DType.CATEGORY and spec.feature("code").categories == ("0", "1", "2", "z")
    whole = tabular.read_table(str(tmp_path / "late.csv"))  # data land's multithreaded reader widens alike
    assert (whole.schema.field("x").type, whole.schema.field("code").type) == (pa.float64(), pa.string())
    _, sample = infer_spec(str(tmp_path / "late.csv"), "y", sample_rows=100)
    assert sample.feature("x").dtype is DType.INT and sample.feature("x").max is not None


def test_unreadable_files_are_named(tmp_path: Path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(tabular.TabularFileError, match="empty.csv: not a readable CSV file"):
        infer_spec(str(tmp_path / "empty.csv"), "y")
    (tmp_path / "data.xlsx").write_bytes(b"x")
    with pytest.raises(tabular.TabularFileError, match="unknown file type; name it"):
        infer_spec(str(tmp_path / "data.xlsx"), "y")
    with pytest.raises(tabular.TabularFileError, match="no such file"):
        infer_spec(str(tmp_path / "gone.csv"), "y")

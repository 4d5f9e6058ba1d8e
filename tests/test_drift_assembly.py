"""Which current data and which reference a day's drift check uses (real files in a temp lake)."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from ai_factory.data.generate import generate_day, to_parquet_bytes
from ai_factory.monitoring.assembly import (
    AssemblyError,
    CurrentDataQuarantined,
    NoCurrentDataError,
    NoReferenceError,
    Reference,
    inputs_arrived,
    load_inputs,
    plan_inputs,
)
from ai_factory.monitoring.config import parse_config
from ai_factory.spec import default_spec
from ai_factory.storage import Zone

from drift_fixtures import MODEL_VERSION, served, week_before, write_predictions, write_validated

DS = date(2026, 2, 10)
SPEC = default_spec()
CONFIG = parse_config({})


def test_served_predictions_are_preferred_over_the_validated_partition(lake):
    week_before(lake, DS, rows=300)
    write_validated(lake, DS, 500)
    served_df = write_predictions(lake, DS, 800, files=3)
    plan = plan_inputs(lake, DS, SPEC, CONFIG)
    assert plan.current.source == "predictions"
    assert plan.current.path == lake.partition_path(Zone.PREDICTIONS, DS)
    assert len(plan.current.files) == 3 and plan.current.rows == 800
    assert plan.current.model_versions == {MODEL_VERSION: 800}
    current, _ = load_inputs(lake, plan, SPEC, CONFIG)
    assert len(current) == 800
    assert current["prediction"].tolist() == served_df["prediction"].tolist()
    assert current["credit_score"].tolist() == served_df["credit_score"].astype("float64").tolist()


def test_validated_partition_when_nothing_was_served(lake):
    week_before(lake, DS, rows=300)
    write_validated(lake, DS, 500)
    plan = plan_inputs(lake, DS, SPEC, CONFIG)
    assert plan.current.source == "validated" and plan.current.rows == 500
    assert plan.current.model_versions == {} and plan.current.model_version is None
    current, _ = load_inputs(lake, plan, SPEC, CONFIG)
    assert current["prediction"].isna().all() and current["default"].notna().all()


def test_no_current_data_names_both_paths(lake):
    week_before(lake, DS, rows=300)
    assert not inputs_arrived(lake, DS)
    with pytest.raises(NoCurrentDataError) as err:
        plan_inputs(lake, DS, SPEC, CONFIG)
    assert not isinstance(err.value, CurrentDataQuarantined)
    assert lake.partition_path(Zone.PREDICTIONS, DS) in str(err.value)
    assert lake.partition_path(Zone.VALIDATED, DS) in str(err.value)


def test_quarantined_day_says_so(lake):
    week_before(lake, DS, rows=300)
    lake.replace_partition(Zone.QUARANTINE, DS, {"part-0.parquet": b"broken"})
    assert inputs_arrived(lake, DS)
    with pytest.raises(CurrentDataQuarantined, match="quarantined by data quality"):
        plan_inputs(lake, DS, SPEC, CONFIG)


def test_reference_window_is_the_last_validated_days_before_the_day(lake):
    for offset in (-10, -3, -2, -1, 0, 1):
        write_validated(lake, DS + timedelta(days=offset), 200 + offset)
    cfg = parse_config({"reference": {"window_days": 3}})
    plan = plan_inputs(lake, DS, SPEC, cfg)
    assert plan.reference.kind == "window"
    assert plan.reference.partitions == [(DS + timedelta(days=o)).isoformat() for o in (-3, -2, -1)]
    assert plan.reference.rows == 197 + 198 + 199
    _, ref = load_inputs(lake, plan, SPEC, cfg)
    assert len(ref.data) == 594 and ref.model_version is None


def test_a_large_window_is_sampled_reproducibly(lake):
    for offset in (1, 2):
        write_validated(lake, DS - timedelta(days=offset), 1500)
    write_validated(lake, DS, 100)
    cfg = parse_config({"reference": {"max_rows": 2000}})
    plan = plan_inputs(lake, DS, SPEC, cfg)
    assert plan.reference.rows == 2000 and plan.reference.sampled_from == 3000
    first = load_inputs(lake, plan, SPEC, cfg)[1].data
    again = load_inputs(lake, plan, SPEC, cfg)[1].data
    assert len(first) == 2000
    pd.testing.assert_frame_equal(first, again)


def test_no_reference_on_the_first_day(lake):
    write_validated(lake, DS, 500)
    with pytest.raises(NoReferenceError, match=f"no validated partitions before {DS}"):
        plan_inputs(lake, DS, SPEC, CONFIG)


def test_provider_gets_the_serving_model_version_and_its_reference_is_used(lake):
    write_predictions(lake, DS, 400)
    calls = []
    ref_df = served(generate_day(date(2025, 12, 1), 700, seed=3), date(2025, 12, 1))

    def provider(ds, spec, model_version):
        calls.append((ds, model_version))
        return Reference(data=ref_df, source="champion v1 sample", model_version=model_version,
                         metrics={"roc_auc": 0.8})

    plan = plan_inputs(lake, DS, SPEC, CONFIG, provider)
    assert plan.reference.kind == "provider" and plan.reference.rows == 700
    assert plan.reference.model_version == MODEL_VERSION
    _, ref = load_inputs(lake, plan, SPEC, CONFIG, provider)
    assert calls == [(DS, MODEL_VERSION), (DS, MODEL_VERSION)]
    assert len(ref.data) == 700 and dict(ref.metrics) == {"roc_auc": 0.8}
    assert ref.data["probability"].tolist() == ref_df["probability"].tolist()


def test_provider_without_a_champion_falls_back_to_the_window(lake):
    week_before(lake, DS, rows=300)
    write_validated(lake, DS, 300)
    plan = plan_inputs(lake, DS, SPEC, CONFIG, lambda ds, spec, mv: None)
    assert plan.reference.kind == "window" and len(plan.reference.partitions) == 7


def test_provider_reference_missing_a_feature_is_an_error(lake):
    write_predictions(lake, DS, 300)
    bad = generate_day(DS, 300).drop(columns=["region"])
    with pytest.raises(AssemblyError, match="reference 'v1': missing feature column"):
        plan_inputs(lake, DS, SPEC, CONFIG, lambda ds, spec, mv: Reference(data=bad, source="v1"))


def test_a_served_file_missing_a_feature_column_names_file_and_column(lake):
    week_before(lake, DS, rows=300)
    df = served(generate_day(DS, 300), DS).drop(columns=["credit_score"])
    lake.replace_partition(Zone.PREDICTIONS, DS, {"part-7.parquet": to_parquet_bytes(df)})
    plan = plan_inputs(lake, DS, SPEC, CONFIG)
    with pytest.raises(AssemblyError, match=r"part-7\.parquet: missing required column\(s\) credit_score"):
        load_inputs(lake, plan, SPEC, CONFIG)


def test_a_numeric_feature_stored_as_text_names_the_column(lake):
    week_before(lake, DS, rows=300)
    df = generate_day(DS, 300)
    df["annual_income"] = df["annual_income"].map(lambda v: f"{v:,.0f} USD")
    lake.replace_partition(Zone.VALIDATED, DS, {"part-0.parquet": to_parquet_bytes(df)})
    plan = plan_inputs(lake, DS, SPEC, CONFIG)
    with pytest.raises(AssemblyError, match="column 'annual_income' must be numeric"):
        load_inputs(lake, plan, SPEC, CONFIG)


@pytest.mark.parametrize(("sizes", "total"), [([1500, 1500], 2000), ([10, 1000, 90], 100), ([3, 3, 3], 7)])
def test_window_sample_is_stratified_by_day(sizes, total):
    from ai_factory.monitoring.assembly import _quotas

    quotas = _quotas(sizes, total)
    assert sum(quotas) == total
    assert all(abs(q - total * s / sum(sizes)) < 1 for q, s in zip(quotas, sizes, strict=True))

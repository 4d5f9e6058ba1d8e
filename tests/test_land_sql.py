"""The SQL source: a query through an Airflow connection (``AIRFLOW_CONN_*``) into landing, on real PostgreSQL."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from ai_factory.data.infer import infer_spec
from ai_factory.data.land import LandError
from ai_factory.data.sql import SQLSourceError, connection_url, land_query
from ai_factory.storage import DataLake, Zone
from tests.test_spec_infer import breast_cancer_csv

from pg import recreate_pg_database

QUERY = "SELECT * FROM visits WHERE seen_on = :ds ORDER BY patient_id"


@pytest.mark.postgres
def test_a_query_lands_one_day_idempotently(tmp_path: Path, lake: DataLake, monkeypatch: pytest.MonkeyPatch):
    import sqlalchemy as sa

    url = recreate_pg_database(os.environ.get("AI_FACTORY_TEST_PG_DB", "ai_factory") + "_sql_source")
    path, df = breast_cancer_csv(tmp_path)
    _, spec = infer_spec(str(path), "diagnosis", id_column="patient_id", time_column="seen_on")
    engine = sa.create_engine(url)
    df.assign(seen_on=df["seen_on"].dt.date).to_sql("visits", engine, index=False)
    engine.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_CLINIC_DB", url.replace("postgresql+psycopg2://", "postgresql://"))

    src = connection_url("clinic_db")
    assert src.startswith("postgresql://")  # Airflow's "postgres://" made a SQLAlchemy scheme
    day = date(2026, 1, 3)
    (landed,) = land_query(src, QUERY, spec, lake, ds=day)
    want = df[df["seen_on"] == "2026-01-03"]
    assert landed.status == "landed" and landed.rows == len(want)
    got = lake.read_partition(Zone.LANDING, day)
    assert got["patient_id"].tolist() == sorted(want["patient_id"])
    assert list(got.columns) == spec.landing_columns
    (again,) = land_query(src, QUERY, spec, lake, ds=day)
    assert again.status == "unchanged"

    with pytest.raises(LandError, match=r"column\(s\) extra are not in the spec"):
        land_query(src, "SELECT *, 1 AS extra FROM visits WHERE seen_on = :ds", spec, lake, ds=day)
    with pytest.raises(SQLSourceError, match="query on postgresql://postgres@.* failed: .*no_such_table"):
        land_query(src, "SELECT * FROM no_such_table", spec, lake, ds=day)

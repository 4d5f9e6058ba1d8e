"""Fast tests of the UI's pieces: path cleaning, status fallbacks, ranges, plots, the app's errors.

These use small lakes written here (each case needs a state the pipeline rarely leaves behind,
e.g. a quarantine without a summary); the real reports are exercised by test_ui_server.py.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from ai_factory.storage import DataLake, Zone
from ai_factory.ui import data, svg
from ai_factory.ui.reports import ReportNotFound, ReportPathError, ReportStore, clean_relative_path

D = date(2026, 3, 1)


# -- report paths -------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [
    "../x", "a/../../x", "a/..", "..", "%2e%2e/x", "%2e%2e%2fx", "%252e%252e%252fx", "/etc/passwd",
    "%2fetc%2fpasswd", "a\\..\\x", "a%5c..%5cx", "C:/x", "c:%5cx", "a/\x00/b", "a%00b", "", "/", "%2f",
    "%25252525252e",
])
def test_bad_report_paths_are_refused(raw):
    with pytest.raises(ReportPathError):
        clean_relative_path(raw)


@pytest.mark.parametrize("raw, clean", [
    ("drift/ds=2026-03-01/report.html", "drift/ds=2026-03-01/report.html"),
    ("drift/ds%3D2026-03-01/report.html", "drift/ds=2026-03-01/report.html"),
    ("./drift//ds=2026-03-01/./report.html", "drift/ds=2026-03-01/report.html"),
    ("quality/_gx/site/index.html", "quality/_gx/site/index.html"),
    ("a/..b/c", "a/..b/c"),  # '..b' is a name, not a parent reference
])
def test_good_report_paths_are_normalised(raw, clean):
    assert clean_relative_path(raw) == clean


def test_symlinks_are_followed_before_the_containment_check(tmp_path: Path):
    lake = DataLake(str(tmp_path / "lake"))
    reports = tmp_path / "lake" / "reports"
    (reports / "drift").mkdir(parents=True)
    (reports / "drift" / "ok.html").write_text("inside")
    (tmp_path / "lake" / "secret.txt").write_text("secret")
    (reports / "drift" / "in-link.html").symlink_to(reports / "drift" / "ok.html")
    (reports / "drift" / "out-link.html").symlink_to(tmp_path / "lake" / "secret.txt")
    (reports / "up").symlink_to(tmp_path, target_is_directory=True)
    store = ReportStore(lake)
    assert store.read_bytes(store.resolve("drift/ok.html")) == b"inside"
    assert store.read_bytes(store.resolve("drift/in-link.html")) == b"inside"
    for probe in ("drift/out-link.html", "up/lake/secret.txt", "drift", "drift/nope.html"):
        with pytest.raises(ReportNotFound):
            store.resolve(probe)


def test_object_store_lakes_serve_reports_too():
    lake = DataLake("memory://ui-test-lake")
    lake.write_bytes(lake.zone_path("reports") + "/drift/ds=2026-03-01/report.html", b"<html>r</html>")
    store = ReportStore(lake)
    found = store.resolve("drift/ds=2026-03-01/report.html")
    assert found.local_path is None and found.media_type == "text/html"
    assert store.read_bytes(found) == b"<html>r</html>"
    with pytest.raises(ReportNotFound):
        store.resolve("drift/ds=2026-03-02/report.html")
    with pytest.raises(ReportPathError):
        store.resolve("../landing")


# -- ranges -------------------------------------------------------------------------------------
def test_range_defaults_to_two_weeks_up_to_the_newest_day(tmp_path: Path):
    lake = DataLake(str(tmp_path / "lake"))
    lake.replace_partition(Zone.LANDING, date(2026, 3, 20), {"part-0.parquet": b"x"})
    lake.replace_partition(Zone.VALIDATED, date(2026, 3, 10), {"part-0.parquet": b"x"})
    assert data.resolve_range(lake, None, None) == (date(2026, 3, 7), date(2026, 3, 20))
    assert data.resolve_range(lake, "2026-01-01", None) == (date(2026, 1, 1), date(2026, 1, 14))
    assert data.resolve_range(lake, None, "2026-02-14") == (date(2026, 2, 1), date(2026, 2, 14))
    empty = DataLake(str(tmp_path / "empty"))
    assert data.resolve_range(empty, None, None, today=date(2026, 5, 1))[1] == date(2026, 5, 1)


@pytest.mark.parametrize("start, end, word", [
    ("2026-02-30", None, "'start'"), (None, "03/01/2026", "'end'"), ("2026-03-02", "2026-03-01", "after"),
    ("2024-01-01", "2026-01-01", "spans"),
])
def test_bad_ranges_name_the_parameter(tmp_path: Path, start, end, word):
    with pytest.raises(data.RangeError, match=word):
        data.resolve_range(DataLake(str(tmp_path)), start, end)


# -- quality status fallbacks -------------------------------------------------------------------
def test_status_without_a_summary_comes_from_the_zones(tmp_path: Path):
    lake = DataLake(str(tmp_path / "lake"))
    lake.replace_partition(Zone.VALIDATED, D, {"part-0.parquet": b"x"})
    lake.replace_partition(Zone.QUARANTINE, date(2026, 3, 2), {
        "part-0.parquet": b"x",
        "reason.json": json.dumps({"reasons": ["column 'age' is missing"], "failures": [
            {"expectation": "expect_column_to_exist", "column": "age", "rule": "schema"}]}).encode(),
    })
    lake.replace_partition(Zone.LANDING, date(2026, 3, 3), {"part-0.parquet": b"x"})
    lake.write_bytes(lake.partition_path(Zone.REPORTS_QUALITY, date(2026, 3, 5)) + "/summary.json", b"{not json")
    out = data.quality_overview(lake, D, date(2026, 3, 5))
    got = {d["ds"]: d for d in out["days"]}
    assert [d["status"] for d in out["days"]] == ["passed", "quarantined", "pending", "missing", "missing"]
    assert got["2026-03-02"]["reasons"] == ["column 'age' is missing"]
    assert got["2026-03-02"]["failures"][0]["column"] == "age"
    assert "summary.json" in got["2026-03-05"]["report_error"]
    assert out["counts"] == {"passed": 1, "quarantined": 1, "pending": 1, "missing": 2}


def test_unreadable_drift_summary_is_an_error_day_not_a_crash(tmp_path: Path):
    lake = DataLake(str(tmp_path / "lake"))
    lake.write_bytes(lake.partition_path(Zone.REPORTS_DRIFT, D) + "/summary.json", b"[1, 2")
    day = data.drift_day(lake, D)
    assert day["status"] == "error" and day["report_error"]


def test_json_has_no_nan():
    assert json.loads(data.dumps({"auc": float("nan"), "x": [float("inf"), 1.5]})) == {"auc": None, "x": [None, 1.5]}


# -- plots ----------------------------------------------------------------------------------------
def test_drift_timeline_links_checked_days_and_marks_missing_ones():
    days = [
        {"ds": "2026-03-01", "status": "no_drift", "share": 0.1, "drifted_count": 2, "feature_count": 20,
         "drifted_columns": ["a", "b"], "report_path": "drift/ds=2026-03-01/report.html"},
        {"ds": "2026-03-02", "status": "drift", "share": 0.7, "drifted_count": 14, "feature_count": 20,
         "drifted_columns": ["<script>"], "report_path": "drift/ds=2026-03-02/report.html"},
        {"ds": "2026-03-03", "status": "missing", "share": None},
    ]
    out = svg.drift_timeline(days, 0.5, lambda p: "reports/" + p)
    assert out.count("<a href=") == 2 and 'href="reports/drift/ds=2026-03-02/report.html"' in out
    assert 'class="bar drift"' in out and 'class="bar missing"' in out and "no drift report" in out
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "threshold 0.50" in out


def test_leaderboard_without_values_says_so():
    out = svg.leaderboard([{"version": "v1", "value": None, "gate_value": float("nan")}], "roc_auc", True)
    assert "no roc_auc values recorded yet" in out


# -- the app, without Airflow around it ------------------------------------------------------------
@pytest.fixture
def client(lake):
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from ai_factory.ui.app import create_app

    app = create_app()
    app.dependency_overrides[get_user] = lambda: {"name": "tester"}
    return TestClient(app)


def test_app_errors_are_clear(client, lake):
    r = client.get("/api/drift?start=2026-03-40")
    assert r.status_code == 400 and "'start'" in r.json()["detail"]
    r = client.get("/drift?start=2026-03-40", headers={"Accept": "text/html"})
    assert r.status_code == 400 and "is not a date" in r.text and "<html" in r.text
    r = client.get("/reports/%252e%252e%252fsecret")
    assert r.status_code == 400 and "'..'" in r.json()["detail"]
    r = client.get("/reports/drift/ds=2026-03-01/report.html")
    assert r.status_code == 404


def test_models_page_with_an_empty_registry(client, tmp_path, monkeypatch):
    from ai_factory.settings import reset_settings

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "no-models"))
    reset_settings()
    r = client.get("/api/models")
    assert r.status_code == 200 and r.json()["versions"] == [] and r.json()["champion"] is None
    assert "No model versions registered" in client.get("/models").text


def test_without_credentials_the_app_refuses():
    from fastapi.testclient import TestClient

    from ai_factory.ui.app import create_app

    r = TestClient(create_app()).get("/api/quality")
    assert r.status_code == 401

"""The plugin on a real Airflow api-server: registration, sign-in, pages, JSON, report files.

Signed-in requests carry a JWT from SimpleAuthManager's ``/auth/token``; signed-out ones carry
nothing or a forged token. Traversal probes go over a raw socket (``http.client``) because
HTTP client libraries normalise ``../`` away before sending, which would test nothing.
"""

from __future__ import annotations

import http.client
import json
import re
from typing import Any
from urllib.parse import urlparse

import pytest
from ui_seed import (
    CORRUPT_DAY,
    DRIFT_DAYS,
    DRIFT_START,
    FIRST_DAY,
    MISSING_DAY,
    PENDING_DAY,
    SECRET,
    Seeded,
)

pytestmark = [pytest.mark.e2e, pytest.mark.ui]

PREFIX = "/ai-factory"
RANGE = f"start={FIRST_DAY.isoformat()}&end={MISSING_DAY.isoformat()}"


def raw_get(stack: Any, path: str, token: str | None = None, accept: str = "*/*",
            cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` exactly as written (no normalisation, no re-encoding)."""
    u = urlparse(stack.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = cookie
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def get_json(stack: Any, path: str, token: str) -> dict[str, Any]:
    status, _, body = raw_get(stack, path, token, accept="application/json")
    assert status == 200, f"{path}: {status} {body[:500]!r}"
    return json.loads(body)


# -- registration ------------------------------------------------------------------------------
def test_plugin_is_registered_with_its_app_and_nav_entries(ui_stack, token):
    plugins = get_json(ui_stack, "/api/v2/plugins", token)["plugins"]
    ours = next((p for p in plugins if p["name"] == "ai_factory_ui"), None)
    assert ours is not None, f"plugin not loaded; got {[p['name'] for p in plugins]}"
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == [PREFIX]
    views = {v["url_route"]: v for v in ours["external_views"]}
    assert set(views) == {"ai-factory-quality", "ai-factory-drift", "ai-factory-models"}
    assert all(v["href"].startswith("ai-factory/") and v["destination"] == "nav" for v in views.values())


# -- sign-in -----------------------------------------------------------------------------------
PROTECTED = ["/api/quality", "/api/drift", "/api/models", "/quality", "/drift", "/models",
             "/reports/drift/ds=2026-03-09/report.html", "/reports/quality/_gx/site/index.html"]


@pytest.mark.parametrize("path", PROTECTED)
def test_signed_out_gets_401_and_no_data(ui_stack, path):
    status, _, body = raw_get(ui_stack, PREFIX + path, accept="application/json")
    assert status == 401, (path, status, body[:300])
    assert b"credit_default" not in body and b"<html" not in body.lower()


@pytest.mark.parametrize("path", PROTECTED)
def test_forged_token_is_refused(ui_stack, token, path):
    header, payload, _ = token.split(".")
    forged = f"{header}.{payload}.{'A' * 43}"  # right claims, wrong signature
    status, _, body = raw_get(ui_stack, PREFIX + path, forged, accept="application/json")
    assert status in (401, 403), (path, status, body[:300])
    status, _, _ = raw_get(ui_stack, PREFIX + path, cookie=f"_token={forged}", accept="application/json")
    assert status in (401, 403)


@pytest.mark.parametrize("page", ["quality", "drift", "models"])
def test_signed_out_browser_is_sent_to_the_airflow_login(ui_stack, page):
    status, headers, _ = raw_get(ui_stack, f"{PREFIX}/{page}", accept="text/html,application/xhtml+xml")
    assert status == 303
    assert "/auth/login" in headers["location"] and f"ai-factory%2F{page}" in headers["location"]


@pytest.mark.parametrize("page", ["quality", "drift", "models"])
def test_session_cookie_works_like_the_ui(ui_stack, token, page):
    """The UI's iframe sends the ``_token`` cookie, not a header."""
    status, headers, body = raw_get(ui_stack, f"{PREFIX}/{page}", cookie=f"_token={token}", accept="text/html")
    assert status == 200, body[:300]
    assert headers["content-type"].startswith("text/html")


# -- JSON --------------------------------------------------------------------------------------
def test_quality_json_matches_what_the_gate_wrote(ui_stack, token, seeded: Seeded):
    data = get_json(ui_stack, f"{PREFIX}/api/quality?{RANGE}", token)
    by_day = {d["ds"]: d for d in data["days"]}
    assert list(by_day) == [d.isoformat() for d in seeded.days]
    expected = {d.isoformat(): "passed" for d in seeded.days}
    expected.update({CORRUPT_DAY.isoformat(): "quarantined", PENDING_DAY.isoformat(): "pending",
                     MISSING_DAY.isoformat(): "missing"})
    assert {k: v["status"] for k, v in by_day.items()} == expected
    bad = by_day[CORRUPT_DAY.isoformat()]
    on_disk = json.loads((seeded.data_root / f"reports/quality/ds={CORRUPT_DAY}/summary.json").read_text())
    # The seeded corruption sets some ages to 250 and touches nothing else: exactly one critical failure.
    assert bad["failures_total"] == len(on_disk["failures"]) == 1
    assert [(f["column"], f["rule"]) for f in bad["failures"]] == [("age", "range")]
    assert [(f["column"], f["rule"]) for f in on_disk["failures"]] == [("age", "range")]
    assert bad["reasons"], "the quarantine's reason.json should be shown"
    assert data["counts"] == {"passed": 9, "quarantined": 1, "pending": 1, "missing": 1}
    # Each validated or quarantined day links to its own Data Docs page, and the link works.
    for ds, day in by_day.items():
        if day["status"] in ("passed", "quarantined"):
            assert day["data_docs_path"] and f"ds={ds}" in day["data_docs_path"]
            status, headers, body = raw_get(ui_stack, f"{PREFIX}/reports/{day['data_docs_path']}", token)
            assert status == 200 and headers["content-type"].startswith("text/html")
            assert ds.encode() in body
        else:
            assert day["data_docs_path"] is None


def test_drift_json_matches_the_monitor_summaries(ui_stack, token, seeded: Seeded):
    data = get_json(ui_stack, f"{PREFIX}/api/drift?{RANGE}", token)
    by_day = {d["ds"]: d for d in data["days"]}
    checked = [d for d in DRIFT_DAYS if d != CORRUPT_DAY]
    for day in seeded.days:
        ds = day.isoformat()
        f = seeded.data_root / f"reports/drift/ds={ds}/summary.json"
        if day not in checked:
            assert not f.exists() and by_day[ds]["status"] == "missing" and by_day[ds]["report_path"] is None
            continue
        summary = json.loads(f.read_text())
        got = by_day[ds]
        assert got["share"] == pytest.approx(summary["drift"]["share"])
        assert got["drifted_columns"] == summary["drift"]["drifted_columns"]
        assert got["status"] == ("drift" if summary["decision"]["drift"] else "no_drift")
        assert got["reason"] == summary["decision"]["reason"]
        assert got["report_path"] == f"drift/ds={ds}/report.html"
        status, headers, body = raw_get(ui_stack, f"{PREFIX}/reports/{got['report_path']}", token)
        assert status == 200 and headers["content-type"].startswith("text/html") and len(body) > 10_000
        assert "sandbox" in headers["content-security-policy"]
    # The seeded covariate drift is what the page must show: quiet before, drifted after.
    assert by_day[DRIFT_START.isoformat()]["status"] == "drift"
    assert by_day[DRIFT_DAYS[0].isoformat()]["status"] == "no_drift"
    assert data["share_threshold"] is not None


def test_models_json_matches_the_registry(ui_stack, token, seeded: Seeded):
    data = get_json(ui_stack, f"{PREFIX}/api/models", token)
    meta = seeded.model_home / "ai_factory" / "credit_default"
    champion = json.loads((meta / "champion.json").read_text())
    assert data["primary_metric"] == "roc_auc"
    assert sorted(v["version"] for v in data["versions"]) == sorted(seeded.versions)
    assert data["champion"]["version"] == champion["version"]
    assert data["champion"]["since"] == champion["since"]
    assert [v["version"] for v in data["versions"] if v["is_champion"]] == [champion["version"]]
    promoted = {h["version"] for h in champion["history"]}
    for v in data["versions"]:
        decisions = json.loads((meta / "decisions" / f"{v['version']}.json").read_text())
        last = decisions[-1]
        assert v["decision"]["decision"] == last["decision"]
        assert v["decision"]["reason"] == last["reason"]
        assert v["decision"]["deciding_rule"] == last["details"]["deciding_rule"]
        assert v["decision"]["primary"]["challenger"] == pytest.approx(last["metrics"]["challenger"]["roc_auc"])
        assert [r["rule"] for r in v["decision"]["rules"]] == [r["rule"] for r in last["details"]["rules"]]
        assert bool(v["promoted_at"]) == (v["version"] in promoted)
        assert v["primary_value"] == pytest.approx(v["metrics"]["roc_auc"])
    # The leaderboard runs oldest to newest, one point per version.
    assert [p["version"] for p in data["leaderboard"]] == seeded.versions


def test_bad_range_is_a_400_naming_the_parameter(ui_stack, token):
    for query, word in (("start=2026-13-01", "start"), ("end=yesterday", "end"),
                        ("start=2026-03-10&end=2026-03-01", "after"), ("start=2020-01-01&end=2026-01-01", "spans")):
        status, _, body = raw_get(ui_stack, f"{PREFIX}/api/quality?{query}", token)
        assert status == 400 and word in json.loads(body)["detail"], (query, body)


# -- pages -------------------------------------------------------------------------------------
def page(stack: Any, token: str, path: str) -> str:
    status, headers, body = raw_get(stack, PREFIX + path, token, accept="text/html")
    assert status == 200, body[:500]
    assert headers["content-type"].startswith("text/html")
    return body.decode()


def test_quality_page_shows_each_day_and_the_failures_at_a_glance(ui_stack, token, seeded):
    html = page(ui_stack, token, f"/quality?{RANGE}")
    rows = dict(re.findall(r'<tr data-ds="([\d-]+)" data-status="(\w+)"', html))
    assert len(rows) == len(seeded.days)
    assert rows[CORRUPT_DAY.isoformat()] == "quarantined" and rows[MISSING_DAY.isoformat()] == "missing"
    bad_row = html.split(f'data-ds="{CORRUPT_DAY}"')[1].split("</tr>")[0]
    assert "age" in bad_row and "expect_column_values_to_be_between" in bad_row and "unexpected values" in bad_row
    assert f"reports/quality/_gx/site/validations/credit_default/ds={CORRUPT_DAY}/" in bad_row


def test_drift_page_plots_a_linked_bar_per_checked_day(ui_stack, token):
    html = page(ui_stack, token, f"/drift?{RANGE}")
    assert "<svg" in html and 'class="threshold"' in html
    linked = re.findall(r'<a href="reports/drift/ds=([\d-]+)/report.html"[^>]*><rect class="bar (\w+)"', html)
    assert {ds for ds, _ in linked} == {d.isoformat() for d in DRIFT_DAYS if d != CORRUPT_DAY}
    assert ("2026-03-09", "drift") in linked


def test_models_page_shows_champion_decisions_and_leaderboard(ui_stack, token, seeded):
    html = page(ui_stack, token, "/models")
    champion = json.loads((seeded.model_home / "ai_factory/credit_default/champion.json").read_text())["version"]
    assert f"Champion <b>credit_default:{champion}</b>" in html
    assert html.count('class="point registered"') == len(seeded.versions)
    assert html.count('class="champion-mark"') == 1
    for v in seeded.versions:
        assert f'id="decision-{v}"' in html


# -- report files: never outside the reports folder ----------------------------------------------
TRAVERSALS = [
    "../secret.txt",                         # plain
    "drift/../../secret.txt",                # through a real folder
    "%2e%2e/secret.txt",                     # encoded dots
    "%2e%2e%2fsecret.txt",                   # encoded dots and slash
    "..%2fsecret.txt",
    "%252e%252e%252fsecret.txt",             # double-encoded
    "%25252e%25252e%25252fsecret.txt",       # triple-encoded
    "..%5csecret.txt",                       # backslash
    "..%255csecret.txt",
    "/etc/passwd",                           # absolute (the route sees //etc/passwd)
    "%2fetc%2fpasswd",
    "%2F..%2F..%2Fsecret.txt",
    "C:%5cwindows%5cwin.ini",
    "drift/%00../../secret.txt",             # NUL
    "drift/leak.html",                       # symlink to <lake>/secret.txt
    "outside.html",                          # symlink to a file beside the lake
    "lakeroot/secret.txt",                   # symlinked folder pointing at the lake root
    "lakeroot/reports/../secret.txt",
]


@pytest.mark.parametrize("probe", TRAVERSALS)
def test_report_paths_never_escape_the_reports_folder(ui_stack, token, probe):
    status, _, body = raw_get(ui_stack, f"{PREFIX}/reports/{probe}", token)
    assert status in (400, 404), (probe, status)
    assert SECRET.encode() not in body
    assert b"root:" not in body


def test_report_serving_control_case(ui_stack, token, seeded):
    """The same request shape that the probes use does serve a file that is inside."""
    status, _, body = raw_get(ui_stack, f"{PREFIX}/reports/drift/ds={DRIFT_START}/summary.json", token)
    assert status == 200 and json.loads(body)["ds"] == DRIFT_START.isoformat()
    status, _, _ = raw_get(ui_stack, f"{PREFIX}/reports/drift/ds%3D{DRIFT_START}/summary.json", token)
    assert status == 200  # a legitimately encoded name still works

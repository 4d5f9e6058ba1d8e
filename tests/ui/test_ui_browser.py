"""A real browser (Debian's headless Chromium, driven by Playwright) through the Airflow UI.

Signs in on Airflow's own login page, opens the pages from the UI's navigation (Plugins →
AI Factory → …) and by their UI routes (``/plugin/ai-factory-…``, an iframe inside the
UI), opens a Data Docs page and an Evidently report from the links, and checks that a
signed-out browser is sent to the login page. Screenshots go to ``$AI_FACTORY_UI_SCREENSHOTS``
(default ``tests/ui/screenshots/``, git-ignored); the path is printed.

Only the system Chromium is used (``/usr/bin/chromium`` or ``$AI_FACTORY_CHROMIUM``; ``make
test`` installs it); Playwright never downloads a browser. Requests to any host other than the
api-server are aborted: reports that reference CDNs (GX Data Docs' stylesheets) must still
render, as they would on a machine without internet.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from requires import unavailable
from ui_seed import CORRUPT_DAY, DRIFT_DAYS, DRIFT_START, FIRST_DAY, MISSING_DAY, PENDING_DAY

pytestmark = [pytest.mark.e2e, pytest.mark.ui]

CHROMIUM = os.environ.get("AI_FACTORY_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("AI_FACTORY_UI_SCREENSHOTS", Path(__file__).resolve().parent / "screenshots"))
RANGE = f"start={FIRST_DAY.isoformat()}&end={MISSING_DAY.isoformat()}"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        unavailable(f"no Chromium at {CHROMIUM}: install Debian's package (`apt-get install -y chromium`; "
                    f"`make test` does) or point AI_FACTORY_CHROMIUM at one")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):  # only this run's pictures in the folder
        old.unlink()
    print(f"\nUI screenshots: {SHOTS}")
    with sync_playwright() as p:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield b
        b.close()


def _context(browser: Any, stack: Any) -> Any:
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    ctx.set_default_timeout(TIMEOUT_MS)
    host = urlparse(stack.url).netloc

    def only_local(route: Any) -> None:
        if urlparse(route.request.url).netloc == host or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            route.abort()

    ctx.route("**/*", only_local)
    return ctx


def _shot(page: Any, name: str, full_page: bool = True) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture(scope="module")
def signed_in(browser: Any, ui_stack: Any) -> Iterator[Any]:
    """A browser page signed in through Airflow's login form."""
    ctx = _context(browser, ui_stack)
    page = ctx.new_page()
    page.goto(f"{ui_stack.url}/")
    page.wait_for_url(re.compile(r".*/auth/login.*"))
    page.fill("input[name=username]", ui_stack.admin_user)
    page.fill("input[type=password]", ui_stack.admin_password)
    _shot(page, "00-airflow-login")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/auth/login" not in url)
    page.get_by_role("button", name=re.compile("Plugins", re.I)).first.wait_for()
    _shot(page, "01-airflow-home")
    yield page
    ctx.close()


def _plugin_frame(page: Any, title: str) -> Any:
    """The page's iframe once our page has rendered inside it."""
    frame = page.frame_locator("iframe").first
    frame.get_by_role("heading", name=f"AI Factory · {title}").wait_for()
    return frame


def test_navigation_opens_the_quality_page_inside_the_ui(signed_in, ui_stack):
    page = signed_in
    page.get_by_role("button", name=re.compile("Plugins", re.I)).first.click()
    page.get_by_text("AI Factory", exact=True).first.click()
    item = page.get_by_role("menuitem", name="Data quality").first
    item.wait_for()
    page.wait_for_timeout(500)  # let the submenu's fade-in finish before the picture
    _shot(page, "02-nav-menu-open")
    item.click()
    page.wait_for_url(re.compile(r".*/plugin/ai-factory-quality$"))
    frame = _plugin_frame(page, "Data quality")
    assert frame.locator("tr[data-status]").count() > 0
    _shot(page, "03-nav-opened-quality")


def test_quality_page(signed_in, ui_stack):
    page = signed_in
    page.goto(f"{ui_stack.url}/plugin/ai-factory-quality")
    frame = _plugin_frame(page, "Data quality")
    # The iframe shows the default range; pick the seeded one with the page's own form.
    frame.locator("input[name=start]").fill(FIRST_DAY.isoformat())
    frame.locator("input[name=end]").fill(MISSING_DAY.isoformat())
    frame.get_by_role("button", name="Show").click()
    frame.locator(f'tr[data-ds="{MISSING_DAY}"]').wait_for()
    bad = frame.locator(f'tr[data-ds="{CORRUPT_DAY}"]')
    assert bad.get_attribute("data-status") == "quarantined"
    assert "expect_column_values_to_be_between" in bad.inner_text() and "age" in bad.inner_text()
    _shot(page, "10-quality-in-airflow-ui")
    # Every seeded day has its row, with the status the gate gave it (not only a picture of some size).
    statuses = {frame.locator(f'tr[data-ds="{d}"]').get_attribute("data-status")
                for d in (FIRST_DAY, CORRUPT_DAY, PENDING_DAY, MISSING_DAY)}
    assert statuses == {"passed", "quarantined", "pending", "missing"}


def test_data_docs_page_opens_from_its_link(signed_in, ui_stack):
    page = signed_in
    page.goto(f"{ui_stack.url}/ai-factory/quality?{RANGE}")
    link = page.locator(f'tr[data-ds="{CORRUPT_DAY}"] a', has_text="Data Docs")
    with page.context.expect_page() as popup:
        link.click()
    docs = popup.value
    docs.wait_for_load_state("domcontentloaded")
    assert f"ds%3D{CORRUPT_DAY}" in docs.url or f"ds={CORRUPT_DAY}" in docs.url
    html = docs.content()
    assert "Data documentation compiled by Great Expectations" in html
    assert f"ds={CORRUPT_DAY}" in html and "Unsuccessful Expectations" in html
    # Viewport only: offline, GX's CDN stylesheets are blocked and the full page is very long.
    _shot(docs, "11-data-docs-quarantined-day", full_page=False)
    docs.close()


def _drift_summary(seeded: Any, day: Any) -> dict[str, Any]:
    return json.loads((seeded.data_root / f"reports/drift/ds={day}/summary.json").read_text())


def test_drift_page(signed_in, ui_stack, seeded):
    page = signed_in
    page.goto(f"{ui_stack.url}/plugin/ai-factory-drift")
    frame = _plugin_frame(page, "Drift")
    frame.locator("input[name=start]").fill(FIRST_DAY.isoformat())
    frame.locator("input[name=end]").fill(MISSING_DAY.isoformat())
    frame.get_by_role("button", name="Show").click()
    frame.locator(f'svg.plot rect.bar[data-ds="{DRIFT_DAYS[0]}"]').wait_for()
    # Quiet before the seeded covariate drift, drifted on its first day, with the columns the monitor named.
    assert frame.locator(f'svg.plot rect.bar.no_drift[data-ds="{DRIFT_DAYS[0]}"]').count() == 1
    drifted = frame.locator(f'svg.plot rect.bar.drift[data-ds="{DRIFT_START}"]')
    assert drifted.count() == 1
    tip = drifted.locator("title").text_content()
    columns = _drift_summary(seeded, DRIFT_START)["drift"]["drifted_columns"]
    assert columns and tip.startswith(f"{DRIFT_START}: DRIFT") and tip.endswith("drifted: " + ", ".join(columns))
    _shot(page, "20-drift-in-airflow-ui")


def test_evidently_report_opens_from_the_timeline(signed_in, ui_stack, seeded):
    page = signed_in
    page.goto(f"{ui_stack.url}/ai-factory/drift?{RANGE}")
    bar = page.locator(f'svg.plot a[href$="ds={DRIFT_START}/report.html"]')
    with page.context.expect_page() as popup:
        bar.click()
    report = popup.value
    report.wait_for_load_state("load")
    # Evidently renders with its own (inline) JavaScript; wait until it has drawn something.
    report.wait_for_function("document.body && document.body.innerText.length > 200")
    assert f"ds={DRIFT_START}: DRIFT" in report.inner_text("body")  # the day, and the monitor's decision
    html = report.content()
    for column in _drift_summary(seeded, DRIFT_START)["drift"]["drifted_columns"]:  # each drifted column's row
        assert re.search(rf"<tr><td>{re.escape(column)}</td>(?:(?!</tr>).)*>drift</td></tr>", html), column
    _shot(report, "21-evidently-report")
    report.close()


def test_models_page(signed_in, ui_stack, seeded):
    page = signed_in
    page.goto(f"{ui_stack.url}/plugin/ai-factory-models")
    frame = _plugin_frame(page, "Models")
    assert frame.locator(".card.champion").inner_text().startswith("★ Champion")
    points = frame.locator("svg.plot circle.point.registered")
    # One point per registered version, each named by its version.
    assert sorted(points.nth(i).get_attribute("data-version") for i in range(points.count())) == sorted(seeded.versions)
    frame.locator("details summary").first.click()
    _shot(page, "30-models-in-airflow-ui")


def test_signed_out_browser_lands_on_the_login_page(browser, ui_stack):
    ctx = _context(browser, ui_stack)
    page = ctx.new_page()
    page.goto(f"{ui_stack.url}/ai-factory/models")
    page.wait_for_url(re.compile(r".*/auth/login.*"))
    assert "credit_default" not in page.content()
    _shot(page, "40-signed-out-redirected-to-login")
    ctx.close()

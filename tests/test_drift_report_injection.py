"""Served values cannot inject markup into the reports analysts open.

Finding: a category value ``</script><img src=x onerror=…>`` ended the data ``<script>`` of the
Evidently report and put an ``<img onerror>`` into the page.
"""

from __future__ import annotations

import json
from datetime import date
from html.parser import HTMLParser

import pytest

from ai_factory.data.generate import generate_day, to_parquet_bytes
from ai_factory.monitoring.evidently_report import ReportMarkupError, escape_data_script
from ai_factory.monitoring.monitor import run_drift_check
from ai_factory.storage import Zone

from drift_fixtures import served, write_config

DS = date(2026, 4, 10)
PAYLOAD = "</script><img src=x onerror=alert(1)>"
ESCAPED = PAYLOAD.replace("<", "\\u003c").replace(">", "\\u003e")


class _Page(HTMLParser):
    """What a browser's tokenizer makes of the page: the tags, and the text of each script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def _data_values(script: str) -> list:
    """The JSON values assigned in Evidently's data script, decoded as the page's JavaScript would."""
    decoder, out, pos = json.JSONDecoder(), [], 0
    while (i := script.find(" = ", pos)) >= 0:
        value, pos = decoder.raw_decode(script, i + 3)
        out.append(value)
    return out


def test_a_category_value_cannot_break_out_of_the_evidently_data_script(lake, tmp_path):
    day = served(generate_day(DS, 1500, seed=7), DS)
    day["region"] = day["region"].astype("object")
    day.loc[:299, "region"] = PAYLOAD  # a fifth of the day: it shows in the region plots and tables
    lake.replace_partition(Zone.PREDICTIONS, DS, {"part-0.parquet": to_parquet_bytes(day)})

    check = run_drift_check(DS, lake=lake, config=_config(tmp_path))
    html = lake.read_bytes(check.partition + "/report.html").decode()

    page = _Page()
    page.feed(html)
    assert "img" not in page.tags  # nothing got out of a script
    assert PAYLOAD not in html and "</script><img" not in html
    (data_script,) = [s for s in page.scripts if "var metric_" in s and "additional_graphs_" in s]
    assert ESCAPED in data_script  # still there, escaped for a script ...
    assert PAYLOAD in json.dumps(_data_values(data_script))  # ... and the page's JSON holds the true value
    region = next(c for c in check.summary.drift.columns if c.name == "region")
    assert region.drifted  # a fifth of the rows in a new category is drift, and it is reported


def _config(tmp_path):
    from ai_factory.monitoring.config import load_config

    return load_config(str(write_config(tmp_path / "drift.yaml")))


def test_escaping_changes_only_the_characters_that_could_close_a_script():
    head = '<html><head><script>\n    var metric_' + "a" * 32 + ' = '
    data = {"v": PAYLOAD + " & more", "n": 1.5}
    graphs = {"g": ["<b>"]}
    raw = (f"{head}{json.dumps(data)};\n    var additional_graphs_metric_{'a' * 32} = {json.dumps(graphs)};\n"
           "</script></head><body><script>if (a < b && c > d) {}</script></body></html>")
    safe = escape_data_script(raw)
    assert "<img" not in safe and safe.endswith("<body><script>if (a < b && c > d) {}</script></body></html>")
    page = _Page()
    page.feed(safe)
    assert _data_values(page.scripts[0]) == [data, graphs]
    assert escape_data_script(safe) == safe  # nothing left to escape


def test_an_unexpected_report_shape_is_refused_not_written_unescaped():
    with pytest.raises(ReportMarkupError, match="no data script"):
        escape_data_script("<html><script>var x = 1;</script></html>")
    with pytest.raises(ReportMarkupError, match="not followed by"):
        escape_data_script(f"<script>\n var metric_{'b' * 32} = {{}}; alert(1)</script>")


def test_the_quality_page_shows_a_hostile_category_value_as_text(lake):
    """The project's own pages escape every value: the gate's failure examples are served category values."""
    from ai_factory.data.generate import write_day
    from ai_factory.quality.validate import QualityGateFailed, run_quality_gate
    from ai_factory.storage import DataLake
    from ai_factory.ui import data, pages

    write_day(lake, DS, 400)
    df = DataLake(lake.root_url).read_partition(Zone.LANDING, DS)
    df["region"] = df["region"].astype("object")
    df.loc[:9, "region"] = PAYLOAD
    lake.replace_partition(Zone.LANDING, DS, {"part-0.parquet": to_parquet_bytes(df)})
    with pytest.raises(QualityGateFailed) as err:
        run_quality_gate(DS)
    assert any(PAYLOAD in f["examples"] for f in err.value.summary["failures"])  # the true value in the summary

    html = pages.quality_page(data.quality_overview(lake, DS, DS))
    page = _Page()
    page.feed(html)
    assert "img" not in page.tags and PAYLOAD not in html
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html

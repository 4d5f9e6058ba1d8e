"""Server-rendered HTML for the three pages (shown in an iframe inside the Airflow UI).

All links are relative (``reports/…``, ``drift?start=…``), so the pages work under whatever
prefix the api-server mounts the app at, and behind a proxy. Every value is HTML-escaped.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any
from urllib.parse import quote

from ai_factory.ui import svg

NAV = (("quality", "Data quality"), ("drift", "Drift"), ("models", "Models"))

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#ffffff; --soft:#f6f8fa;
        --ok:#1a7f37; --bad:#cf222e; --warn:#9a6700; --none:#8c959f; --accent:#0969da; }
* { box-sizing: border-box; }
body { margin:0; padding:16px 24px 40px; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--fg); background:var(--bg); }
header { display:flex; align-items:center; gap:24px; flex-wrap:wrap; border-bottom:1px solid var(--line);
         padding-bottom:10px; margin-bottom:16px; }
header h1 { font-size:18px; margin:0; }
nav a { margin-right:4px; padding:6px 12px; border-radius:6px; color:var(--fg); text-decoration:none; }
nav a.active { background:var(--soft); border:1px solid var(--line); font-weight:600; }
form.range { margin-left:auto; display:flex; gap:8px; align-items:center; }
form.range input { font:inherit; padding:3px 6px; border:1px solid var(--line); border-radius:6px; }
form.range button { font:inherit; padding:4px 12px; border-radius:6px; border:1px solid var(--line);
                    background:var(--soft); cursor:pointer; }
h2 { font-size:16px; margin:22px 0 8px; }
.muted { color:var(--muted); }
.chips { display:flex; gap:8px; flex-wrap:wrap; margin:6px 0 12px; }
.chip { padding:2px 10px; border-radius:999px; border:1px solid var(--line); background:var(--soft); }
.badge { display:inline-block; padding:1px 8px; border-radius:999px; font-size:12px; font-weight:600;
         color:#fff; white-space:nowrap; }
.passed, .no_drift, .approved { background:var(--ok); }
.quarantined, .drift, .rejected { background:var(--bad); }
.pending { background:var(--warn); }
.missing, .undecided { background:var(--none); }
.error { background:#bc4c00; }
.calendar { display:flex; flex-wrap:wrap; gap:6px; margin:8px 0 4px; }
.calendar a, .calendar span { display:block; width:88px; padding:6px 4px; border-radius:6px; text-align:center;
        color:#fff; text-decoration:none; font-size:12px; line-height:1.25; }
.calendar .missing { background:repeating-linear-gradient(45deg,#c9d1d9,#c9d1d9 4px,#d8dee4 4px,#d8dee4 8px);
        color:var(--fg); }
table { border-collapse:collapse; width:100%; margin-top:6px; }
th, td { text-align:left; vertical-align:top; padding:6px 8px; border-bottom:1px solid var(--line); }
th { background:var(--soft); font-weight:600; font-size:13px; }
td.day, td.when { white-space:nowrap; }
.nowrap { white-space:nowrap; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
ul.failures { margin:0; padding-left:18px; }
ul.failures li { margin:2px 0; }
code { font-size:12px; background:var(--soft); padding:0 4px; border-radius:4px; }
.card { border:1px solid var(--line); border-radius:8px; padding:12px 16px; background:var(--soft); }
.plot { border:1px solid var(--line); border-radius:8px; background:#fff; max-width:1100px; }
details summary { cursor:pointer; color:var(--accent); }
.key { font-weight:700; }
.star { color:#d4a72c; }
.pass { color:var(--ok); font-weight:600; } .fail { color:var(--bad); font-weight:600; }
.empty { padding:24px; text-align:center; border:1px dashed var(--line); border-radius:8px; color:var(--muted); }
"""


def report_link(path: str) -> str:
    """A relative URL for a file in the reports folder."""
    return "reports/" + quote(path, safe="/=")


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}f}"


def when(stamp: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM UTC`` (as given when it does not parse)."""
    from datetime import UTC, datetime

    try:
        t = datetime.fromisoformat(str(stamp))
    except ValueError:
        return str(stamp)
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _badge(status: str | None, label: str | None = None) -> str:
    s = status or "undecided"
    return f'<span class="badge {escape(s)}">{escape(label or s.replace("_", " "))}</span>'


def _layout(active: str, title: str, body: str, range_: tuple[str, str] | None = None) -> str:
    links = "".join(f'<a href="{key}" class="{"active" if key == active else ""}">{escape(label)}</a>'
                    for key, label in NAV)
    form = ""
    if range_:
        form = (f'<form class="range" method="get" action="{active}">'
                f'<label>from <input type="date" name="start" value="{escape(range_[0])}"></label>'
                f'<label>to <input type="date" name="end" value="{escape(range_[1])}"></label>'
                f'<button type="submit">Show</button></form>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)} · AI Factory</title><style>{CSS}</style></head>'
            f'<body><header><h1>AI Factory · {escape(title)}</h1><nav>{links}</nav>{form}</header>'
            f'<main>{body}</main></body></html>')


# -- data quality -----------------------------------------------------------------------------
def _failure_text(f: dict[str, Any]) -> str:
    where = f"column <code>{escape(str(f['column']))}</code>" if f.get("column") else "table"
    rule = f" [{escape(str(f['rule']))}]" if f.get("rule") else ""
    detail = ""
    if f.get("exception"):
        detail = f": error {escape(str(f['exception']))}"
    elif f.get("unexpected_count"):
        pct = f" ({f['unexpected_percent']:.2f}%)" if isinstance(f.get("unexpected_percent"), int | float) else ""
        ex = ", e.g. " + escape(", ".join(map(str, f["examples"][:3]))) if f.get("examples") else ""
        detail = f": {f['unexpected_count']:,} unexpected values{pct}{ex}"
    elif f.get("observed") is not None:
        detail = f": observed {escape(str(f['observed']))[:200]}"
    return f"{where}{rule} <span class=\"muted\">{escape(str(f.get('expectation')))}</span>{detail}"


def quality_page(data: dict[str, Any]) -> str:
    days = data["days"]
    counts = data["counts"]
    chips = "".join(f'<span class="chip">{_badge(s)} {counts[s]}</span>' for s in counts)
    tiles = []
    for d in days:
        label = f'{escape(d["ds"][5:])}<br>{escape(d["status"])}'
        tip = escape(f'{d["ds"]}: {d["status"]}' + (f', {d["rows"]:,} rows' if d.get("rows") is not None else ""))
        if d.get("data_docs_path"):
            tiles.append(f'<a class="{escape(d["status"])}" href="{escape(report_link(d["data_docs_path"]))}" '
                         f'target="_blank" rel="noopener" title="{tip} (open Data Docs)">{label}</a>')
        else:
            tiles.append(f'<span class="{escape(d["status"])}" title="{tip}">{label}</span>')
    rows = []
    for d in reversed(days):
        exp = d.get("expectations") or {}
        docs = (f'<a href="{escape(report_link(d["data_docs_path"]))}" target="_blank" rel="noopener">Data Docs</a>'
                if d.get("data_docs_path") else '<span class="muted">—</span>')
        glance = ""
        if d["status"] == "quarantined":
            items = [f"<li>{_failure_text(f)}</li>" for f in d["failures"]]
            if d.get("read_error"):
                items.insert(0, f"<li>unreadable: {escape(d['read_error'])}</li>")
            if not items:
                items = [f"<li>{escape(r)}</li>" for r in d.get("reasons") or []]
            more = d["failures_total"] - len(d["failures"])
            if more > 0:
                items.append(f'<li class="muted">… and {more} more in Data Docs</li>')
            glance = f'<ul class="failures">{"".join(items)}</ul>' if items else ""
        elif d["status"] == "passed" and d.get("warnings"):
            glance = f'<span class="muted">{d["warnings"]} distribution warning(s), non-blocking</span>'
        elif d["status"] == "pending":
            glance = '<span class="muted">landed, not validated yet</span>'
        elif d["status"] == "missing":
            glance = '<span class="muted">no data landed for this day</span>'
        counts_cell = (f'{_num(exp.get("evaluated"))} / <span class="{"fail" if exp.get("critical_failed") else ""}">'
                       f'{_num(exp.get("critical_failed"))}</span>' if exp else '<span class="muted">—</span>')
        rows.append(
            f'<tr data-ds="{escape(d["ds"])}" data-status="{escape(d["status"])}"><td class="day">{escape(d["ds"])}</td>'
            f'<td>{_badge(d["status"])}</td><td class="num">{_num(d.get("rows"))}</td>'
            f'<td class="num">{counts_cell}</td><td class="nowrap">{docs}</td><td>{glance}</td></tr>')
    index = (f' · <a href="{escape(report_link(data["data_docs_index_path"]))}" target="_blank" '
             f'rel="noopener">Data Docs home</a>' if data.get("data_docs_index_path") else "")
    body = (f'<p class="muted">Great Expectations gate, day by day, {escape(data["start"])} to '
            f'{escape(data["end"])}. A day links to its Data Docs page{index}.</p>'
            f'<div class="chips">{chips}</div><div class="calendar">{"".join(tiles)}</div>'
            f'<h2>Days</h2><table class="days"><thead><tr><th>day</th><th>status</th><th>rows</th>'
            f'<th>expectations / critical failed</th><th>report</th><th>failed expectations at a glance</th>'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return _layout("quality", "Data quality", body, (data["start"], data["end"]))


# -- drift ---------------------------------------------------------------------------------------
def drift_page(data: dict[str, Any]) -> str:
    days = data["days"]
    counts = data["counts"]
    chips = "".join(f'<span class="chip">{_badge(s)} {counts[s]}</span>' for s in counts if counts[s] or s != "error")
    plot = svg.drift_timeline(days, data.get("share_threshold"), report_link)
    rows = []
    for d in reversed(days):
        keys = set(d.get("drifted_key_columns") or [])
        cols = ", ".join(f'<span class="{"key" if c in keys else ""}">{escape(c)}</span>'
                         for c in d.get("drifted_columns") or []) or '<span class="muted">none</span>'
        report = (f'<a href="{escape(report_link(d["report_path"]))}" target="_blank" rel="noopener">Evidently '
                  f'report</a>' if d.get("report_path") else '<span class="muted">—</span>')
        share = (f'{_num(d["share"], 2)} <span class="muted">/ {_num(d.get("share_threshold"), 2)}</span>'
                 if d.get("share") is not None else '<span class="muted">—</span>')
        reason = escape(d.get("reason") or d.get("report_error") or "no drift check for this day")
        drifted = (f'{_num(d.get("drifted_count"))} / {_num(d.get("feature_count"))}'
                   if d.get("feature_count") is not None else '<span class="muted">—</span>')
        rows.append(
            f'<tr data-ds="{escape(d["ds"])}" data-status="{escape(d["status"])}"><td class="day">{escape(d["ds"])}</td>'
            f'<td>{_badge(d["status"])}</td><td class="num">{share}</td><td class="num">{drifted}</td>'
            f'<td>{cols}</td><td class="nowrap">{report}</td><td class="muted">{reason}</td></tr>')
    body = (f'<p class="muted">Evidently drift checks, {escape(data["start"])} to {escape(data["end"])}: '
            f'the share of drifted features per day (bars link to the day\'s report; key columns in bold '
            f'below).</p><div class="chips">{chips}</div>{plot}'
            f'<h2>Days</h2><table class="days"><thead><tr><th>day</th><th>status</th><th>share / threshold</th>'
            f'<th>drifted</th><th>drifted columns</th><th>report</th><th>decision</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')
    return _layout("drift", "Drift", body, (data["start"], data["end"]))


# -- models -------------------------------------------------------------------------------------------
SHOWN_METRICS = ("roc_auc", "average_precision", "log_loss", "ece", "accuracy", "f1", "rmse", "mae", "r2")


def _window_text(w: dict[str, Any] | None) -> str:
    if not w:
        return "—"
    train = w.get("train") or []
    span = f"{train[0]}…{train[-1]}" if train else "—"
    return (f'<span class="nowrap">train {escape(span)}</span><br><span class="muted nowrap">holdout '
            f'{escape(", ".join(w.get("holdout") or []) or "—")}</span>')


def _headline(decision: dict[str, Any]) -> str:
    """The deciding rule's message (the reason without its "tag on holdout …:" preamble)."""
    rule = decision.get("deciding_rule")
    for r in decision.get("rules") or []:
        if r.get("rule") == rule:
            return str(r.get("message"))
    return str(decision.get("reason"))


def _rules_table(decision: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr><td>{escape(str(r.get("rule")))}</td>'
        f'<td class="{"pass" if r.get("passed") else "fail"}">{"pass" if r.get("passed") else "FAIL"}</td>'
        f'<td class="num">{_num(r.get("challenger"))}</td><td class="num">{_num(r.get("champion"))}</td>'
        f'<td class="num">{_num(r.get("threshold"))}</td><td class="num">{_num(r.get("improvement"))}</td>'
        f'<td>{escape(str(r.get("message") or ""))}</td></tr>'
        for r in decision.get("rules") or [])
    holdout = decision.get("holdout") or {}
    where = (f'holdout {escape(", ".join(holdout.get("partitions") or []))} '
             f'({_num(holdout.get("rows"))} rows)' if holdout else "")
    return (f'<p>{escape(str(decision.get("reason")))}</p>'
            f'<p class="muted">{escape(decision.get("gate") or "gate")} at {escape(when(decision.get("at")))}, '
            f'{where}; deciding rule <b>{escape(str(decision.get("deciding_rule")))}</b></p>'
            f'<table><thead><tr><th>rule</th><th></th><th>challenger</th><th>champion</th><th>threshold</th>'
            f'<th>improvement</th><th>detail</th></tr></thead><tbody>{rows}</tbody></table>')


def _reference_cell(ref: dict[str, Any] | None) -> str:
    if not ref:
        return '<span class="muted">—</span>'
    if ref.get("error"):
        return f'<span class="muted" title="{escape(str(ref["error"]))}">not fitted</span>'
    return (f'{_num(ref.get("model"))} vs {_num(ref.get("reference"))}'
            f'<br><span class="muted">HGB fit {_num(ref.get("fit_seconds"), 1)} s</span>')


def models_page(data: dict[str, Any], error: str | None = None) -> str:
    if error:
        return _layout("models", "Models", f'<div class="empty">{escape(error)}</div>')
    versions = data["versions"]
    metric = data.get("primary_metric")
    if not versions:
        body = f'<div class="empty">No model versions registered for <b>{escape(data["model"])}</b> yet.</div>'
        return _layout("models", "Models", body)
    champ = data.get("champion")
    if champ:
        card = (f'<div class="card champion"><span class="star">★</span> Champion <b>{escape(data["model"])}:'
                f'{escape(champ["version"])}</b> since {escape(when(champ.get("since")))} '
                f'(by {escape(str(champ.get("actor")))})<br><span class="muted">{escape(str(champ.get("reason")))}'
                f'</span></div>')
    else:
        card = '<div class="card champion">No champion yet: no version has passed the gate.</div>'
    shown = [m for m in SHOWN_METRICS if any(m in v["metrics"] for v in versions)]
    head = "".join(f'<th>{escape(m)}{"<br><span class=muted>primary</span>" if m == metric else ""}</th>'
                   for m in shown)
    head += f'<th>MLP vs HistGradientBoosting<br><span class=muted>{escape(metric or "")}, same rows</span></th>'

    rows, details = [], []
    for v in versions:
        d = v.get("decision")
        star = '<span class="star" title="champion">★</span> ' if v["is_champion"] else ""
        cells = "".join(f'<td class="num">{_num(v["metrics"].get(m))}</td>' for m in shown)
        cells += f'<td class="num reference">{_reference_cell(v.get("reference"))}</td>'
        promoted = "<br>".join(escape(when(p)) for p in v.get("promoted_at") or []) or '<span class="muted">—</span>'
        if d:
            prim = d.get("primary") or {}
            gate = (f'{_badge(d["decision"])} <span class="muted">by {escape(str(d.get("deciding_rule")))}</span>'
                    f'<br>{escape(str(prim.get("metric")))} {_num(prim.get("challenger"))} vs champion '
                    f'{_num(prim.get("champion"))}')
            details.append(f'<details id="decision-{escape(v["version"])}"><summary><code>{escape(v["version"])}</code> '
                           f'{_badge(d["decision"])} by {escape(str(d.get("deciding_rule")))}: '
                           f'{escape(_headline(d))}</summary>{_rules_table(d)}'
                           f'</details>')
        else:
            gate = _badge("undecided", "not judged")
        rows.append(f'<tr data-version="{escape(v["version"])}"><td>{star}<code>{escape(v["version"])}</code>'
                    f'<br><span class="muted nowrap">{escape(when(v["created_at"]))}</span></td>{cells}'
                    f'<td>{_window_text(v.get("window"))}</td><td>{gate}</td><td>{promoted}</td></tr>')
    history = "".join(
        f'<tr><td class="when">{escape(when(h.get("since")))}</td><td><code>{escape(str(h.get("version")))}</code></td>'
        f'<td><code>{escape(str(h.get("previous") or "—"))}</code></td><td>{escape(str(h.get("actor")))}</td>'
        f'<td class="muted">{escape(str(h.get("reason")))}</td></tr>'
        for h in reversed(data.get("champion_history") or []))
    plot = svg.leaderboard(data["leaderboard"], metric, data.get("higher_is_better", True))
    body = (f'{card}<h2>Leaderboard: {escape(metric or "")} over versions</h2>{plot}'
            f'<h2>Versions</h2><table class="versions"><thead><tr><th>version</th>{head}<th>data window</th>'
            f'<th>gate decision</th><th>promoted</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'<h2>Gate decisions</h2>{"".join(details) or "<p class=muted>none yet</p>"}'
            f'<h2>Champion history</h2><table><thead><tr><th>since</th><th>champion</th><th>previous</th>'
            f'<th>by</th><th>reason</th></tr></thead><tbody>{history}</tbody></table>')
    return _layout("models", "Models", body)


def error_page(active: str, status: int, message: str) -> str:
    return _layout(active, "Error", f'<div class="empty"><b>{status}</b>: {escape(message)}</div>')


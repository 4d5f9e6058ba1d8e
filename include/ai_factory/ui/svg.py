"""The pages' plots as inline SVG: no JavaScript and nothing fetched from the internet.

Each mark carries a ``<title>`` (the browser's tooltip) with its numbers, and drift bars link
to their day's Evidently report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape
from typing import Any

COLORS = {
    "drift": "#c0392b",
    "no_drift": "#2a9d8f",
    "missing": "#b8bec6",
    "error": "#e67e22",
    "axis": "#5f6b7a",
    "grid": "#e3e7ec",
    "threshold": "#7b2cbf",
    "registered": "#1f6feb",
    "gate": "#8250df",
    "approved": "#1a7f37",
    "rejected": "#cf222e",
    "undecided": "#8c959f",
    "champion": "#d4a72c",
}
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _label_step(n: int, max_labels: int = 16) -> int:
    return max(1, math.ceil(n / max_labels))


def drift_timeline(days: list[dict[str, Any]], threshold: float | None, link: Callable[[str], str],
                   width: int = 960, height: int = 280) -> str:
    """Bars of each day's drifted-feature share (0..1); red when the day was judged drifted."""
    left, right, top, bottom = 52, 96, 24, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(days), 1)
    band = plot_w / n

    def y(v: float) -> float:
        return top + plot_h * (1 - max(0.0, min(1.0, v)))

    out = [f'<svg class="plot" role="img" aria-label="Drift share per day" viewBox="0 0 {width} {height}" '
           f'width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg" {FONT} '
           f'font-size="12">']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        ty = y(tick)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="{COLORS["grid"]}"/>')
        out.append(f'<text x="{left - 8}" y="{ty + 4:.1f}" text-anchor="end" fill="{COLORS["axis"]}">'
                   f'{tick:.2f}</text>')
    out.append(f'<text x="14" y="{top + plot_h / 2:.1f}" transform="rotate(-90 14 {top + plot_h / 2:.1f})" '
               f'text-anchor="middle" fill="{COLORS["axis"]}">drifted share</text>')
    step = _label_step(n)
    for i, d in enumerate(days):
        x0 = left + i * band
        bar_w = max(band * 0.66, 2)
        bx = x0 + (band - bar_w) / 2
        status = d.get("status", "missing")
        color = COLORS.get(status, COLORS["missing"])
        if d.get("share") is not None:
            share = float(d["share"])
            cols = ", ".join(d.get("drifted_columns") or []) or "none"
            tip = (f'{d["ds"]}: {"DRIFT" if status == "drift" else "no drift"}, share {share:.2f} '
                   f'({d.get("drifted_count")}/{d.get("feature_count")}); drifted: {cols}')
            h = max(plot_h * min(share, 1.0), 3.0)  # a zero share still shows as a sliver
            bar = (f'<rect class="bar {status}" data-ds="{escape(d["ds"])}" x="{bx:.1f}" y="{y(share):.1f}" '
                   f'width="{bar_w:.1f}" height="{h:.1f}" rx="2" fill="{color}"><title>{escape(tip)}</title></rect>')
            if d.get("report_path"):
                bar = f'<a href="{escape(link(d["report_path"]))}" target="_blank" rel="noopener">{bar}</a>'
            out.append(bar)
            if n <= 31:
                out.append(f'<text x="{x0 + band / 2:.1f}" y="{y(share) - 5:.1f}" text-anchor="middle" '
                           f'font-size="11" fill="{COLORS["axis"]}">{d.get("drifted_count")}</text>')
        else:
            what = "report unreadable" if status == "error" else "no drift report"
            out.append(f'<rect class="bar {status}" data-ds="{escape(d["ds"])}" x="{bx:.1f}" y="{top}" '
                       f'width="{bar_w:.1f}" height="{plot_h}" fill="{color}" fill-opacity="0.12" '
                       f'stroke="{color}" stroke-dasharray="3 3"><title>{escape(d["ds"])}: {what}</title></rect>')
        if i % step == 0:
            lx, ly = x0 + band / 2, top + plot_h + 14
            out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="end" fill="{COLORS["axis"]}" '
                       f'transform="rotate(-35 {lx:.1f} {ly:.1f})">{escape(d["ds"][5:])}</text>')
    if threshold is not None:
        ty = y(threshold)
        out.append(f'<line class="threshold" x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" '
                   f'stroke="{COLORS["threshold"]}" stroke-width="1.5" stroke-dasharray="6 4"/>')
        out.append(f'<text x="{width - right + 6}" y="{ty + 4:.1f}" fill="{COLORS["threshold"]}">'
                   f'threshold {threshold:.2f}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" '
               f'stroke="{COLORS["axis"]}"/>')
    out.append("</svg>")
    return "".join(out)


def leaderboard(points: list[dict[str, Any]], metric: str | None, higher_is_better: bool,
                width: int = 960, height: int = 300) -> str:
    """The primary metric per version (oldest left): at registration (own holdout) and in the gate."""
    left, right, top, bottom = 64, 20, 40, 64
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [float(v) for p in points for v in (p.get("value"), p.get("gate_value"))
              if v is not None and math.isfinite(float(v))]
    out = [f'<svg class="plot" role="img" aria-label="Leaderboard of {escape(metric or "metric")}" '
           f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
           f'xmlns="http://www.w3.org/2000/svg" {FONT} font-size="12">']
    if not values:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{COLORS["axis"]}">'
                   f'no {escape(metric or "metric")} values recorded yet</text></svg>')
        return "".join(out)
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.15, 0.005)
    lo, hi = lo - pad, hi + pad
    n = len(points)
    band = plot_w / max(n, 1)

    def x(i: int) -> float:
        return left + band * (i + 0.5)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    for k in range(5):
        v = lo + (hi - lo) * k / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="{COLORS["grid"]}"/>')
        out.append(f'<text x="{left - 8}" y="{y(v) + 4:.1f}" text-anchor="end" fill="{COLORS["axis"]}">'
                   f'{v:.3f}</text>')
    better = "higher is better" if higher_is_better else "lower is better"
    out.append(f'<text x="14" y="{top + plot_h / 2:.1f}" transform="rotate(-90 14 {top + plot_h / 2:.1f})" '
               f'text-anchor="middle" fill="{COLORS["axis"]}">{escape(metric or "")} ({better})</text>')
    for key, color, dash in (("value", COLORS["registered"], ""), ("gate_value", COLORS["gate"], "5 4")):
        pts = [(x(i), y(float(p[key]))) for i, p in enumerate(points)
               if p.get(key) is not None and math.isfinite(float(p[key]))]
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" '
                       f'stroke-dasharray="{dash}"/>')
    step = _label_step(n, 20)
    for i, p in enumerate(points):
        ring = COLORS.get(p.get("decision") or "undecided", COLORS["undecided"])
        decision = p.get("decision") or "no gate decision"
        if p.get("value") is not None and math.isfinite(float(p["value"])):
            tip = f'{p["version"]}: {metric} {_fmt(p["value"])} on its own holdout at registration; {decision}'
            out.append(f'<circle class="point registered" data-version="{escape(p["version"])}" cx="{x(i):.1f}" '
                       f'cy="{y(float(p["value"])):.1f}" r="6" fill="{COLORS["registered"]}" stroke="{ring}" '
                       f'stroke-width="3"><title>{escape(tip)}</title></circle>')
        if p.get("gate_value") is not None and math.isfinite(float(p["gate_value"])):
            gy = y(float(p["gate_value"]))
            tip = f'{p["version"]}: {metric} {_fmt(p["gate_value"])} on the gate\'s holdout; {decision}'
            out.append(f'<rect class="point gate" x="{x(i) - 5:.1f}" y="{gy - 5:.1f}" width="10" height="10" '
                       f'fill="{COLORS["gate"]}" stroke="{ring}" stroke-width="2"><title>{escape(tip)}</title></rect>')
        if p.get("is_champion"):
            vals = [float(v) for v in (p.get("value"), p.get("gate_value")) if v is not None]
            cy = min(y(v) for v in vals) - 14 if vals else top
            out.append(f'<text class="champion-mark" x="{x(i):.1f}" y="{cy:.1f}" text-anchor="middle" '
                       f'font-size="18" fill="{COLORS["champion"]}">★<title>champion</title></text>')
        if i % step == 0:
            lx, ly = x(i), top + plot_h + 14
            out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="end" fill="{COLORS["axis"]}" '
                       f'transform="rotate(-30 {lx:.1f} {ly:.1f})">{escape(p["version"][:10])}</text>')
    legend = [("registered", "circle", f"{metric} at registration (own holdout)"),
              ("gate", "rect", f"{metric} in the gate (shared holdout)")]
    lx = left
    for key, shape, text in legend:
        if shape == "circle":
            out.append(f'<circle cx="{lx + 6}" cy="16" r="5" fill="{COLORS[key]}"/>')
        else:
            out.append(f'<rect x="{lx + 1}" y="11" width="10" height="10" fill="{COLORS[key]}"/>')
        out.append(f'<text x="{lx + 16}" y="20" fill="{COLORS["axis"]}">{escape(text)}</text>')
        lx += 300
    out.append(f'<text x="{lx}" y="20" fill="{COLORS["axis"]}">ring: '
               f'<tspan fill="{COLORS["approved"]}">approved</tspan> / '
               f'<tspan fill="{COLORS["rejected"]}">rejected</tspan>; '
               f'<tspan fill="{COLORS["champion"]}">★</tspan> champion</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" '
               f'stroke="{COLORS["axis"]}"/>')
    out.append("</svg>")
    return "".join(out)

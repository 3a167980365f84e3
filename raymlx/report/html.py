"""The report as one self-contained HTML file: images inline as base64, styles inline, no script, nothing fetched."""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from raymlx.report._section import GROUPS, Chart, Report, Section

__all__ = ["render"]

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:1.5rem;
color:#222;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #4c72b0;padding-bottom:.2rem;margin-top:2.5rem}
h3{margin:1.2rem 0 .4rem;color:#4c72b0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{border:1px solid #ddd;padding:.25rem .6rem;
text-align:left;vertical-align:top}th{background:#f3f5f9}
tr.champion td{background:#eef6ee}tr.baseline td{background:#fbeeee}
.charts{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85rem;color:#555}
.notes li{margin:.2rem 0}.muted{color:#777;font-size:.85rem}nav a{margin-right:.8rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _number(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _e(value)
    return "-" if math.isnan(number) else f"{number:.4g}"


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _chart(chart: Chart) -> str:
    if not chart.png:
        return f'<p class="muted">{_e(chart.title)}: image missing from the run\'s artifacts ({_e(chart.path)})</p>'
    data = base64.b64encode(chart.png).decode("ascii")
    return (f'<figure><img alt="{_e(chart.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(chart.title)} <span class=\"muted\">({_e(chart.path)})</span></figcaption></figure>")


def _summary(report: Report) -> str:
    s = report.summary
    rows: list[tuple[str, Any]] = []
    if s.get("champion"):
        rows.append(("champion", f"<b>{_e(s['champion'])}</b>: {_e(s.get('metric'))} "
                                 f"{_number(s['champion_score'])} ± {_number(s['champion_score_std'])}"))
    for role in ("runner_up", "baseline"):
        if s.get(role):
            gain = s.get(f"gain_over_{role}")
            better = f" (champion better by {gain:.1%})" if isinstance(gain, (int, float)) else ""
            rows.append((role.replace("_", "-"), f"{_e(s[role])}: {_number(s[f'{role}_score'])}{_e(better)}"))
    if s.get("registered_model"):
        rows.append(("registered", _e(s["registered_model"])))
    for key in ("task", "data", "folds", "seeds", "session_run", "tracking_uri", "report_seconds"):
        if s.get(key) is not None:
            rows.append((key.replace("_", " "), _e(s[key])))
    if s.get("versions"):
        rows.append(("versions", _e(", ".join(f"{k} {v}" for k, v in s["versions"].items()))))
    return _table(rows)


def _leaderboard(report: Report) -> str:
    if not report.leaderboard:
        return "<p>No leaderboard was logged.</p>"
    columns = list(report.leaderboard[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in ["rank", *columns])
    body = []
    for rank, row in enumerate(report.leaderboard, 1):
        kind = ("champion" if row.get("model") == report.summary.get("champion") else
                "baseline" if row.get("model") == report.summary.get("baseline_model") else "")
        cells = "".join(f"<td>{_number(row[c]) if isinstance(row[c], float) else _e(row[c])}</td>" for c in columns)
        body.append(f'<tr class="{kind}"><td>{rank}</td>{cells}</tr>')
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _section(section: Section) -> str:
    parts = [f'<h2 id="model-{_e(section.name)}">{_e(section.name)}</h2>']
    if section.facts:
        parts.append(_table([(k.replace("_", " "), _e(v)) for k, v in section.facts.items()]))
    if section.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in section.notes) + "</ul>")
    for group in GROUPS:
        charts = [c for c in section.charts if c.group == group]
        if charts:
            parts.append(f"<h3>{group.capitalize()}</h3><div class=\"charts\">{''.join(map(_chart, charts))}</div>")
    return f'<section class="model">{"".join(parts)}</section>'


def render(report: Report) -> str:
    """The whole report as HTML text."""
    nav = "".join(f'<a href="#model-{_e(s.name)}">{_e(s.name)}</a>' for s in report.sections)
    overview = "".join(map(_chart, report.overview))
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(report.title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>{STYLE}</style></head>"
            f"<body><h1>{_e(report.title)}</h1><p class=\"muted\">raymlx report of MLflow session run "
            f"{_e(report.summary.get('session_run', ''))}</p><h2 id=\"summary\">Summary</h2>{_summary(report)}"
            f"<h2 id=\"leaderboard\">Leaderboard</h2><div class=\"charts\">{overview}</div>{_leaderboard(report)}"
            f"<nav>Models: {nav}</nav>{''.join(map(_section, report.sections))}</body></html>\n")

"""Page assembly: escaping, number formats, tables, and the one self-contained HTML file.

Everything read from results.json goes through `esc` before it reaches the page. The figures
travel as one JSON document in a <script type="application/json"> block, with every "<"
written as \\u003c so no model name can close the block; plotly.js is inlined once, so the file
opens offline from disk.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recsemble.report.figures import FigureJson


@dataclass(frozen=True)
class Section:
    """One part of the page: an anchor id, a heading, how to read it, and its content."""

    id: str
    title: str
    caption: str  # HTML
    body: str  # HTML


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: float | None, digits: int = 4, signed: bool = False) -> str:
    """A metric value for a table; values of 100 and more (ARP) keep fewer decimals."""
    if value is None:
        return "n/a"
    places = digits if abs(value) < 100 else 1
    return f"{value:+.{places}f}" if signed else f"{value:.{places}f}"


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def p_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2g}" if value < 1e-3 else f"{value:.4f}"


def attrs(**values: Any) -> str:
    """HTML attributes, escaped: `data_x` becomes data-x, `class_` class; None is left out."""
    parts = [
        f'{name.rstrip("_").replace("_", "-")}="{esc(v)}"'
        for name, v in values.items()
        if v is not None
    ]
    return (" " + " ".join(parts)) if parts else ""


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    row_classes: Sequence[str | None] = (),
    **attributes: Any,
) -> str:
    """A table of pre-rendered cells (`headers` are plain text, escaped here); a cell that is
    not already a <td>/<th> is wrapped in one."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    thead = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    classes = list(row_classes)
    body = "".join(
        f"<tr{attrs(class_=classes[i] if i < len(classes) else None)}>"
        + "".join(_cell(c) for c in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table{attrs(**attributes)}>{thead}<tbody>{body}</tbody></table>"


def _cell(content: str) -> str:
    return content if content.startswith(("<td", "<th")) else f"<td>{content}</td>"


def missing(what: str, how: str) -> str:
    """A visible note for a part results.json lacks; `how` is HTML (it may hold <code>)."""
    return f'<p class="missing"><strong>Not in results.json:</strong> {esc(what)}. {how}</p>'


def code(text: str) -> str:
    return f"<code>{esc(text)}</code>"


def chart(figure_id: str, figure: FigureJson | None, figures: dict[str, FigureJson]) -> str:
    """The placeholder div of a figure (drawn by the page script); registers the figure."""
    if figure is None:
        return ""
    figures[figure_id] = figure
    return f'<div class="chart" id="{esc(figure_id)}"></div>'


def script_json(document: Any) -> str:
    """JSON that is safe inside a <script> element: no "<" (so no "</script>", no "<!--")."""
    text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


#: Charts narrower than this (a phone) get the figure's "narrow" layout (see `narrow_layout`).
NARROW_PX = 600
# Draws every figure once plotly.js has loaded; marks each div data-rendered when drawn so
# tests (and people) can tell a finished page from a half-drawn one.
_DRAW = """
(function () {
  var spec = JSON.parse(document.getElementById("report-figures").textContent);
  var config = {responsive: true, displaylogo: false, typesetMath: false};
  Object.keys(spec.figures).forEach(function (id) {
    var figure = spec.figures[id];
    figure.layout.template = spec.template;
    if (figure.narrow && document.getElementById(id).clientWidth < %NARROW%) {
      Object.keys(figure.narrow).forEach(function (key) {
        figure.layout[key] = figure.narrow[key];
      });
    }
    Plotly.newPlot(id, figure.data, figure.layout, config).then(function (div) {
      div.setAttribute("data-rendered", "true");
    });
  });
})();
""".replace("%NARROW%", str(NARROW_PX))

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #1f2328; background: #f6f8fa; line-height: 1.45; }
main { max-width: 1200px; margin: 0 auto; padding: 0 24px 48px; }
header { background: #24292f; color: #fff; padding: 20px 24px; }
header h1 { margin: 0 0 8px; font-size: 1.6em; }
dl.facts { display: flex; flex-wrap: wrap; gap: 6px 28px; margin: 0; }
dl.facts div { display: flex; gap: 6px; } dl.facts dt { color: #9da7b3; } dl.facts dd { margin: 0; }
nav { margin: 16px 0; font-size: .95em; } nav a { margin-right: 14px; color: #0969da; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 16px 20px;
  margin: 18px 0; }
section h2 { margin-top: 0; } section h3 { margin-bottom: 4px; }
p.caption { color: #57606a; margin-top: 0; max-width: 70em; }
p.missing { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px; }
blockquote#decision-statement { font-size: 1.2em; margin: 8px 0 16px; padding: 12px 16px;
  border-left: 5px solid #0969da; background: #ddf4ff; }
table { border-collapse: collapse; font-size: .9em; margin: 8px 0; }
th, td { border-bottom: 1px solid #d8dee4; padding: 4px 10px; text-align: right;
  vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f6f8fa; position: sticky; top: 0; }
.scroll { overflow-x: auto; }
table#decision-numbers td { text-align: left; }
span.ci { white-space: nowrap; }
tr.baseline td { color: #57606a; font-style: italic; }
span.ci { display: block; color: #6e7781; font-size: .85em; }
.sig-up { color: #1a7f37; font-weight: 600; } .sig-down { color: #cf222e; font-weight: 600; }
.chart { width: 100%; min-height: 420px; }
pre { background: #f6f8fa; padding: 8px 12px; border-radius: 6px; overflow-x: auto; }
footer { color: #6e7781; font-size: .85em; text-align: center; margin: 24px 0; }
"""


def page(
    title: str,
    header: str,
    sections: Sequence[Section],
    figures: Mapping[str, FigureJson],
    *,
    plotly_js: str,
    template: Mapping[str, Any],
    footer: str,
) -> str:
    """The whole report: inline CSS, the sections, plotly.js once, then the figure data."""
    nav = " ".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>'
        f'<p class="caption">{s.caption}</p>{s.body}</section>'
        for s in sections
    )
    document = script_json({"template": template, "figures": figures})
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1>{header}</header><main><nav>{nav}</nav>\n{body}\n"
        f"<footer>{footer}</footer></main>\n"
        f"<script>{plotly_js}</script>\n"
        f'<script type="application/json" id="report-figures">{document}</script>\n'
        f"<script>{_DRAW}</script></body></html>\n"
    )

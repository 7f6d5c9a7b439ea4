"""The evaluation report: results.json -> one self-contained HTML page with plotly charts.

`recsemble report results.json -o report.html` calls `write_report`. The page needs nothing but
a browser: plotly.js, the CSS and the figure data are all inline, so it opens offline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from recsemble import __version__
from recsemble.errors import DataError
from recsemble.report.data import ReportData, read_report_data
from recsemble.report.figures import FigureJson
from recsemble.report.html import Section, esc, missing, page
from recsemble.report.sections_ensemble import (
    calibration_section,
    ensemble_section,
    tradeoffs_section,
)
from recsemble.report.sections_models import (
    decision_section,
    header,
    metrics_section,
    slices_section,
)

SectionBuilder = Callable[[ReportData, dict[str, FigureJson]], Section]
# The page's sections after the decision, in order: (anchor id, title, builder).
_SECTIONS: tuple[tuple[str, str, SectionBuilder], ...] = (
    ("metrics", "Metrics", metrics_section),
    ("slices", "Slices", slices_section),
    ("ensemble", "Ensemble members", ensemble_section),
    ("calibration", "Calibration", calibration_section),
    ("tradeoffs", "Re-ranking trade-offs", tradeoffs_section),
)


def render_report(results: Mapping[str, Any], *, title: str | None = None) -> str:
    """The report page for `results` (results.json as read); DataError when it holds no models."""
    data = read_report_data(results)
    figures: dict[str, FigureJson] = {}
    sections = [decision_section(data)]
    sections += [
        _guarded(section_id, name, build, data, figures) for section_id, name, build in _SECTIONS
    ]
    page_title = title or f"recsemble evaluation: {data.meta.get('dataset', 'results')}"
    footer = f"Written by recsemble {esc(__version__)} from results.json; charts by plotly.js."
    return page(
        page_title,
        header(data),
        sections,
        figures,
        plotly_js=_plotly_js(),
        template=_template(),
        footer=footer,
    )


def write_report(results: Mapping[str, Any], path: Path, *, title: str | None = None) -> Path:
    """Write the report for `results` to `path` (parents created) and return the path."""
    text = render_report(results, title=title)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:  # e.g. a read-only place
        raise DataError(f"cannot write it ({exc.strerror or exc})", source=str(path)) from None
    return path


def _guarded(
    section_id: str,
    name: str,
    build: SectionBuilder,
    data: ReportData,
    figures: dict[str, FigureJson],
) -> Section:
    """A section, or a note in its place when its part of results.json has an unexpected shape
    (a file from another recsemble version): one odd section must not cost the whole page."""
    drawn: dict[str, FigureJson] = {}
    try:
        section = build(data, drawn)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        note = missing(
            f"this section could not be read ({type(exc).__name__}: {exc})",
            "The file may come from another recsemble version; re-run recsemble evaluate.",
        )
        return Section(section_id, name, "", note)
    figures.update(drawn)
    return section


@cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    text: str = get_plotlyjs()
    if "</script" in text.lower():  # would end the inline <script> early
        raise RuntimeError("this plotly.js cannot be inlined: it contains '</script'")
    return text


@cache
def _template() -> dict[str, Any]:
    import plotly.io as pio  # type: ignore[import-untyped]

    layout: dict[str, Any] = pio.templates["plotly_white"].to_plotly_json()
    return layout


__all__ = ["render_report", "write_report"]

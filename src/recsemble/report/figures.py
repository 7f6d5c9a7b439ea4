"""Plotly figures of the model comparison: metric bars with CIs, history and popularity slices.

Each builder returns the figure as plain JSON (data + layout, without the template, which the
page holds once) or None when results.json lacks what it needs. Null values are left out of
the charts, never drawn as zero.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]
from plotly.subplots import make_subplots  # type: ignore[import-untyped]

from recsemble.report.data import LOWER_IS_BETTER, ModelInfo, ReportData, mapping, number

FigureJson = dict[str, Any]
# Plotly's default qualitative colours; the baseline is grey so the eye skips it.
PALETTE = (
    "#636efa",
    "#ef553b",
    "#00cc96",
    "#ab63fa",
    "#ffa15a",
    "#19d3f3",
    "#ff6692",
    "#b6e880",
    "#ff97ff",
    "#fecb52",
)
BASELINE_COLOR = "#9e9e9e"
# Where a figure's dropdown sits: above the plot, on the left.
_MENU = {"x": 0.0, "y": 1.18, "xanchor": "left", "yanchor": "bottom", "direction": "down"}
_LEGEND_ROW_PX = 22  # one legend entry's row, in a legend under a phone-width chart


def to_json(fig: Any) -> FigureJson:
    """The figure as JSON types, without its template (the page applies one to all), with
    its layout for a phone-width chart under "narrow" where that differs."""
    spec: FigureJson = json.loads(fig.to_json())
    layout = spec.setdefault("layout", {})
    layout.pop("template", None)
    narrow = narrow_layout(layout, [t for t in spec.get("data", []) if _in_legend(t)])
    if narrow:
        spec["narrow"] = narrow
    return spec


def _in_legend(trace: FigureJson) -> bool:
    """Whether the trace has a legend entry when the chart is first drawn."""
    shown = trace.get("visible", True) is not False and trace.get("showlegend") is not False
    return shown and bool(trace.get("name"))


def narrow_layout(layout: FigureJson, entries: list[FigureJson]) -> FigureJson:
    """The top-level layout keys a chart narrower than html.NARROW_PX replaces: a legend at
    the side took most of a phone's width (the calibration plot became a sliver), so it goes
    under the plot, one row per entry, and the chart grows by as much."""
    if layout.get("showlegend") is False or len(entries) < 2:
        return {}
    extra = _LEGEND_ROW_PX * len(entries)
    height = int(layout.get("height", 450)) + extra
    legend = {**layout.get("legend", {}), "orientation": "v", "x": 0.0, "xanchor": "left",
              "y": 0.0, "yanchor": "bottom", "yref": "container"}  # fmt: skip
    margin = {**layout.get("margin", {})}
    margin["b"] = int(margin.get("b", 60)) + extra
    return {"legend": legend, "height": height, "margin": margin}


def model_colors(data: ReportData) -> dict[str, str]:
    """One colour per plain model, kept across every chart; the baseline's is grey."""
    colors: dict[str, str] = {}
    others = [m for m in data.plain if m.role != "baseline"]
    for i, model in enumerate(others):
        colors[model.name] = PALETTE[i % len(PALETTE)]
    if data.baseline:
        colors[data.baseline] = BASELINE_COLOR
    return colors


def new_figure(height: int = 420) -> Any:
    fig = go.Figure()
    fig.update_layout(height=height, margin={"l": 60, "r": 30, "t": 70, "b": 60})
    return fig


def dropdown(
    labels: Sequence[str], visible: Sequence[Sequence[bool]], titles: Sequence[Any]
) -> Any:
    """A menu whose option i shows the traces flagged in visible[i] and applies titles[i]
    (a layout update, e.g. {"yaxis.title.text": ...})."""
    buttons = [
        {"label": label, "method": "update", "args": [{"visible": list(flags)}, title]}
        for label, flags, title in zip(labels, visible, titles, strict=True)
    ]
    return [{**_MENU, "buttons": buttons, "showactive": True}]


def metric_label(metric: str, k: int) -> str:
    direction = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
    return f"{metric}@{k} ({direction})"


def metric_bars(data: ReportData) -> FigureJson | None:
    """One bar per model for each metric at k, a dropdown to pick the metric; error bars are
    the 95% bootstrap CI of the mean over users where per-user values exist."""
    metrics = data.metrics()
    if not metrics:
        return None
    colors = model_colors(data)
    fig = new_figure()
    for i, metric in enumerate(metrics):
        fig.add_trace(_metric_trace(data, metric, colors, visible=i == 0))
    flags = [[i == j for j in range(len(metrics))] for i in range(len(metrics))]
    titles = [{"yaxis.title.text": metric_label(m, data.k)} for m in metrics]
    fig.update_layout(
        updatemenus=dropdown([f"{m}@{data.k}" for m in metrics], flags, titles),
        yaxis_title=metric_label(metrics[0], data.k),
        showlegend=False,
    )
    return to_json(fig)


def _metric_trace(data: ReportData, metric: str, colors: Mapping[str, str], visible: bool) -> Any:
    names: list[str] = []
    values: list[float] = []
    above: list[float | None] = []
    below: list[float | None] = []
    hover: list[str] = []
    for model in data.plain:
        value = model.value(metric, data.k)
        if value is None:
            continue
        interval = data.interval(model, metric)
        names.append(model.name)
        values.append(value)
        above.append(max(interval.high - value, 0.0) if interval else None)
        below.append(max(value - interval.low, 0.0) if interval else None)
        ci = f"<br>95% CI [{interval.low:.4f}, {interval.high:.4f}]" if interval else ""
        hover.append(f"{model.name}: {value:.4f}{ci}")
    has_ci = any(a is not None for a in above)
    return go.Bar(
        x=names,
        y=values,
        name=f"{metric}@{data.k}",
        visible=visible,
        marker_color=[colors.get(n, BASELINE_COLOR) for n in names],
        error_y={"type": "data", "array": above, "arrayminus": below, "visible": has_ci},
        hovertext=hover,
        hoverinfo="text",
    )


def history_slice_bars(data: ReportData) -> FigureJson | None:
    """NDCG@k per slice of train history length, grouped by slice, one colour per model."""
    metric = f"ndcg@{data.k}"
    models = [m for m in data.plain if mapping(m.entry.get("slices"))]
    if not models:
        return None
    slices = _non_empty_slices(models, metric)
    if not slices:
        return None
    colors = model_colors(data)
    fig = new_figure()
    for model in models:
        per_slice = mapping(model.entry.get("slices"))
        labels, values, hover = [], [], []
        for name, n_users in slices:
            value = number(mapping(per_slice.get(name)).get(metric))
            if value is None:
                continue
            labels.append(f"{name} (n={n_users})")
            values.append(value)
            hover.append(f"{model.name}, {name}: {value:.4f}{_vs_baseline(model, data.k, name)}")
        fig.add_bar(
            x=labels, y=values, name=model.name, marker_color=colors.get(model.name),
            hovertext=hover, hoverinfo="text",
        )  # fmt: skip
    fig.update_layout(
        barmode="group",
        yaxis_title=f"NDCG@{data.k}",
        xaxis_title="users by number of train interactions",
    )
    return to_json(fig)


def _non_empty_slices(models: Sequence[ModelInfo], metric: str) -> list[tuple[str, int]]:
    """(slice, users) in file order, for slices with users and a value for some model."""
    out: dict[str, int] = {}
    for model in models:
        for name, values in mapping(model.entry.get("slices")).items():
            stats = mapping(values)
            n_users = number(stats.get("n_users"))
            if n_users and number(stats.get(metric)) is not None and name not in out:
                out[name] = int(n_users)
    return list(out.items())


def _vs_baseline(model: ModelInfo, k: int, slice_name: str) -> str:
    cmp = model.comparison("ndcg", k, slice_name)
    diff, low, high = (number(cmp.get(key)) for key in ("mean_diff", "ci_low", "ci_high"))
    if diff is None or low is None or high is None:
        return ""
    return f"<br>vs baseline {diff:+.4f} [{low:+.4f}, {high:+.4f}]"


def item_slice_bars(data: ReportData) -> FigureJson | None:
    """Head vs tail items: recall@k of the test interactions on each, and the share of the
    list slots given to tail items, per model."""
    models = [m for m in data.plain if mapping(m.entry.get("item_slices"))]
    if not models:
        return None
    k = data.k
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            f"recall@{k} of test interactions, by item popularity",
            f"share of the top-{k} slots holding tail items",
        ),
    )
    names = [m.name for m in models]
    for group, color in (("head", "#2a3f8f"), ("tail", "#8fb3ff")):
        values = [number(_item_slice(m, group).get(f"recall@{k}")) for m in models]
        fig.add_trace(
            go.Bar(x=names, y=values, name=f"{group} items", marker_color=color), row=1, col=1
        )
    shares = [number(_item_slice(m, "tail").get(f"list_share@{k}")) for m in models]
    colors = model_colors(data)
    fig.add_trace(
        go.Bar(
            x=names,
            y=shares,
            name="tail share of lists",
            marker_color=[colors.get(n, BASELINE_COLOR) for n in names],
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    fig.update_layout(
        barmode="group",
        height=440,
        margin={"l": 60, "r": 30, "t": 70, "b": 60},
        legend={"orientation": "h", "x": 0.0, "y": -0.12},
    )
    fig.update_yaxes(rangemode="tozero")
    spec = to_json(fig)
    narrow = spec.get("narrow", {})
    spec["narrow"] = {**narrow, **_stacked(spec["layout"], int(narrow.get("height", 440)))}
    return spec


def _stacked(layout: FigureJson, height: int) -> FigureJson:
    """The two side-by-side subplots one above the other: side by side on a phone, each
    got half its width and their titles ran into each other."""
    titles = [{**a, "x": 0.5, "text": _two_lines(a.get("text", ""))}
              for a in layout.get("annotations", [])]  # fmt: skip
    for title, top in zip(titles, (1.0, 0.4), strict=False):
        title["y"] = top
    return {
        "xaxis": {**layout.get("xaxis", {}), "domain": [0.0, 1.0]},
        "xaxis2": {**layout.get("xaxis2", {}), "domain": [0.0, 1.0]},
        "yaxis": {**layout.get("yaxis", {}), "domain": [0.6, 1.0]},
        "yaxis2": {**layout.get("yaxis2", {}), "domain": [0.0, 0.4]},
        "annotations": titles,
        "height": height + int(layout.get("height", 440)),
    }


def _two_lines(text: str) -> str:
    """`text` broken at the space nearest its middle (a phone fits half a subplot title)."""
    spaces = [i for i, c in enumerate(text) if c == " "]
    if not spaces:
        return text
    cut = min(spaces, key=lambda i: abs(i - len(text) / 2))
    return f"{text[:cut]}<br>{text[cut + 1 :]}"


def _item_slice(model: ModelInfo, group: str) -> Mapping[str, Any]:
    return mapping(mapping(model.entry.get("item_slices")).get(group))


def item_slice_sizes(data: ReportData) -> dict[str, tuple[int, int]]:
    """group -> (items, test interactions), from the first model that has item slices."""
    for model in data.plain:
        slices = mapping(model.entry.get("item_slices"))
        if slices:
            sizes = {}
            for group, stats in slices.items():
                n_items = number(mapping(stats).get("n_items"))
                n_test = number(mapping(stats).get("n_test_interactions"))
                sizes[str(group)] = (int(n_items or 0), int(n_test or 0))
            return sizes
    return {}

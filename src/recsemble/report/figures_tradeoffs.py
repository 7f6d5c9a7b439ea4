"""Plotly figure of the re-ranking trade-offs: NDCG@k against a beyond-accuracy metric.

A swept knob (`evaluate --sweep rerank.mmr.lambda=0:1:0.1`) draws one line per (model, stage,
knob) through its values; a re-ranked variant without a sweep is one diamond; the plain model
it re-ranks is a star, so each line shows what moving off the star costs and buys.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]

from recsemble.evaluation.sweep import TRADE_OFF_METRICS
from recsemble.report.data import LOWER_IS_BETTER, ModelInfo, ReportData
from recsemble.report.figures import (
    BASELINE_COLOR,
    PALETTE,
    FigureJson,
    dropdown,
    model_colors,
    new_figure,
    to_json,
)

_DASHES = ("solid", "dash", "dot", "dashdot")
SweepKey = tuple[str, str, str]  # (variant_of, stage, key)


def sweep_groups(data: ReportData) -> dict[SweepKey, list[ModelInfo]]:
    """The swept variants by (plain model, stage, knob), each in knob order."""
    groups: dict[SweepKey, list[ModelInfo]] = defaultdict(list)
    for variant in data.variants:
        if variant.sweep is not None and variant.variant_of is not None:
            groups[(variant.variant_of, variant.sweep.stage, variant.sweep.key)].append(variant)
    return {key: sorted(points, key=_knob) for key, points in groups.items()}


def _knob(model: ModelInfo) -> float:
    return model.sweep.value if model.sweep else 0.0


def tradeoff_axes(data: ReportData) -> list[str]:
    """The trade-off metrics some variant has a value for at k."""
    return [
        m for m in TRADE_OFF_METRICS if any(v.value(m, data.k) is not None for v in data.variants)
    ]


def tradeoff_curves(data: ReportData) -> FigureJson | None:
    axes = tradeoff_axes(data)
    if not data.variants or not axes:
        return None
    colors = model_colors(data)
    fig = new_figure(height=500)
    owners: list[str] = []  # the x metric of each trace, for the dropdown
    for metric in axes:
        for trace in _traces(data, metric, colors, visible=metric == axes[0]):
            fig.add_trace(trace)
            owners.append(metric)
    flags = [[owner == metric for owner in owners] for metric in axes]
    titles = [{"xaxis.title.text": _axis_title(m, data.k)} for m in axes]
    fig.update_layout(
        updatemenus=dropdown([f"NDCG vs {m}" for m in axes], flags, titles),
        xaxis_title=_axis_title(axes[0], data.k),
        yaxis_title=f"NDCG@{data.k} (higher is better)",
    )
    return to_json(fig)


def _axis_title(metric: str, k: int) -> str:
    better = "lower" if metric in LOWER_IS_BETTER else "higher"
    return f"{metric}@{k} ({better} is better)"


def _traces(data: ReportData, metric: str, colors: dict[str, str], visible: bool) -> list[Any]:
    k = data.k
    groups = sweep_groups(data)
    # A line takes the colour of the model it re-ranks (its star and diamonds have it too) and
    # one dash per knob: coloured by position, model B's line wore model A's colour.
    knobs = list(dict.fromkeys((stage, key) for _, stage, key in groups))
    traces = [
        _sweep_line(
            owner, stage, key, points, metric, k, visible,
            color=colors.get(owner, PALETTE[i % len(PALETTE)]),
            dash=_DASHES[knobs.index((stage, key)) % len(_DASHES)],
        )
        for i, ((owner, stage, key), points) in enumerate(groups.items())
    ]  # fmt: skip
    singles = [v for v in data.variants if v.sweep is None]
    anchors = {v.variant_of for v in data.variants}
    plain = [m for m in data.plain if m.name in anchors or m.role == "baseline"]
    for group, symbol, size in ((singles, "diamond", 11), (plain, "star", 16)):
        for model in group:
            point = _xy(model, metric, k)
            if point is None:
                continue
            color = colors.get(model.variant_of or model.name, BASELINE_COLOR)
            traces.append(
                go.Scatter(
                    x=[point[0]], y=[point[1]], name=model.name, mode="markers", visible=visible,
                    marker={"symbol": symbol, "size": size, "color": color},
                    hovertext=[model.name], hoverinfo="text+x+y",
                )
            )  # fmt: skip
    return [t for t in traces if t is not None]


def _sweep_line(
    owner: str,
    stage: str,
    key: str,
    points: list[ModelInfo],
    metric: str,
    k: int,
    visible: bool,
    *,
    color: str,
    dash: str,
) -> Any:
    """One swept knob as a line through its values; only the two ends carry a label (the
    knob's direction), the hover names every point, so crowded sweeps stay readable."""
    kept = [(p, xy) for p in points if (xy := _xy(p, metric, k)) is not None]
    if not kept:
        return None
    labels = [f"{key}={_knob(p):g}" for p, _ in kept]
    ends = [label if i in (0, len(kept) - 1) else "" for i, label in enumerate(labels)]
    return go.Scatter(
        x=[xy[0] for _, xy in kept], y=[xy[1] for _, xy in kept], name=f"{owner} {stage}.{key}",
        mode="lines+markers+text", text=ends, textposition="top center", visible=visible,
        hovertext=[f"{p.name}<br>{label}" for (p, _), label in zip(kept, labels, strict=True)],
        hoverinfo="text+x+y",
        line={"color": color, "dash": dash},
    )  # fmt: skip


def _xy(model: ModelInfo, metric: str, k: int) -> tuple[float, float] | None:
    x, y = model.value(metric, k), model.value("ndcg", k)
    return None if x is None or y is None else (x, y)

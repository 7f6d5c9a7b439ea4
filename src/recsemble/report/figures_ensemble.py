"""Plotly figures of the ensemble: member overlap, marginal gains, pruning curve, calibration.

Inputs are the "analysis" and "calibration" sections of the ensemble's results.json entry
(see ranking/analysis.py, EnsembleAnalysis.to_json); nulls are left out of the charts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped]

from recsemble.report.data import mapping, number
from recsemble.report.figures import PALETTE, FigureJson, dropdown, new_figure, to_json

# (results.json key, menu label, colour scale, lowest value of the scale)
OVERLAP_MEASURES = (
    ("jaccard", "Jaccard overlap of the top-{k} lists", "Blues", 0.0),
    ("rbo", "rank-biased overlap (RBO) of the top-{k} lists", "Blues", 0.0),
    ("score_spearman", "Spearman correlation of the scores", "RdBu", -1.0),
)


def members_of(analysis: Mapping[str, Any]) -> list[str]:
    members = analysis.get("members")
    return [str(m) for m in members] if isinstance(members, list) else []


def overlap_heatmap(analysis: Mapping[str, Any]) -> FigureJson | None:
    """Member x member similarity, a dropdown over the measures present."""
    members = members_of(analysis)
    measures = [m for m in OVERLAP_MEASURES if mapping(analysis.get(m[0]))]
    if not members or not measures:
        return None
    fig = new_figure(height=max(420, 60 * len(members) + 160))
    k = analysis.get("k", "k")
    measures = [(key, label.format(k=k), scale, low) for key, label, scale, low in measures]
    for i, (key, label, scale, low) in enumerate(measures):
        matrix = mapping(analysis.get(key))
        z = [[number(mapping(matrix.get(a)).get(b)) for b in members] for a in members]
        fig.add_trace(
            go.Heatmap(
                z=z, x=members, y=members, zmin=low, zmax=1.0, colorscale=scale, name=label,
                texttemplate="%{z:.2f}", hoverongaps=False, visible=i == 0,
                reversescale=key == "score_spearman",
            )
        )  # fmt: skip
    flags = [[i == j for j in range(len(measures))] for i in range(len(measures))]
    titles = [{"title.text": label} for _, label, _, _ in measures]
    fig.update_layout(
        updatemenus=dropdown(
            [label.split(" of ")[0] for _, label, _, _ in measures], flags, titles
        ),
        title={"text": measures[0][1], "x": 0.5, "y": 0.97},
        yaxis_autorange="reversed",
    )
    return to_json(fig)


def marginal_gains(analysis: Mapping[str, Any]) -> FigureJson | None:
    """NDCG@k lost when each member is left out (the negated leave-one-out delta): overall,
    then per history slice with users."""
    deltas = mapping(analysis.get("leave_one_out_delta"))
    if not deltas:
        return None
    members = sorted(deltas, key=lambda m: -(_gain(deltas, m, "all") or -1e9))
    sizes = mapping(analysis.get("slices"))
    slices = ["all", *(s for s in sizes if s != "all" and number(sizes.get(s)))]
    fig = new_figure()
    for i, slice_name in enumerate(slices):
        gains = [_gain(deltas, m, slice_name) for m in members]
        if all(g is None for g in gains):
            continue
        users = number(sizes.get(slice_name))
        label = f"{slice_name} (n={int(users)})" if users else slice_name
        fig.add_bar(
            x=members, y=gains, name=label, marker_color=PALETTE[i % len(PALETTE)],
            opacity=1.0 if slice_name == "all" else 0.75,
        )  # fmt: skip
    k = analysis.get("k", "k")
    fig.update_layout(barmode="group", yaxis_title=f"NDCG@{k} lost without the member")
    return to_json(fig)


def _gain(deltas: Mapping[str, Any], member: str, slice_name: str) -> float | None:
    delta = number(mapping(deltas.get(member)).get(slice_name))
    return None if delta is None else -delta


def recommended_step(analysis: Mapping[str, Any]) -> int | None:
    """Index of the curve point whose members are the recommended set."""
    recommended = analysis.get("recommended")
    if not isinstance(recommended, list):
        return None
    for i, point in enumerate(_curve(analysis)):
        members = point.get("members")
        if isinstance(members, list) and set(members) == set(recommended):
            return i
    return None


def _curve(analysis: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    curve = analysis.get("curve")
    return [mapping(p) for p in curve] if isinstance(curve, list) else []


def pruning_curve(analysis: Mapping[str, Any]) -> FigureJson | None:
    """Forward selection: validation and test NDCG@k as members are added, latency on the
    right axis, the recommended set starred."""
    curve = _curve(analysis)
    if not curve:
        return None
    steps = list(range(1, len(curve) + 1))
    ticks = [f"{i}. +{p.get('added', '?')}" for i, p in zip(steps, curve, strict=True)]
    hover = [_curve_hover(p) for p in curve]
    fig = new_figure(height=460)
    for key, label, dash in (
        ("validation_ndcg", "validation", "solid"),
        ("test_ndcg", "test", "dash"),
    ):
        values = [number(p.get(key)) for p in curve]
        fig.add_scatter(
            x=steps, y=values, name=f"{label} NDCG", mode="lines+markers", line={"dash": dash},
            hovertext=hover, hoverinfo="text+y",
        )  # fmt: skip
    latency = [number(p.get("latency_ms_per_user")) for p in curve]
    if any(v is not None for v in latency):
        fig.add_scatter(
            x=steps, y=latency, name="latency (ms/user)", yaxis="y2", mode="lines+markers",
            line={"dash": "dot", "color": "#7f7f7f"},
        )  # fmt: skip
    best = recommended_step(analysis)
    if best is not None:
        fig.add_scatter(
            x=[steps[best]], y=[number(curve[best].get("validation_ndcg"))], mode="markers",
            name="recommended set", marker={"symbol": "star", "size": 18, "color": "#d62728"},
        )  # fmt: skip
    k = analysis.get("k", "k")
    fig.update_layout(
        xaxis={"tickvals": steps, "ticktext": ticks, "title": "member added (in selection order)"},
        yaxis_title=f"NDCG@{k}",
        yaxis2={"title": "ms per user", "overlaying": "y", "side": "right", "rangemode": "tozero"},
        legend={"orientation": "h", "y": 1.12},
    )
    return to_json(fig)


def _curve_hover(point: Mapping[str, Any]) -> str:
    members = point.get("members")
    names = ", ".join(map(str, members)) if isinstance(members, list) else "?"
    gain, se = number(point.get("validation_gain")), number(point.get("validation_gain_se"))
    text = f"members: {names}"
    if gain is not None:
        text += f"<br>validation gain {gain:+.4f}" + (f" ± {se:.4f}" if se is not None else "")
    return text


def reliability_curves(calibration: Mapping[str, Any]) -> FigureJson | None:
    """Mean predicted probability vs observed hit rate per bin; the diagonal is perfect.
    Both axes end just past the largest value: recommendation probabilities are often all
    below a few percent, which a 0-1 square would squash into its corner."""
    curves = {
        str(name): _reliability_points(mapping(c))
        for name, c in mapping(calibration.get("curves")).items()
    }
    curves = {name: points for name, points in curves.items() if points}
    if not curves:
        return None
    top = min(1.0, 1.05 * max(max(x, y) for points in curves.values() for x, y, _ in points))
    fig = new_figure(height=480)
    fig.add_scatter(
        x=[0, top], y=[0, top], mode="lines", name="perfectly calibrated",
        line={"dash": "dash", "color": "#9e9e9e"}, hoverinfo="skip",
    )  # fmt: skip
    raw = mapping(calibration.get("curves"))
    for i, (name, points) in enumerate(curves.items()):
        ece = number(mapping(raw.get(name)).get("ece"))
        label = f"{name} (ECE {ece:.3f})" if ece is not None else name
        fig.add_scatter(
            x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=label,
            text=[f"{p[2]:,} pairs" for p in points], hoverinfo="x+y+text+name",
            line={"width": 3 if name == "ensemble" else 1.5, "color": PALETTE[i % len(PALETTE)]},
        )  # fmt: skip
    fig.update_layout(
        xaxis={"title": "mean predicted probability", "range": [0, top]},
        yaxis={"title": "observed frequency", "range": [0, top]},
    )
    return to_json(fig)


def _reliability_points(curve: Mapping[str, Any]) -> list[tuple[float, float, int]]:
    predicted, observed = curve.get("mean_predicted"), curve.get("observed")
    counts = curve.get("count")
    if not isinstance(predicted, list) or not isinstance(observed, list):
        return []
    counts = counts if isinstance(counts, list) else [None] * len(predicted)
    points = []
    n = len(predicted)
    for p, o, c in zip(predicted, _pad(observed, n), _pad(counts, n), strict=True):
        x, y = number(p), number(o)
        if x is not None and y is not None:
            points.append((x, y, int(number(c) or 0)))
    return points


def _pad(values: Sequence[Any], length: int) -> list[Any]:
    return [*values[:length], *([None] * (length - len(values)))]

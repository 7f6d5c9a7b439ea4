"""Report sections about the ensemble (members, pruning, calibration) and re-ranking."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recsemble.report.data import ReportData, mapping, number
from recsemble.report.figures import FigureJson
from recsemble.report.figures_ensemble import (
    marginal_gains,
    overlap_heatmap,
    pruning_curve,
    reliability_curves,
)
from recsemble.report.figures_tradeoffs import tradeoff_curves
from recsemble.report.html import Section, chart, code, esc, fmt, missing, table

_ANALYZE = (
    "recsemble evaluate --models ensemble,... --set evaluate.analyze=true --json results.json"
)
ENSEMBLE_HOW = (
    f"Evaluate the ensemble with the analysis on: {code(_ANALYZE)} (or "
    f"{code('analyze = true')} under {code('[evaluate]')} in the config)."
)


def ensemble_section(data: ReportData, figures: dict[str, FigureJson]) -> Section:
    caption = (
        "What each member of the ensemble brings. Overlap: how alike two members' top lists (or "
        "scores) are; members that copy each other add little. Marginal gain: the NDCG lost when "
        "the member is left out and the meta-ranker retrained (negative: the ensemble is better "
        "without it). Pruning curve: members added one at a time, the best on validation first; "
        "the star is the smallest set within 0.5% of the best validation NDCG, the one to serve "
        "(a rule on the points: the gain ± SE of each step in the hover says whether it is more "
        "than noise)."
    )
    found = data.section("analysis")
    if found is None:
        body = missing("no ensemble analysis (analysis)", ENSEMBLE_HOW)
        return Section("ensemble", "Ensemble members", caption, body)
    _, analysis = found
    parts = [
        ("Member overlap", "fig-overlap", overlap_heatmap(analysis), "overlap matrices"),
        ("Marginal gain of each member", "fig-marginal", marginal_gains(analysis), "leave-one-out"),
        ("Pruning curve", "fig-pruning", pruning_curve(analysis), "selection curve"),
    ]
    body = ""
    for title, figure_id, figure, what in parts:
        body += f"<h3>{esc(title)}</h3>"
        body += chart(figure_id, figure, figures) or missing(f"no {what}", ENSEMBLE_HOW)
    body += _prune_line(analysis) + _reach_table(analysis)
    return Section("ensemble", "Ensemble members", caption, body)


def _prune_line(analysis: Mapping[str, Any]) -> str:
    recommended = analysis.get("recommended")
    line = analysis.get("prune_line")
    if not isinstance(line, str) or not line:
        return ""
    members = ", ".join(map(str, recommended)) if isinstance(recommended, list) else "?"
    return (
        f'<p>Recommended members: <strong id="recommended-members">{esc(members)}</strong>. '
        "To serve only them, put this in the config:</p>"
        f'<pre id="prune-line">[ensemble]\n{esc(line)}</pre>'
    )


def _reach_table(analysis: Mapping[str, Any]) -> str:
    reach = analysis.get("reach")
    if not isinstance(reach, list) or not reach:
        return ""
    k = analysis.get("k", "k")
    rows = []
    for row in map(mapping, reach):
        hits, unique = number(row.get("hits")), number(row.get("unique_hits"))
        rows.append(
            [
                esc(row.get("member", "?")),
                fmt(number(row.get("ndcg"))),
                f"{int(hits):,}" if hits is not None else "n/a",
                f"{int(unique):,}" if unique is not None else "n/a",
                fmt(number(row.get("candidate_recall"))),
            ]
        )
    union = number(analysis.get("union_candidate_recall"))
    headers = [
        "member",
        f"NDCG@{k} alone",
        "hits",
        "hits no other member finds",
        "candidate recall",
    ]
    return (
        "<h3>What each member finds on its own</h3>"
        '<p class="caption">Unique hits are test items only this member puts in its top '
        f"{esc(k)}; candidate recall is the share of test items in its candidate pool (all members "
        f"together: {fmt(union)}).</p>"
        + f'<div class="scroll">{table(headers, rows, id="reach-table")}</div>'
    )


def calibration_section(data: ReportData, figures: dict[str, FigureJson]) -> Section:
    caption = (
        "Can the scores be read as probabilities? Each point is a bin of (user, item) pairs: the "
        "mean predicted probability against how often the item was really interacted with. On the "
        "dashed diagonal the scores are calibrated; the expected calibration error (ECE, in the "
        "legend) is the average distance from it, weighted by bin size. Lower is better."
    )
    found = data.section("calibration")
    figure = reliability_curves(found[1]) if found else None
    if found is None or figure is None:
        body = missing("no reliability curves (calibration)", ENSEMBLE_HOW)
        return Section("calibration", "Calibration", caption, body)
    calibration = found[1]
    kind = calibration.get("kind") or "none (set ensemble.calibration to calibrate its scores)"
    strategy = calibration.get("strategy", "?")
    body = (
        f'<p class="caption">Calibrator of the ensemble: {esc(kind)}. Members: their ranks mapped '
        "to probabilities by isotonic regression on the validation requests. Bins: "
        f"{esc(strategy)} (quantile: equal numbers of pairs per bin).</p>"
        + chart("fig-calibration", figure, figures)
    )
    return Section("calibration", "Calibration", caption, body)


def tradeoffs_section(data: ReportData, figures: dict[str, FigureJson]) -> Section:
    k = data.k
    caption = (
        f"What re-ranking costs in accuracy and buys in diversity, coverage, novelty, calibration "
        f"or fairness of exposure. Up is better NDCG@{k}; the menu picks the other metric. A star "
        "is a plain model, a line a swept knob (its values on the points; the model's colour, "
        "one dash per knob), a diamond a fixed re-ranking chain. Good settings sit near the "
        "star's height but far along the other axis."
    )
    figure = tradeoff_curves(data)
    if figure is None:
        how = (
            f"Evaluate with re-ranking, e.g. {code('recsemble evaluate --rerank mmr')} "
            f"or a sweep {code('recsemble evaluate --sweep rerank.mmr.lambda=0:1:0.1')}."
        )
        body = missing("no re-ranked variants with trade-off metrics", how)
    else:
        body = chart("fig-tradeoffs", figure, figures)
    return Section("tradeoffs", "Re-ranking trade-offs", caption, body)

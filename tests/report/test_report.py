"""The HTML report from hand-built results: sections, missing parts, escaping, offline, numbers."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsemble.errors import DataError
from recsemble.report import render_report, write_report
from recsemble.report.data import read_report_data
from tests.report.pages import Page, parse_page
from tests.report.sample import sample_results

ALL_CHARTS = {
    "fig-metrics",
    "fig-history-slices",
    "fig-item-slices",
    "fig-overlap",
    "fig-marginal",
    "fig-pruning",
    "fig-calibration",
    "fig-tradeoffs",
}
SECTIONS = ["decision", "metrics", "slices", "ensemble", "calibration", "tradeoffs"]


@pytest.fixture(scope="module")
def full() -> dict[str, Any]:
    return sample_results()


@pytest.fixture(scope="module")
def full_page(full: dict[str, Any]) -> Page:
    return parse_page(render_report(full))


def _render(results: dict[str, Any]) -> Page:
    return parse_page(render_report(results))


def test_every_section_in_order_with_its_charts(full_page: Page) -> None:
    ids = [e.attrs["id"] for e in full_page.elements if e.tag == "section"]
    assert ids == SECTIONS
    assert set(full_page.chart_ids) == ALL_CHARTS
    assert set(full_page.figures) == ALL_CHARTS  # every placeholder has its figure data
    assert not full_page.by_class("missing")


def test_missing_sections_say_what_is_missing_and_how_to_get_it(full: dict[str, Any]) -> None:
    old = copy.deepcopy(full)
    for name in [n for n in old if "+" in n]:
        del old[name]
    for entry in old.values():
        for key in ("vs_baseline", "item_slices", "analysis", "calibration", "decision"):
            entry.pop(key, None)
    page = _render(old)
    notes = " ".join(" ".join(n.text.split()) for n in page.by_class("missing"))
    assert "no decision" in notes and "recsemble evaluate" in page.section_text("decision")
    for expected in ("vs_baseline", "item_slices", "(analysis)", "(calibration)", "--sweep"):
        assert expected in notes
    assert set(page.chart_ids) == {"fig-metrics", "fig-history-slices"}
    assert [e.attrs["id"] for e in page.elements if e.tag == "section"] == SECTIONS


def test_an_old_file_without_roles_is_read_from_the_names(full: dict[str, Any]) -> None:
    old = copy.deepcopy(full)
    for entry in old.values():
        for key in ("role", "baseline", "variant_of", "stages", "sweep"):
            entry["meta"].pop(key, None)
    data = read_report_data(old)
    assert data.baseline == "pop"
    assert [m.name for m in data.plain] == ["pop", "ensemble", "itemknn"]
    swept = {m.name: m.sweep.value for m in data.variants if m.sweep}
    assert swept == {f"ensemble+mmr[lambda={v:g}]": v for v in (0.0, 0.5, 1.0)}
    lines = [t["name"] for t in _render(old).figures["fig-tradeoffs"]["data"]]
    assert "ensemble mmr.lambda" in lines


def test_model_names_and_texts_are_escaped(full: dict[str, Any]) -> None:
    evil = "<script>alert('x')</script>"
    results = {evil if name == "itemknn" else name: entry for name, entry in full.items()}
    results = copy.deepcopy(results)
    results["pop"]["meta"]["dataset"] = "</script><b>data</b>"
    results["ensemble"]["decision"]["statement"] = 'ok "quoted" </blockquote><i>x</i>'
    results["ensemble"]["analysis"]["members"][0] = evil
    text = render_report(results)
    assert evil not in text and "<b>data</b>" not in text and "<i>x</i>" not in text
    page = parse_page(text)
    assert len(page.scripts) == 3  # plotly.js, the figure data, the drawing code: no more
    assert [e.text for e in page.elements if e.attrs.get("data-model") == evil] == [evil]
    assert page.by_id("decision-statement").text == 'ok "quoted" </blockquote><i>x</i>'
    assert evil in [bar for t in page.figures["fig-metrics"]["data"] for bar in t["x"]]


def test_nothing_loads_from_the_network(full_page: Page, full: dict[str, Any]) -> None:
    text = render_report(full)
    assert not re.search(r"<script[^>]*\ssrc\s*=", text, re.IGNORECASE)
    assert "<link" not in text.lower() and "@import" not in text
    for element in full_page.elements:
        for name in ("src", "href", "action", "data", "poster"):
            value = (element.attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), (element.tag, name, value)
    style = re.search(r"<style>(.*?)</style>", text, re.S)
    assert style is not None and "url(" not in style.group(1)
    scripts = [body for attrs, body in full_page.scripts if not attrs.get("id")]
    assert sum("Plotly" in body and len(body) > 1_000_000 for body in scripts) == 1


def test_decision_numbers_equal_results_json(full_page: Page, full: dict[str, Any]) -> None:
    decision = full["ensemble"]["decision"]
    assert full_page.by_id("decision-statement").text == decision["statement"]
    shown = {e.attrs["data-field"]: e for e in full_page.with_attr("data-field")}
    numeric = {k for k, v in decision.items() if isinstance(v, float)}
    assert set(shown) == numeric
    for name, element in shown.items():
        assert float(element.attrs["data-value"] or "nan") == decision[name], name
    gain = full_page.by_id("decision-relative_gain").text
    assert gain == f"{decision['relative_gain'] * 100:+.1f}%"
    assert full_page.by_id("decision-mean").text == f"{decision['mean']:.4f}"
    shown_p = float(full_page.by_id("decision-p_value").text)  # 2 significant digits or more
    assert shown_p == pytest.approx(decision["p_value"], rel=0.05)
    assert full_page.by_id("decision-ab-test").text == "yes"
    assert full_page.by_id("decision-slices-won").text == "5-19, 20-99"


def test_decision_of_the_best_model_when_the_ensemble_has_none(full: dict[str, Any]) -> None:
    results = copy.deepcopy(full)
    decision = results["ensemble"].pop("decision")
    results["itemknn"]["decision"] = {**decision, "model": "itemknn", "statement": "itemknn!"}
    assert _render(results).by_id("decision-statement").text == "itemknn!"


def test_metrics_table_shows_the_file_values_and_ci(full_page: Page, full: dict[str, Any]) -> None:
    models = [e.attrs["data-model"] for e in full_page.with_attr("data-model")]
    assert models == ["pop", "ensemble", "itemknn"]
    cells = full_page.with_attr("data-metric")
    assert len(cells) == 3 * 12  # every table metric, row by row
    for i, cell in enumerate(cells):
        value = full[models[i // 12]][f"{cell.attrs['data-metric']}@10"]
        assert float(cell.attrs["data-value"] or "nan") == value
        assert cell.text.startswith(f"{value:.4f}")
        if cell.attrs["data-metric"] == "ndcg":  # per-user metric: a CI around the mean
            low, high = map(float, re.findall(r"\d+\.\d+", cell.text)[1:])
            assert low < value < high
        if cell.attrs["data-metric"] == "coverage":  # list-level: no CI
            assert cell.text == f"{value:.4f}"
    assert full_page.by_id("metrics-table").text.count("(baseline)") == 1
    assert full_page.by_class("sig-up"), "the ensemble's NDCG gain over pop is significant here"


def test_charts_leave_nulls_out(full: dict[str, Any]) -> None:
    results = copy.deepcopy(full)
    results["itemknn"]["ild@10"] = None
    results["itemknn"]["per_user"]["ild@10"] = [None] * 60
    results["ensemble"]["slices"]["1-4"]["ndcg@10"] = float("nan")
    page = _render(results)
    bars = page.figures["fig-metrics"]["data"]
    ild = next(t for t in bars if t["name"] == "ild@10")
    assert "itemknn" not in ild["x"] and len(ild["x"]) == 2
    slices = next(t for t in page.figures["fig-history-slices"]["data"] if t["name"] == "ensemble")
    assert not any(label.startswith("1-4") for label in slices["x"])
    assert all(v is not None and math.isfinite(v) for v in slices["y"])


def test_marginal_gain_is_minus_the_leave_one_out_delta(full_page: Page) -> None:
    overall = full_page.figures["fig-marginal"]["data"][0]
    assert overall["name"].startswith("all")
    assert dict(zip(overall["x"], overall["y"], strict=True)) == pytest.approx(
        {"itemknn": 0.05, "covisit": 0.01, "pop": -0.001}
    )
    star = full_page.figures["fig-pruning"]["data"][-1]
    assert star["name"] == "recommended set" and star["x"] == [2]


def test_the_pruning_caption_states_the_rule_of_the_star(full_page: Page) -> None:
    """It said "the smallest set within noise of the best"; the rule is a relative tolerance
    on the validation NDCG (a step 1.2 SE above the previous one could be the star)."""
    from recsemble.ranking.selection import RECOMMEND_TOLERANCE

    caption = full_page.section_text("ensemble")
    assert f"the smallest set within {RECOMMEND_TOLERANCE:.1%} of the best validation" in caption


def test_bar_error_bars_are_the_bootstrap_ci_around_the_value(full: dict[str, Any]) -> None:
    from recsemble.evaluation.significance import bootstrap_means

    page = _render(full)
    ndcg = next(t for t in page.figures["fig-metrics"]["data"] if t["name"] == "ndcg@10")
    i = ndcg["x"].index("ensemble")
    values = np.array(full["ensemble"]["per_user"]["ndcg@10"])
    low, high = np.quantile(bootstrap_means(values, 1000, 0), [0.025, 0.975])
    assert ndcg["y"][i] + ndcg["error_y"]["array"][i] == pytest.approx(high)
    assert ndcg["y"][i] - ndcg["error_y"]["arrayminus"][i] == pytest.approx(low)


def test_intervals_use_the_runs_bootstrap_settings(full: dict[str, Any]) -> None:
    """The Δ columns followed protocol.bootstrap_resamples and seed; the CI under each value
    and the error bars were always 1000 resamples from seed 0, and the caption said 1000."""
    from recsemble.evaluation.significance import bootstrap_means

    results = copy.deepcopy(full)
    for entry in results.values():
        entry["meta"].update(bootstrap_resamples=50, seed=7)
    page = _render(results)
    ndcg = next(t for t in page.figures["fig-metrics"]["data"] if t["name"] == "ndcg@10")
    i = ndcg["x"].index("ensemble")
    values = np.array(full["ensemble"]["per_user"]["ndcg@10"])
    low, high = np.quantile(bootstrap_means(values, 50, 7), [0.025, 0.975])
    assert ndcg["y"][i] + ndcg["error_y"]["array"][i] == pytest.approx(high)
    assert ndcg["y"][i] - ndcg["error_y"]["arrayminus"][i] == pytest.approx(low)
    assert "(50 resamples)" in page.section_text("metrics")


def test_no_models_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no model entries"):
        write_report({}, tmp_path / "r.html")


def test_write_report_creates_the_folder(tmp_path: Path, full: dict[str, Any]) -> None:
    path = write_report(full, tmp_path / "deep" / "r.html", title="My <title>")
    assert path.exists()
    assert "<title>My &lt;title&gt;</title>" in path.read_text()


def test_a_sweep_line_wears_the_colour_of_the_model_it_re_ranks(full: dict[str, Any]) -> None:
    """Two models, each swept on two knobs: a line coloured by its position took another
    model's colour (itemknn's second knob drawn in the ensemble's red beside its star)."""
    results = copy.deepcopy(full)
    for owner in ("ensemble", "itemknn"):
        for stage, key in (("mmr", "lambda"), ("dpp", "theta")):
            for value in (0.0, 1.0):
                variant = copy.deepcopy(results["ensemble+mmr[lambda=0.5]"])
                variant["meta"] = {
                    **variant["meta"], "variant_of": owner, "stages": [stage],
                    "sweep": {"stage": stage, "key": key, "value": value},
                }  # fmt: skip
                results[f"{owner}+{stage}[{key}={value:g}]"] = variant
    traces = _render(results).figures["fig-tradeoffs"]["data"]
    shown = [t for t in traces if t.get("visible") is not False]
    stars = {
        t["name"]: t["marker"]["color"]
        for t in shown
        if t.get("marker", {}).get("symbol") == "star"
    }
    lines = {t["name"]: t["line"] for t in shown if "lines" in t["mode"]}
    assert set(lines) == {"ensemble mmr.lambda", "ensemble dpp.theta",
                          "itemknn mmr.lambda", "itemknn dpp.theta"}  # fmt: skip
    for name, line in lines.items():
        assert line["color"] == stars[name.split(" ")[0]], name
    assert lines["ensemble mmr.lambda"]["dash"] == lines["itemknn mmr.lambda"]["dash"]
    assert lines["ensemble dpp.theta"]["dash"] != lines["ensemble mmr.lambda"]["dash"]


def test_a_baseline_only_run_says_why_there_is_no_decision(full: dict[str, Any]) -> None:
    """`evaluate --models pop` is a run a user makes; its report told them to re-run
    evaluate to get the decision, which a re-run never writes for the baseline alone."""
    page = _render({"pop": copy.deepcopy(full["pop"])})
    text = page.section_text("decision")
    assert "only the baseline (pop) was evaluated" in text
    assert "Re-run" not in text and "--models ensemble" in text

"""`recsemble report` end to end on a results.json that `recsemble evaluate` wrote.

What evaluate writes grows (comparisons, item slices, ensemble analysis, calibration, the
decision): each part present in the file must be drawn, each part absent must be named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from recsemble.cli import app
from tests.report.conftest import CliReport
from tests.report.pages import Page, parse_page


def _load(report: CliReport) -> tuple[dict[str, Any], Page]:
    return json.loads(report.results.read_text()), parse_page(report.html.read_text())


def _notes(page: Page) -> str:
    return " ".join(" ".join(n.text.split()) for n in page.by_class("missing"))


def test_report_prints_where_it_wrote_and_the_size(cli_report: CliReport) -> None:
    size_mb = cli_report.html.stat().st_size / 1e6
    text = " ".join(cli_report.output.split())
    assert f"report written to {cli_report.html}" in text.replace("\n", "")
    assert f"({size_mb:.1f} MB)" in text


def test_every_part_of_the_file_is_drawn(cli_report: CliReport) -> None:
    results, page = _load(cli_report)
    ensemble = results["ensemble"]
    expected = {"fig-metrics", "fig-history-slices", "fig-tradeoffs"}  # always written
    if any("item_slices" in entry for entry in results.values()):
        expected.add("fig-item-slices")
    if "analysis" in ensemble:
        expected |= {"fig-overlap", "fig-marginal", "fig-pruning"}
    if "calibration" in ensemble:
        expected.add("fig-calibration")
    assert set(page.chart_ids) == expected
    assert set(page.figures) == expected
    bars = page.figures["fig-metrics"]["data"][0]
    assert bars["x"] == ["pop", "ensemble", "itemknn"]  # the plain models, not the variants
    assert bars["y"] == [results[m]["ndcg@10"] for m in bars["x"]]
    sweeps = {t["name"] for t in page.figures["fig-tradeoffs"]["data"]}
    assert {"ensemble mmr.lambda", "itemknn mmr.lambda", "ensemble+mmr"} <= sweeps


def test_absent_parts_are_named(cli_report: CliReport) -> None:
    results, page = _load(cli_report)
    notes = _notes(page)
    ensemble = results["ensemble"]
    if "decision" in ensemble:
        assert page.by_id("decision-statement").text == ensemble["decision"]["statement"]
    else:
        assert "no decision" in notes
    for key, note in (("analysis", "(analysis)"), ("calibration", "(calibration)")):
        assert (note in notes) == (key not in ensemble), key
    if not any("vs_baseline" in entry for entry in results.values()):
        assert "vs_baseline" in notes


def test_table_values_equal_the_file(cli_report: CliReport) -> None:
    results, page = _load(cli_report)
    models = [e.attrs["data-model"] for e in page.with_attr("data-model")]
    assert models == ["pop", "ensemble", "itemknn"]
    cells = page.with_attr("data-metric")
    per_row = len(cells) // len(models)
    for i, cell in enumerate(cells):
        value = results[models[i // per_row]][f"{cell.attrs['data-metric']}@10"]
        shown = cell.attrs.get("data-value")
        assert (None if shown is None else float(shown)) == value


def test_a_bad_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(app, ["report", str(bad), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "not valid JSON" in result.output and "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert not (tmp_path / "r.html").exists()


def test_the_preparation_settings_are_recorded_and_shown(tmp_path: Path) -> None:
    """A run on ratings >= 4 of users with 3+ interactions must not read as the protocol's
    default preparation: results.json's meta and the report's header say so."""
    rows = [f"u{u},i{(u * 3 + i) % 15},{i},{1 + (u + i) % 5}" for u in range(12) for i in range(9)]
    data = tmp_path / "rated.csv"
    data.write_text("user_id,item_id,timestamp,rating\n" + "\n".join(rows) + "\n")
    results, html = tmp_path / "r.json", tmp_path / "r.html"
    runner = CliRunner()
    sets = ["--set", "data.min_value=4", "--set", "protocol.min_user_interactions=3"]
    args = ["evaluate", "--dataset", str(data), "--models", "itemknn", "--json", str(results)]
    assert runner.invoke(app, [*args, *sets]).exit_code == 0
    meta = json.loads(results.read_text())["pop"]["meta"]
    assert (meta["min_value"], meta["min_user_interactions"]) == (4.0, 3)
    assert runner.invoke(app, ["report", str(results), "-o", str(html)]).exit_code == 0
    shown = " ".join(parse_page(html.read_text()).by_id("fact-protocol").text.split())
    assert (
        shown == "temporal-user, test fraction 0.2, users with >= 3 interactions, only values >= 4"
    )

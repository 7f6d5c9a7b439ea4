"""The report in headless Chromium, opened from disk (file://) with no network: every chart
renders, no console errors, the decision and table show results.json's numbers, the menus work.
Screenshots: report-top.png, report-full.png (the CLI's report), report-all-sections.png."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.browser import browser, console_errors, screenshot, wait_for
from tests.report.conftest import CliReport
from tests.report.sample import sample_results

__all__ = ["browser"]  # the fixture, imported for pytest
_WIDTH = 1400


def _open(driver: Any, path: Path) -> float:
    """Load the report and wait until plotly has drawn every chart; seconds it took."""
    from selenium.webdriver.common.by import By

    driver.set_window_size(_WIDTH, 1000)
    start = time.monotonic()
    driver.get(path.resolve().as_uri())
    charts = driver.find_elements(By.CSS_SELECTOR, ".chart")
    assert charts, "the report has no chart placeholders"

    def all_drawn() -> bool:
        return all(
            "js-plotly-plot" in (c.get_attribute("class") or "")
            and c.get_attribute("data-rendered") == "true"
            and c.find_elements(By.CSS_SELECTOR, ".main-svg")
            for c in charts
        )

    wait_for(all_drawn, timeout=60, what="every chart drawn by plotly")
    return time.monotonic() - start


def _full_page_screenshot(driver: Any, name: str) -> Path:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(_WIDTH, int(height) + 120)  # window chrome eats some of the height
    time.sleep(0.5)  # responsive charts redraw at the new size
    return screenshot(driver, name)


def test_the_cli_report_renders_offline(browser: Any, cli_report: CliReport) -> None:
    from selenium.webdriver.common.by import By

    results = json.loads(cli_report.results.read_text())
    seconds = _open(browser, cli_report.html)
    assert console_errors(browser) == []
    decision = results["ensemble"].get("decision")
    if decision:
        shown = browser.find_element(By.ID, "decision-statement").text
        assert shown == decision["statement"]
        gain = browser.find_element(By.ID, "decision-relative_gain")
        assert float(gain.get_attribute("data-value")) == decision["relative_gain"]
    else:
        note = browser.find_element(By.CSS_SELECTOR, "#decision .missing").text
        assert "no decision" in note and "recsemble evaluate" in note
    cell = browser.find_element(By.CSS_SELECTOR, 'td[data-metric="ndcg"]')  # pop's NDCG@10
    assert cell.text.splitlines()[0] == f"{results['pop']['ndcg@10']:.4f}"
    ticks = browser.find_elements(By.CSS_SELECTOR, "#fig-metrics .xtick text")
    assert [t.text for t in ticks] == ["pop", "ensemble", "itemknn"]
    screenshot(browser, "report-top")
    _full_page_screenshot(browser, "report-full")
    assert seconds < 30, f"the report took {seconds:.1f} s to draw"


def test_the_metric_menu_switches_the_chart(browser: Any, cli_report: CliReport) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, cli_report.html)

    def y_title() -> str:
        return str(browser.find_element(By.CSS_SELECTOR, "#fig-metrics .ytitle").text)

    assert y_title().startswith("ndcg@10")
    browser.find_element(By.CSS_SELECTOR, "#fig-metrics .updatemenu-header").click()
    options = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#fig-metrics .updatemenu-dropdown-button"),
        what="the metric menu's options",
    )
    next(o for o in options if o.text == "recall@10").click()
    wait_for(lambda: y_title().startswith("recall@10"), what="the recall@10 chart")
    assert console_errors(browser) == []


def test_every_section_renders(browser: Any, tmp_path: Path) -> None:
    """All of results.json's parts (a hand-built file until evaluate writes them all)."""
    from selenium.webdriver.common.by import By

    from recsemble.report import write_report

    results = sample_results()
    path = write_report(results, tmp_path / "report.html")
    _open(browser, path)
    assert console_errors(browser) == []
    drawn = {c.get_attribute("id") for c in browser.find_elements(By.CSS_SELECTOR, ".chart")}
    assert len(drawn) == 8 and not browser.find_elements(By.CSS_SELECTOR, ".missing")
    statement = browser.find_element(By.ID, "decision-statement").text
    assert statement == results["ensemble"]["decision"]["statement"]
    legend = browser.find_elements(By.CSS_SELECTOR, "#fig-calibration .legendtext")
    assert "ensemble (ECE 0.020)" in [t.text for t in legend]
    assert browser.find_element(By.ID, "prune-line").text.startswith("[ensemble]\nmembers")
    _full_page_screenshot(browser, "report-all-sections")


def test_a_phone_reads_every_chart(browser: Any, tmp_path: Path) -> None:
    """At phone width (375 px) a legend at the side took most of a chart (the calibration plot
    was a sliver), the item slices' two subplot titles ran into each other and the member
    table widened the page: every plot area must keep most of its chart's width, the
    titles apart, and nothing but the tables' own scroll boxes wider than the screen."""
    from recsemble.report import write_report

    path = write_report(sample_results(), tmp_path / "report.html")
    metrics = {"width": 375, "height": 800, "deviceScaleFactor": 1, "mobile": True}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        _open(browser, path)
        plots = browser.execute_script(
            "return Array.from(document.querySelectorAll('.chart')).map(function (c) {"
            "  return [c.id, c._fullLayout._size.w / c.clientWidth]; })"
        )
        # Axes, colour bars and a second y axis take up to about half of it at this width;
        # a side legend left the calibration and trade-off plots a fifth.
        narrow = {chart: round(share, 2) for chart, share in plots if share < 0.45}
        assert not narrow, f"plot areas squeezed to these shares of their chart: {narrow}"
        titles = browser.execute_script(
            "return Array.from(document.querySelectorAll('#fig-item-slices .annotation'))"
            ".map(function (a) { var r = a.getBoundingClientRect();"
            "  return [r.left, r.top, r.right, r.bottom]; })"
        )
        assert len(titles) == 2
        (l1, t1, r1, b1), (l2, t2, r2, b2) = titles
        assert r1 <= l2 or r2 <= l1 or b1 <= t2 or b2 <= t1, "the subplot titles overlap"
        assert all(left >= 0 and right <= 375 for left, _, right, _ in titles)
        page_width = browser.execute_script("return document.documentElement.scrollWidth")
        assert page_width <= 375
        assert console_errors(browser) == []
        screenshot(browser, "report-phone")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

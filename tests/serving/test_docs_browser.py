"""The API docs page renders in a browser with no internet: Swagger UI is served by the app."""

from __future__ import annotations

from typing import Any

from tests.browser import browser, console_errors, screenshot, wait_for
from tests.serving.conftest import Server

__all__ = ["browser"]  # the fixture, imported for pytest


def test_docs_page_renders_offline(server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/docs")
    title = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text,
        what="the Swagger UI title",
    )
    assert title.startswith("recsemble")
    operations = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    paths = {op.text.replace("\u200b", "") for op in operations}
    assert "/users/{user_id}/recommendations" in paths and "/events" in paths
    html = browser.page_source
    assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html
    assert console_errors(browser) == []
    screenshot(browser, "api-docs")

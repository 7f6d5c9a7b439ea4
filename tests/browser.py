"""Headless Chromium for the browser tests (dashboard, report), driven by Selenium.

Uses Debian's `chromium` and `chromium-driver` (`make test` installs them when root). Without
them the browser tests skip with the reason, except in CI (env CI set), where they fail.
Screenshots go to the artifacts folder: $RECSEMBLE_TEST_ARTIFACTS, default out/test-artifacts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

_T = TypeVar("_T")
ARTIFACTS = Path(
    os.environ.get(
        "RECSEMBLE_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "out" / "test-artifacts"
    )
)
_CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _binaries() -> tuple[str, str] | None:
    driver = shutil.which("chromedriver")
    browser = next((b for b in map(shutil.which, _CHROMIUM) if b), None)
    return (browser, driver) if browser and driver else None


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests: `make test` installs them)")
    pytest.skip(reason)


def new_driver(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium that records the page's console messages."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed")
    found = _binaries()
    if found is None:
        _missing("chromium and chromedriver are not installed (apt-get install chromium-driver)")
    assert found is not None
    browser, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def console_errors(driver: Any) -> list[str]:
    """The console's SEVERE messages since the last call (reading the log drains it)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver: Any, name: str) -> Path:
    """Save the whole window as <artifacts>/<name>.png and return the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(check: Callable[[], _T | None], timeout: float = 20.0, what: str = "") -> _T:
    """Poll `check` until it returns something truthy; fail with `what` on timeout."""
    import time

    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the page may be mid-update: a stale element, say
            last_error = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or check}: {last_error}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = new_driver()
    try:
        yield driver
    finally:
        driver.quit()

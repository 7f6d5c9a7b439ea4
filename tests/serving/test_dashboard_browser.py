"""The dashboard in headless Chromium against a real server with keys and two versions.

One user journey, in order (the tests share the page and the server): enter the read key,
pick a user, click an item (refused until the admin key is entered), browse similar items,
watch the model panel, publish the other version and roll back. Every check compares what
the page shows with what the API answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.browser import browser, console_errors, screenshot, wait_for

from .conftest import ADMIN_KEY, READ_KEY, Server, start_server

__all__ = ["browser"]  # the fixture, imported to be used here
RESULTS = {
    "ensemble": {
        "ndcg@10": 0.2468, "recall@10": 0.3579, "hit@10": 0.5, "coverage@10": 0.9,
        "meta": {"k": [10]},
        "decision": {"statement": "The ensemble beats pop on ndcg@10: ship it to an A/B test."},
    }
}  # fmt: skip


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, model_dirs: tuple[Path, Path]
) -> Iterator[tuple[Server, str]]:
    """A keyed server serving v1 (with its evaluation), and v2 registered beside it."""
    from recsemble.registry import ModelRegistry

    tmp = tmp_path_factory.mktemp("dashboard-browser")
    (tmp / "results.json").write_text(json.dumps(RESULTS))
    running = start_server(
        tmp, model_dirs[0], keys=True, extra=("--results", str(tmp / "results.json"))
    )
    second = ModelRegistry(running.registry).add(model_dirs[1])
    yield running, second
    running.stop()


def _api(server: Server, path: str, **params: Any) -> Any:
    return server.get_json(path, READ_KEY, **params)


def _texts(driver: Any, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, selector)]


def _ids(driver: Any, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        e.get_attribute("data-item-id") for e in driver.find_elements(By.CSS_SELECTOR, selector)
    ]


def _find(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def _use_key(driver: Any, key: str) -> None:
    field = _find(driver, "#api-key")
    field.clear()
    field.send_keys(key)
    _find(driver, "#save-key").click()
    wait_for(lambda: not _find(driver, "#error").is_displayed(), what="the error to clear")


def _chosen_user(server: Server) -> str:
    """The listed user with the longest history (a rich page)."""
    users = _api(server, "/users", limit=50)["users"]
    return str(max(users, key=lambda u: u["history_length"])["user_id"])


def test_the_key_field_opens_the_api(browser: Any, site: tuple[Server, str]) -> None:
    server, _ = site
    browser.get(f"{server.url}/dashboard")
    error = wait_for(lambda: _find(browser, "#error-text").text, what="the missing-key error")
    assert "401" in error and "Enter the API key" in error
    console_errors(browser)  # the 401s above were the point; from here on, none
    _use_key(browser, READ_KEY)
    total = _api(server, "/users", limit=1)["total"]
    wait_for(lambda: _find(browser, "#user-count").text.startswith(f"{total} users"), what="users")
    assert browser.execute_script("return localStorage.getItem('recsemble.apiKey')") == READ_KEY
    assert console_errors(browser) == []


def test_picking_a_user_shows_history_explained_recommendations_and_members(
    browser: Any, site: tuple[Server, str]
) -> None:
    server, _ = site
    user = _chosen_user(server)
    _find(browser, f".user-btn[data-user-id='{user}']").click()
    recs = _api(server, f"/users/{user}/recommendations", k=10, explain="true")["items"]
    expected = [r["item_id"] for r in recs]
    wait_for(lambda: _ids(browser, "#recs > li") == expected, what="the recommendations")
    assert _find(browser, "#user-title").text == user
    for card, rec in zip(_texts(browser, "#recs > li"), recs, strict=True):
        assert rec["explanation"]["text"] in card
        for member in rec["explanation"]["members"]:
            assert member in card  # each proposing member's contribution row
    contribution_rows = _texts(browser, "#recs > li:first-child .contrib .member")
    assert contribution_rows and set(contribution_rows) == set(recs[0]["explanation"]["members"])
    members = _api(server, f"/users/{user}/members", k=10)["members"]
    wait_for(lambda: len(_texts(browser, ".member-col")) == len(members), what="member columns")
    for member in members:
        column = f".member-col[data-member='{member['label']}'] li"
        assert _ids(browser, column) == [i["item_id"] for i in member["items"]]
    history = _api(server, f"/users/{user}/history", limit=20)
    assert _ids(browser, "#history tbody tr") == [e["item_id"] for e in history["events"]]
    assert f"of {history['total']}" in _find(browser, "#history-count").text
    screenshot(browser, "dashboard-user")
    assert console_errors(browser) == []


def test_clicking_an_item_posts_an_event_and_changes_the_list(
    browser: Any, site: tuple[Server, str]
) -> None:
    server, _ = site
    user = _find(browser, "#user-title").text
    before = _ids(browser, "#recs > li")
    clicked = before[0]
    button = f"#recs > li[data-item-id='{clicked}'] .click-btn"
    _find(browser, button).click()  # with the read key: refused, and the page says so
    error = wait_for(lambda: _find(browser, "#error-text").text, what="the refusal")
    assert "403" in error and "admin key" in error and "POST /events" in error
    assert _ids(browser, "#recs > li") == before
    assert _api(server, f"/users/{user}/history", limit=1)["events"][0]["live"] is False
    console_errors(browser)  # the 403 was the point
    _use_key(browser, ADMIN_KEY)
    wait_for(lambda: _ids(browser, "#recs > li") == before, what="the reloaded page")
    _find(browser, button).click()
    wait_for(lambda: _find(browser, "#recs-change").is_displayed(), what="the change note")
    assert f"click on {clicked}" in _find(browser, "#recs-change").text
    after = _ids(browser, "#recs > li")
    assert clicked not in after and after != before
    newest = _find(browser, "#history tbody tr:first-child")
    # The click posts the model's lightest event type (view=1 in the synthetic data's table).
    assert newest.get_attribute("data-item-id") == clicked and "view" in newest.text
    latest = _api(server, f"/users/{user}/history", limit=1)["events"][0]
    assert (latest["item_id"], latest["type"], latest["live"]) == (clicked, "view", True)
    accepted = _api(server, "/stats")["events"]["accepted"]
    assert accepted == 1  # the refused click stored nothing
    wait_for(lambda: _find(browser, "#events-accepted").text.startswith(f"{accepted} "))
    screenshot(browser, "dashboard-after-click")
    # The server also refreshes the user's pool in the background with the click folded in,
    # so the list may move once more: reloaded, the page shows what the API answers then.
    wait_for(lambda: _page_matches_api(browser, server, user), what="the settled list")
    assert clicked not in _ids(browser, "#recs > li")
    assert console_errors(browser) == []


def _page_matches_api(driver: Any, server: Server, user: str) -> bool:
    answer = _api(server, f"/users/{user}/recommendations", k=10, explain="true")["items"]
    if _ids(driver, "#recs > li") == [r["item_id"] for r in answer]:
        return True
    _find(driver, f".user-btn[data-user-id='{user}']").click()  # reload the user's view
    return False


def test_similar_items_are_shown(browser: Any, site: tuple[Server, str]) -> None:
    server, _ = site
    item = _ids(browser, "#recs > li")[0]
    _find(browser, f"#recs > li[data-item-id='{item}'] .similar-btn").click()
    expected = [i["item_id"] for i in _api(server, f"/items/{item}/similar", k=10)["items"]]
    wait_for(lambda: _ids(browser, "#similar > li") == expected, what="the similar items")
    assert item in _find(browser, "#similar-title").text
    screenshot(browser, "dashboard-similar")
    assert console_errors(browser) == []


def test_model_panel_shows_versions_live_figures_and_switches(
    browser: Any, site: tuple[Server, str]
) -> None:
    server, second = site
    first = _api(server, "/models")["serving"]
    assert _find(browser, "#serving-version").text == first
    serving_card = _find(browser, f".version[data-version='{first}']").text
    assert "ndcg@10 0.247" in serving_card and "ship it to an A/B test" in serving_card
    assert "no evaluation stored" in _find(browser, f".version[data-version='{second}']").text
    requests = int(_find(browser, "#requests-total").text)
    wait_for(lambda: int(_find(browser, "#requests-total").text) > requests, what="live figures")
    assert "ms" in _find(browser, "#latency").text and _texts(browser, "#route-stats tbody tr")

    _find(browser, f".publish-btn[data-version='{second}']").click()  # the admin key is in
    wait_for(lambda: _find(browser, "#serving-version").text == second, 60, "the new version")
    assert _api(server, "/models")["serving"] == second
    wait_for(lambda: f"model {second}" in _find(browser, "#recs-meta").text, what="new answers")
    screenshot(browser, "dashboard-models")
    _find(browser, "#rollback").click()
    wait_for(lambda: _find(browser, "#serving-version").text == first, 60, "the rollback")
    assert _api(server, "/models")["serving"] == first
    assert console_errors(browser) == []


def test_a_version_published_elsewhere_reaches_the_users_list(
    browser: Any, site: tuple[Server, str]
) -> None:
    """Another client (curl, a second dashboard) publishes a version: the model panel
    followed within a poll, but the user's list stayed the old version's answer."""
    server, second = site
    first = _api(server, "/models")["serving"]
    user = _find(browser, "#user-title").text
    assert f"model {first}" in _find(browser, "#recs-meta").text
    with server.client(ADMIN_KEY) as client:
        assert client.post(f"/admin/models/{second}/publish").status_code == 200
        try:
            wait_for(lambda: _find(browser, "#serving-version").text == second, what="the poll")
            wait_for(lambda: f"model {second}" in _find(browser, "#recs-meta").text,
                     what="the user's list from the new version")  # fmt: skip
            answer = _api(server, f"/users/{user}/recommendations", k=10, explain="true")
            assert _ids(browser, "#recs > li") == [i["item_id"] for i in answer["items"]]
        finally:
            assert client.post("/admin/rollback").status_code == 200
    assert console_errors(browser) == []


# Holds back the answers about one user for 2 s, as a slow network or a slow first request
# for that user would: the page's own fetch, wrapped in the real browser.
_SLOW_USER = """
const slow = arguments[0];
const fetched = window.fetch;
window.fetch = (url, options) => fetched(url, options).then((response) =>
  String(url).includes(`/users/${slow}/`)
    ? new Promise((done) => setTimeout(() => done(response), 2000)) : response);
"""


def test_a_late_answer_about_the_previous_user_is_not_shown(
    browser: Any, site: tuple[Server, str]
) -> None:
    """Clicking user A then user B at once: A's answers, arriving last, replaced B's lists
    under the title 'User B'."""
    server, _ = site
    users = [u["user_id"] for u in _api(server, "/users", limit=3)["users"]]
    first, second = users[0], users[1]
    serving = _api(server, "/models")["serving"]  # the page has seen the last version change
    wait_for(lambda: _find(browser, "#serving-version").text == serving, what="the version")
    browser.execute_script(_SLOW_USER, first)
    try:
        _find(browser, f".user-btn[data-user-id='{first}']").click()
        _find(browser, f".user-btn[data-user-id='{second}']").click()
        answer = _api(server, f"/users/{second}/recommendations", k=10, explain="true")
        expected = [i["item_id"] for i in answer["items"]]
        wait_for(lambda: _ids(browser, "#recs > li") == expected, what="the second user's list")
        time.sleep(3)  # A's held-back answers have arrived by now
        assert _find(browser, "#user-title").text == second
        assert _ids(browser, "#recs > li") == expected
        history = _api(server, f"/users/{second}/history", limit=20)["events"]
        assert _ids(browser, "#history tbody tr") == [e["item_id"] for e in history]
    finally:
        browser.refresh()  # the page's own fetch again
    assert console_errors(browser) == []


# Holds back the user list's answer for one search prefix for 2 s (see _SLOW_USER).
_SLOW_SEARCH = """
const slow = `prefix=${encodeURIComponent(arguments[0])}`;
const fetched = window.fetch;
window.heldBack = false;
window.fetch = (url, options) => fetched(url, options).then((response) => {
  if (!String(url).endsWith(slow)) return response;
  window.heldBack = true;
  return new Promise((done) => setTimeout(() => done(response), 2000));
});
"""


def test_a_late_answer_to_an_earlier_search_is_not_shown(
    browser: Any, site: tuple[Server, str]
) -> None:
    """Typing 'u00000', then '1': the list for 'u00000', arriving last, replaced the one
    for 'u000001' under the search box saying 'u000001'."""
    server, _ = site
    users = [u["user_id"] for u in _api(server, "/users", limit=2)["users"]]
    wanted = users[1]
    wait_for(lambda: _find(browser, "#user-count").text, what="the page's first load")
    time.sleep(1)  # and its second user list, when its first poll saw the version first
    browser.execute_script(_SLOW_SEARCH, wanted[:-1])
    search = _find(browser, "#user-search")
    try:
        search.clear()
        search.send_keys(wanted[:-1])
        wait_for(lambda: browser.execute_script("return window.heldBack"), what="the search")
        search.send_keys(wanted[-1])
        expected = [u["user_id"] for u in _api(server, "/users", prefix=wanted)["users"]]
        buttons = ".user-btn"
        wait_for(lambda: [b.get_attribute("data-user-id") for b in
                          browser.find_elements("css selector", buttons)] == expected,
                 what="the list for the full prefix")  # fmt: skip
        time.sleep(3)  # the earlier search's held-back answer has arrived by now
        shown = [
            b.get_attribute("data-user-id") for b in browser.find_elements("css selector", buttons)
        ]
        assert shown == expected
    finally:
        search.clear()
        browser.refresh()
    assert console_errors(browser) == []


def test_a_lone_model_is_not_called_an_ensemble(
    browser: Any, tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """Serving one generator (`train --model itemknn`), the page titled its list
    '(ensemble, explained)' and the column under it 'Each member alone'."""
    from .conftest import _cli

    model = tmp_path / "itemknn"
    _cli("train", "--dataset", str(model_dirs[0].parent / "data"), "--model", "itemknn",
         "--out", str(model))  # fmt: skip
    lone = start_server(tmp_path, model)
    try:
        user = str(lone.get_json("/users", limit=1)["users"][0]["user_id"])
        browser.get(f"{lone.url}/dashboard#user={user}")
        wait_for(lambda: _find(browser, ".member-col").is_displayed(), what="the lists")
        recs_heading = _find(browser, ".column.wide h3").text
        assert recs_heading == "Recommendations (itemknn alone, explained)"
        heading = _find(browser, "#members").find_element("xpath", "preceding-sibling::h3[1]")
        assert heading.text.startswith("The model alone") and "ensemble" not in heading.text
        assert console_errors(browser) == []
    finally:
        lone.stop()


def test_a_first_published_version_fills_the_page_started_without_one(
    browser: Any, tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """A server started with no model: the page says so. Once a version is published, the
    panel showed it serving but the user list stayed empty under 'no model is loaded yet'
    until the page was reloaded."""
    from recsemble.registry import ModelRegistry

    empty = start_server(tmp_path, None, ready_path="/health/live")
    try:
        browser.get(f"{empty.url}/dashboard")
        error = wait_for(lambda: _find(browser, "#error-text").text, what="the no-model alert")
        assert "no model is loaded yet" in error
        console_errors(browser)  # the 503 was the point
        version = ModelRegistry(empty.registry).add(model_dirs[0])
        with empty.client() as client:
            assert client.post(f"/admin/models/{version}/publish").status_code == 200
        total = empty.get_json("/users", limit=1)["total"]
        wait_for(lambda: _find(browser, "#serving-version").text == version, what="the poll")
        wait_for(lambda: _find(browser, "#user-count").text.startswith(f"{total} users"),
                 what="the users of the published version")  # fmt: skip
        wait_for(lambda: not _find(browser, "#error").is_displayed(), what="the alert to go")
        assert console_errors(browser) == []
    finally:
        empty.stop()


def test_the_outage_alert_goes_once_the_server_answers_again(
    browser: Any, tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """The live panel polls /stats: while the server is down the page says it does not
    answer; once a restarted server answers again, that alert must not stay beside fresh
    figures (an engineer would take the server for still down)."""
    first = start_server(tmp_path, model_dirs[0])
    port = int(first.url.rsplit(":", 1)[1])
    try:
        browser.get(f"{first.url}/dashboard")
        wait_for(lambda: _find(browser, "#requests-total").text.isdigit(), what="live figures")
    finally:
        first.stop()
    error = wait_for(lambda: _find(browser, "#error-text").text, what="the outage alert")
    assert "GET /stats" in error and "no answer from the server" in error
    console_errors(browser)  # the failed polls were the point
    again = start_server(tmp_path, model_dirs[0], port=port)  # a restart: same port and store
    try:
        wait_for(lambda: not _find(browser, "#error").is_displayed(), what="the alert to go")
        assert _find(browser, "#error-text").text == ""
    finally:
        again.stop()

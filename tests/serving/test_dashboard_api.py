"""The dashboard's API against a real server: user listing, history, member lists, live
stats, versions with their evaluation summary (`serve --results`), the open pages
(/dashboard, /report) and the keys on everything else."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recsemble.serving.app import create_app
from recsemble.serving.state import ServeSettings
from recsemble.serving.stats import Buckets, quantile

from .conftest import ADMIN_KEY, READ_KEY, Server, start_server

STATEMENT = "The ensemble beats pop on ndcg@10 by 40% (95% CI 20% to 60%): ship it."
#: An evaluation entry for the served model: the first cut-off (10) must be the one stored.
RESULTS = {
    "pop": {"ndcg@10": 0.11, "recall@10": 0.12, "meta": {"k": [10, 20], "role": "baseline"}},
    "ensemble": {
        "ndcg@10": 0.31, "recall@10": 0.42, "hit@10": 0.63, "coverage@10": 0.55,
        "precision@10": 0.07, "ndcg@20": 0.91, "recall@20": 0.92, "hit@20": None,
        "meta": {"k": [10, 20], "model": "ensemble", "role": "model"},
        "decision": {"model": "ensemble", "metric": "ndcg@10", "statement": STATEMENT},
    },
}  # fmt: skip
HEADLINE = {"ndcg@10": 0.31, "recall@10": 0.42, "hit@10": 0.63, "coverage@10": 0.55}
REPORT_HTML = "<!doctype html><title>report</title><h1>Evaluation report 7f3a</h1>"
MEMBERS = ["pop", "pop-trending", "itemknn", "covisit"]  # conftest's TINY_ENSEMBLE


@pytest.fixture(scope="module")
def dash(
    tmp_path_factory: pytest.TempPathFactory, model_dirs: tuple[Path, Path]
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("dashboard-api")
    (tmp / "results.json").write_text(json.dumps(RESULTS))
    (tmp / "report.html").write_text(REPORT_HTML)
    extra = ("--results", str(tmp / "results.json"), "--report", str(tmp / "report.html"))
    running = start_server(tmp, model_dirs[0], keys=True, extra=extra)
    yield running
    running.stop()


def _get(server: Server, path: str, **params: Any) -> Any:
    return server.get_json(path, READ_KEY, **params)


@pytest.fixture(scope="module")
def loaded(model_dirs: tuple[Path, Path]) -> Any:
    """The served model, loaded here too: what the API says is checked against it."""
    from recsemble.ranking.persistence import load_model

    return load_model(model_dirs[0])


# -- keys and pages -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    ["/users", "/users/u000001/history", "/users/u000001/members", "/models", "/stats"],
)
def test_dashboard_reads_need_the_read_key(dash: Server, path: str) -> None:
    with dash.client() as anonymous, dash.client("wrong") as wrong, dash.client(READ_KEY) as ok:
        assert anonymous.get(path).status_code == 401
        assert wrong.get(path).status_code == 403
        assert ok.get(path).status_code in (200, 404)  # 404: that user id may not exist


def test_pages_are_open_but_only_to_reads(dash: Server) -> None:
    with dash.client() as client:
        page = client.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert (
            "/dashboard/app.js" in page.text
            and "default-src 'self'" in page.headers["content-security-policy"]
        )
        scripts = (("api.js", "text/javascript"), ("app.js", "text/javascript"))
        assets = (*scripts, ("style.css", "text/css"))
        for asset, kind in assets:
            response = client.get(f"/dashboard/{asset}")
            assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert client.get("/dashboard/..%2Fstate.py").status_code == 404
        assert client.get("/dashboard/index.html.bak").status_code == 404
        root = client.get("/", follow_redirects=False)
        assert root.status_code == 307 and root.headers["location"] == "/dashboard"
        report = client.get("/report")
        assert report.status_code == 200 and report.text == REPORT_HTML
        assert client.post("/dashboard").status_code == 401  # open to GET only


def test_no_external_url_in_the_dashboard() -> None:
    from recsemble.serving.dashboard import DASHBOARD_DIR

    for path in DASHBOARD_DIR.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


def test_report_is_404_when_not_given(tmp_path: Path) -> None:
    settings = ServeSettings(store_url=f"sqlite:///{tmp_path / 's.db'}", registry_dir=tmp_path)
    with TestClient(create_app(settings)) as client:  # no model: the pages still answer
        missing = client.get("/report")
        assert missing.status_code == 404 and "--report" in missing.json()["error"]["message"]
        assert client.get("/dashboard").status_code == 200


# -- users, history, members ----------------------------------------------------------------
def test_users_are_listed_by_prefix_with_their_history_length(dash: Server, loaded: Any) -> None:
    ids = [str(u) for u in loaded.catalog.users.ids]
    lengths = loaded.model.histories_.lengths
    prefix = ids[0][:-1]  # the first user's id minus its last character
    body = _get(dash, "/users", prefix=prefix, limit=3)
    assert body["total"] == sum(1 for u in ids if u.startswith(prefix)) > 3
    assert [u["user_id"] for u in body["users"]] == [u for u in ids if u.startswith(prefix)][:3]
    for user in body["users"]:
        fitted = int(lengths[ids.index(user["user_id"])])
        assert user["history_length"] == fitted + user["live_events"]
    assert _get(dash, "/users", prefix="no-such-prefix") == {"total": 0, "users": []}
    assert len(_get(dash, "/users", limit=1000)["users"]) == len(ids)


def test_history_is_newest_first_with_titles_and_event_types(dash: Server, loaded: Any) -> None:
    catalog, histories = loaded.catalog, loaded.model.histories_
    idx = 5
    user = str(catalog.users.ids[idx])
    lo, hi = histories.indptr[idx], histories.indptr[idx + 1]
    body = _get(dash, f"/users/{user}/history", limit=4)
    assert body["user_known"] is True and body["total"] == hi - lo > 4
    events = body["events"]
    assert [e["timestamp"] for e in events] == sorted(histories.timestamps[lo:hi])[-4:][::-1]
    for event in events:
        assert event["title"] == catalog.titles[catalog.items.idx_of(event["item_id"])]
        assert catalog.event_weights[event["type"]] == event["weight"] and not event["live"]
    with dash.client(READ_KEY) as client:
        for path in ("/users/nobody-at-all/history", "/users/nobody-at-all/members"):
            missing = client.get(path)
            assert (
                missing.status_code == 404 and "nobody-at-all" in missing.json()["error"]["message"]
            )


def test_member_lists_are_what_each_member_alone_recommends(dash: Server, loaded: Any) -> None:
    user = str(loaded.catalog.users.ids[7])
    body = _get(dash, f"/users/{user}/members", k=5)
    assert body["ensemble"] is True and body["model_version"]
    assert [m["label"] for m in body["members"]] == MEMBERS
    idx = loaded.catalog.users.idx_of(user)
    for entry in body["members"]:
        member = loaded.model.members_[entry["label"]]
        alone = member.recommend(np.array([idx]), 5).row(0)
        expected = [str(i) for i in loaded.catalog.items.to_ids(alone.items)]
        assert [i["item_id"] for i in entry["items"]] == expected, entry["label"]
        assert [i["rank"] for i in entry["items"]] == list(range(1, len(expected) + 1))


def test_an_event_shows_in_history_member_lists_and_stats(dash: Server) -> None:
    user = _get(dash, "/users", limit=1)["users"][0]["user_id"]
    before_stats = _get(dash, "/stats")
    itemknn = next(m for m in _get(dash, f"/users/{user}/members")["members"]
                   if m["label"] == "itemknn")  # fmt: skip
    clicked = itemknn["items"][0]["item_id"]
    kind = before_stats["click_event_type"]
    assert kind == "view"  # the lightest type of the synthetic data's view=1, cart=3, purchase=5
    event = {"event_id": str(uuid.uuid4()), "user_id": user, "item_id": clicked, "type": kind}
    with dash.client(ADMIN_KEY) as admin:
        assert admin.post("/events", json={"events": [event]}).json()["accepted"] == 1
    latest = _get(dash, f"/users/{user}/history", limit=1)["events"][0]
    assert (latest["item_id"], latest["type"], latest["live"]) == (clicked, kind, True)
    after = next(m for m in _get(dash, f"/users/{user}/members")["members"]
                 if m["label"] == "itemknn")  # fmt: skip
    assert clicked not in [i["item_id"] for i in after["items"]]
    assert _get(dash, "/users", prefix=user, limit=1)["users"][0]["live_events"] == 1
    stats = _get(dash, "/stats")
    assert stats["events"]["accepted"] == before_stats["events"]["accepted"] + 1
    assert stats["requests_total"] > before_stats["requests_total"]
    posted = [r for r in stats["requests"] if r["route"] == "/events" and r["status"] == 200]
    assert posted and posted[0]["method"] == "POST" and posted[0]["count"] >= 1
    latency = stats["latency"]
    assert latency["count"] >= 1 and 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert stats["serving"] and stats["uptime_s"] > 0 and stats["report_available"] is True


# -- versions and their evaluation ----------------------------------------------------------
def test_results_are_stored_with_the_version_and_shown(dash: Server) -> None:
    models = _get(dash, "/models")
    (version,) = models["versions"]
    assert version["version"] == models["serving"] == models["current"]
    assert version["serving"] and version["current"] and version["created_at"]
    assert version["metrics"] == HEADLINE
    assert version["evaluated_as"] == "ensemble" and version["decision"] == STATEMENT
    with dash.client(ADMIN_KEY) as admin:
        listed = admin.get("/admin/models").json()["versions"][0]
    assert listed["metrics"] == HEADLINE  # numbers only: the statement is a text


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "recsemble", "serve", "--port", "9", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    done.stderr = " ".join(done.stderr.split())  # the console wraps long lines
    return done


def test_results_without_the_model_entry_stop_serve(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"pop": RESULTS["pop"], "itemknn": RESULTS["ensemble"]}))
    done = _serve("--model", str(model_dirs[0]), "--results", str(results),
                  "--registry", str(tmp_path / "registry"))  # fmt: skip
    assert done.returncode == 2 and "no entry 'ensemble'" in done.stderr
    assert "itemknn, pop" in done.stderr
    alone = _serve("--results", str(results))
    assert alone.returncode == 2 and "--results describes the --model it comes with" in alone.stderr


# -- latency percentiles --------------------------------------------------------------------
def test_quantiles_interpolate_inside_the_bucket() -> None:
    # 10 requests under 10 ms, 10 between 10 and 50 ms, none slower (cumulative counts).
    buckets = Buckets([0.01, 0.05, float("inf")], [10, 20, 20])
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.75, buckets) == pytest.approx(0.03)
    assert quantile(0.25, buckets) == pytest.approx(0.005)
    slow = Buckets([0.01, float("inf")], [0, 4])  # all past the last finite bound
    assert quantile(0.99, slow) == pytest.approx(0.01)
    assert quantile(0.5, Buckets([0.01, float("inf")], [0, 0])) is None


# -- in process -----------------------------------------------------------------------------
def test_a_lone_generator_is_its_one_member(tmp_path: Path, model_dirs: tuple[Path, Path]) -> None:
    from typer.testing import CliRunner

    from recsemble.cli import app
    from recsemble.pipeline import Recommender
    from recsemble.recommender.browse import member_lists

    data = model_dirs[0].parent / "data"
    trained = CliRunner().invoke(app, ["train", "--dataset", str(data), "--model", "itemknn",
                                       "--out", str(tmp_path / "knn")])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    rec = Recommender.load(tmp_path / "knn")
    try:
        user = str(rec.users.ids[3])
        (only,) = member_lists(rec, user, 5)
        alone = rec.serving.model.recommend(np.array([3]), 5).row(0)
        assert (only.label, only.generator) == ("itemknn", "itemknn")
        assert [r.item_id for r in only.items] == list(rec.items.ids.to_ids(alone.items))
    finally:
        rec.close()


def test_event_types_are_named_only_where_the_weight_is_unambiguous() -> None:
    from recsemble.recommender.browse import fitted_event_types

    assert fitted_event_types({"view": 1.0, "click": 1.0, "buy": 5.0, "cart": 0.3}) == {
        5.0: "buy",
        float(np.float32(0.3)): "cart",
    }

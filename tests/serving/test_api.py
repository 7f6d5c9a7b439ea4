"""The HTTP API against a real server process: events, catalog, recommendations, limits."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from .conftest import Server


def _known_user_and_items(model: Path) -> tuple[str, list[str]]:
    ids = json.loads((model / "ids.json").read_text())
    return str(ids["users"][0]), [str(i) for i in ids["items"]]


def _items(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [entry["item_id"] for entry in response.json()["items"]]


def test_health_and_openapi(server: Server) -> None:
    with server.client() as client:
        assert client.get("/health/live").json()["status"] == "live"
        assert client.get("/health/ready").status_code == 200
        spec = client.get("/openapi.json").json()
        assert "/users/{user_id}/recommendations" in spec["paths"]
        metrics = client.get("/metrics").text
        assert "recsemble_request_seconds_bucket" in metrics
        assert "recsemble_model_info{" in metrics


def test_an_event_removes_its_item_from_the_next_answer(
    server: Server, model_dirs: tuple[Path, Path]
) -> None:
    user, _ = _known_user_and_items(model_dirs[0])
    with server.client() as client:
        before = _items(client.get(f"/users/{user}/recommendations", params={"k": 10}))
        item = before[0]
        event = {"event_id": "e-remove-1", "user_id": user, "item_id": item, "type": "view"}
        first = client.post("/events", json={"events": [event]})
        assert first.json() == {"accepted": 1, "duplicates": 0}
        start = time.perf_counter()
        after = _items(client.get(f"/users/{user}/recommendations", params={"k": 10}))
        assert time.perf_counter() - start < 0.1
        assert item not in after
        retry = client.post("/events", json={"events": [event]})
        assert retry.json() == {"accepted": 0, "duplicates": 1}


def test_unknown_user_gets_a_marked_cold_answer(server: Server) -> None:
    with server.client() as client:
        body = client.get("/users/never-seen-user/recommendations", params={"k": 5}).json()
        assert len(body["items"]) == 5
        assert body["source"].startswith("cold:") and body["user_known"] is False
        assert body["model_version"]


def test_deleted_item_disappears_everywhere(server: Server, model_dirs: tuple[Path, Path]) -> None:
    _, items = _known_user_and_items(model_dirs[0])
    with server.client() as client:
        cold = _items(client.get("/users/someone-new/recommendations", params={"k": 10}))
        gone = cold[0]
        assert client.delete(f"/items/{gone}").status_code == 200
        assert gone not in _items(client.get("/users/someone-new/recommendations"))
        session = client.post("/recommendations", json={"item_ids": items[:3], "k": 20})
        assert gone not in _items(session)
        assert client.get(f"/items/{gone}/similar").status_code == 404
        why = client.get(f"/users/someone-new/recommendations/{gone}/explanation")
        assert why.status_code == 404 and "deleted" in why.json()["error"]["message"]
        bad = client.post(
            "/events", content=b'{"events": [', headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"


def test_similar_session_and_explanations(server: Server, model_dirs: tuple[Path, Path]) -> None:
    user, items = _known_user_and_items(model_dirs[0])
    with server.client() as client:
        similar = _items(client.get(f"/items/{items[1]}/similar", params={"k": 5}))
        assert len(similar) == 5 and items[1] not in similar
        session = client.post("/recommendations", json={"item_ids": items[:2], "k": 5})
        assert session.json()["source"] == "session" and len(_items(session)) == 5
        body = {"item_ids": items[:2], "k": 3, "explain": True}
        explained = client.post("/recommendations", json=body).json()["items"]
        assert all(e["explanation"] and e["explanation"]["text"] for e in explained)
        assert any(e["explanation"]["members"] for e in explained)
        answer = client.get(f"/users/{user}/recommendations", params={"k": 3, "explain": True})
        first = answer.json()["items"][0]
        assert first["explanation"]["members"] and first["explanation"]["text"]
        why = client.get(f"/users/{user}/recommendations/{first['item_id']}/explanation")
        assert why.status_code == 200 and why.json()["members"]
        assert client.get("/items/no-such-item/similar").status_code == 404


def test_new_item_via_put(server: Server) -> None:
    with server.client() as client:
        body = {"title": "A brand new film", "categories": ["Drama"], "created_at": 1_700_000_000}
        assert client.put("/items/new-film-1", json=body).status_code == 200
        assert client.get("/items/new-film-1/similar", params={"k": 3}).status_code == 200
        bad = client.put("/items/new-film-2", json={**body, "colour": "red"})
        assert bad.status_code == 422 and "colour" in bad.json()["error"]["message"]


def test_unknown_or_repeated_query_parameters_are_refused(server: Server) -> None:
    """`?kk=5` answered 10 items and `/users?limt=5` (the dashboard's list) 50 users, as if
    the typo were absent; `?k=5&k=6` took one of them silently."""
    with server.client() as client:
        user_id = client.get("/users", params={"limit": 1}).json()["users"][0]["user_id"]
        path = f"/users/{user_id}/recommendations"
        typo = client.get(path, params={"kk": 5})
        said = typo.json()["error"]["message"]
        assert typo.status_code == 422 and "unknown query parameter 'kk'" in said
        assert "takes: categories, exclude, explain, k, rerank" in said
        twice = client.get(f"{path}?k=5&k=6")
        assert (
            twice.status_code == 422
            and "'k' given more than once" in twice.json()["error"]["message"]
        )
        listing = client.get("/users", params={"limt": 5})
        assert listing.status_code == 422 and "'limt'" in listing.json()["error"]["message"]
        assert client.get(path, params={"k": 5}).status_code == 200
        assert client.get("/dashboard", params={"v": 2}).status_code == 200  # a page: not checked


def test_a_missing_value_id_is_named_once() -> None:
    from recsemble.serving.schemas import storable_id

    with pytest.raises(ValueError, match=r"^id 'null' means a missing value"):
        storable_id("null")  # it read "id 'null' 'null' means ..."
    with pytest.raises(ValueError, match=r"^id ' u' has leading or trailing whitespace"):
        storable_id(" u")


def _event(**fields: object) -> dict[str, object]:
    return {"events": [{"event_id": "x", "user_id": "u", "item_id": "i", **fields}]}


@pytest.mark.parametrize(
    ("method", "path", "payload", "status"),
    [
        ("GET", "/users/u/recommendations?k=0", None, 422),
        ("GET", "/users/u/recommendations?k=5000", None, 422),
        ("GET", "/users/u/recommendations?k=ten", None, 422),
        ("POST", "/events", {"events": []}, 422),
        ("POST", "/events", _event(value=float("nan")), 422),
        ("POST", "/events", _event(event_id="x" * 300), 422),
        ("POST", "/events", _event(extra=1), 422),
        ("POST", "/events", _event(timestamp=1_700_000_000_000), 422),
        ("POST", "/events", _event(type="purchse"), 409),  # not in the model's event_weights
        # Ids a data file cannot hold (retraining reads them back from one), and time 0.
        ("POST", "/events", _event(user_id="null"), 422),
        ("POST", "/events", _event(item_id="NaN"), 422),
        ("POST", "/events", _event(user_id=" "), 422),
        ("POST", "/events", _event(user_id="trail "), 422),
        ("POST", "/events", _event(timestamp=0), 422),
        ("PUT", "/items/None", {"title": "x"}, 422),
        ("PUT", "/items/i1", {"attributes": {"item_id": "ghost"}}, 422),  # would rename it
        ("PUT", "/users/u1", {"attributes": {"user_id": "ghost"}}, 422),
        ("POST", "/recommendations", {"item_ids": ["a"], "k": -1}, 422),
        ("PUT", "/users/u1", {"attributes": {"age": float("inf")}}, 422),
        ("GET", "/no/such/route", None, 404),
    ],
)
def test_bad_input_is_a_clear_4xx(
    server: Server, method: str, path: str, payload: object, status: int
) -> None:
    with server.client() as client:
        content = None
        if payload is not None:
            content = json.dumps(payload, allow_nan=True)  # NaN / Infinity: JSON5-style tokens
        response = client.request(
            method, path, content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == status, response.text
        assert response.json()["error"]["message"]


def test_ids_with_a_slash_are_reachable(server: Server) -> None:
    """An id may hold "/" (an accepted id must be readable back through its URL)."""
    user, item = "shop/José 1", "sku/42"
    with server.client() as client:
        event = {"event_id": "slash-1", "user_id": user, "item_id": item, "type": "view"}
        assert client.post("/events", json={"events": [event]}).status_code == 200
        assert client.put(f"/items/{quote(item, safe='')}", json={"title": "Slash"}).is_success
        history = client.get(f"/users/{quote(user, safe='')}/history")
        assert history.status_code == 200, history.text
        assert [e["item_id"] for e in history.json()["events"]][-1:] == [item]
        answer = client.get(f"/users/{quote(user, safe='')}/recommendations?k=3")
        assert answer.status_code == 200 and answer.json()["user_known"] is True


def test_body_size_limit(server: Server) -> None:
    events = [
        {"event_id": f"big-{i}", "user_id": "u" * 200, "item_id": "i" * 200} for i in range(1000)
    ]
    with server.client() as client:
        response = client.post("/events", json={"events": events * 3})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"
        body = json.dumps({"events": events * 3}).encode()
        chunked = client.post(  # no Content-Length: the limit applies as the body streams
            "/events",
            content=(body[i : i + 65_536] for i in range(0, len(body), 65_536)),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413, chunked.text
        assert chunked.json()["error"]["code"] == "body_too_large"


def test_stage_names_in_the_api_are_the_rerankers() -> None:
    from typing import get_args

    from recsemble.rerank.config import DIVERSE, RERANKERS
    from recsemble.serving.schemas import StageName

    assert set(get_args(StageName)) == {*RERANKERS, DIVERSE}


def test_method_not_allowed_names_the_allowed_methods(server: Server) -> None:
    with server.client() as client:
        response = client.get("/events")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        response = client.delete("/users/u000001")
        assert response.status_code == 405 and response.headers["allow"] == "PUT"

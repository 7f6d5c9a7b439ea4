"""API keys on every route but health and the docs; model versions: list, publish, roll
back, refuse a corrupt one while the previous keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ADMIN_KEY, READ_KEY, Server, start_server

READ_ROUTES = [
    ("GET", "/users/u1/recommendations"),
    ("GET", "/users/u1/recommendations/i1/explanation"),
    ("GET", "/items/i1/similar"),
    ("POST_READ", "/recommendations"),
    ("GET", "/metrics"),
]
WRITE_ROUTES = [
    ("POST", "/events"),
    ("PUT", "/items/i1"),
    ("DELETE", "/items/i1"),
    ("PUT", "/users/u1"),
    ("GET", "/admin/models"),
    ("POST", "/admin/train"),
    ("POST", "/admin/rollback"),
    ("POST", "/admin/models/v1/publish"),
]


@pytest.fixture(scope="module")
def keyed(
    tmp_path_factory: pytest.TempPathFactory, model_dirs: tuple[Path, Path]
) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("keyed"), model_dirs[0], keys=True)
    yield running
    running.stop()


def _call(server: Server, method: str, path: str, key: str | None) -> int:
    with server.client(key) as client:
        verb = "POST" if method == "POST_READ" else method
        return client.request(verb, path, json={}).status_code


@pytest.mark.parametrize(("method", "path"), READ_ROUTES + WRITE_ROUTES)
def test_every_route_but_health_needs_a_key(keyed: Server, method: str, path: str) -> None:
    assert _call(keyed, method, path, None) == 401
    assert _call(keyed, method, path, "wrong-key") == 403


@pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
def test_the_read_key_cannot_write(keyed: Server, method: str, path: str) -> None:
    assert _call(keyed, method, path, READ_KEY) == 403


def test_keys_open_their_routes_and_health_is_open(keyed: Server) -> None:
    assert _call(keyed, "GET", "/users/u1/recommendations", READ_KEY) == 200
    with keyed.client(READ_KEY) as client:  # an anonymous session's list is a read
        answer = client.post("/recommendations", json={"item_ids": [], "k": 3})
        assert answer.status_code == 200, answer.text
    for page in ("/docs", "/openapi.json"):  # no data in them; a browser sends no key
        assert _call(keyed, "GET", page, None) == 200
    assert _call(keyed, "GET", "/admin/models", ADMIN_KEY) == 200
    assert _call(keyed, "GET", "/health/live", None) == 200
    assert _call(keyed, "GET", "/health/ready", None) == 200
    assert READ_KEY not in keyed.log.read_text() and ADMIN_KEY not in keyed.log.read_text()


def test_publish_rollback_and_corrupt_versions(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    server = start_server(tmp_path, model_dirs[0])
    try:
        from recsemble.registry import ModelRegistry

        registry = ModelRegistry(server.registry)
        second = registry.add(model_dirs[1])
        with server.client() as client:
            listing = client.get("/admin/models").json()
            first = listing["current"]
            assert listing["serving"] == first and len(listing["versions"]) == 2
            assert client.post(f"/admin/models/{second}/publish").json()["serving"] == second
            answer = client.get("/users/u1/recommendations").json()
            assert answer["model_version"] == second
            assert client.post("/admin/rollback").json()["serving"] == first
            # Damage the second version: publishing it is refused, the first keeps serving.
            victim = next(p for p in registry.path(second).rglob("*.npz"))
            victim.write_bytes(victim.read_bytes()[:-10])
            refused = client.post(f"/admin/models/{second}/publish")
            assert refused.status_code == 409, refused.text
            assert client.get("/admin/models").json()["serving"] == first
            assert client.get("/health/ready").status_code == 200
            assert client.get("/users/u1/recommendations").status_code == 200
            assert client.post("/admin/models/no-such-version/publish").status_code == 404
    finally:
        server.stop()

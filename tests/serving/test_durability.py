"""kill -9 in the middle of event writes, five times: nothing acknowledged is lost, and client
retries with the same idempotency keys duplicate nothing."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx

from recsemble.registry import ModelRegistry
from recsemble.serving.state import ServeSettings, ServingState
from recsemble.store import Event, open_store

from .conftest import start_server

N_EVENTS = 10_000
BATCH = 50
ROUNDS = 5


def _batches(model: Path) -> list[list[dict[str, object]]]:
    items = json.loads((model / "ids.json").read_text())["items"]
    events: list[dict[str, object]] = [
        {
            "event_id": f"dur-{i}",
            "user_id": f"dur-user-{i % 97}",
            "item_id": str(items[i % 50]),
            "timestamp": 1_700_000_000 + i,
        }
        for i in range(N_EVENTS)
    ]
    return [events[i : i + BATCH] for i in range(0, N_EVENTS, BATCH)]


def _send_until_killed(url: str, pending: list[list[dict[str, object]]], acked: set[str]) -> None:
    """Post batches in order; a batch whose answer never came stays pending (to be retried)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        while pending:
            batch = pending[0]
            try:
                response = client.post("/events", json={"events": batch})
            except httpx.HTTPError:
                return  # the server died mid-request: this batch is retried later, same ids
            assert response.status_code == 200, response.text
            acked.update(str(e["event_id"]) for e in batch)
            pending.pop(0)


def test_kill_9_loses_and_duplicates_nothing(tmp_path: Path, model_dirs: tuple[Path, Path]) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    registry = tmp_path / "registry"
    pending = _batches(model_dirs[0])
    acked: set[str] = set()
    rng = random.Random(0)
    kills = 0
    for round_ in range(ROUNDS + 1):
        model = model_dirs[0] if round_ == 0 else None
        folder = tmp_path / f"round-{round_}"
        folder.mkdir()
        server = start_server(folder, model, store_url=store_url, registry=registry)
        if round_ < ROUNDS:  # the last round only finishes the retries
            threading.Timer(rng.uniform(0.3, 1.2), server.kill).start()
        before = len(acked)
        _send_until_killed(server.url, pending, acked)
        if round_ < ROUNDS:
            server.process.wait(30)
            kills += server.process.returncode == -9
            assert len(acked) > before or not pending  # progress between kills
        server.stop()
    assert kills == ROUNDS and not pending
    store = open_store(store_url)
    try:
        stored = []
        cursor = 0
        while page := store.events_since(cursor, 5000):
            stored += [s.event.event_id for s in page]
            cursor = page[-1].seq
    finally:
        store.close()
    assert len(stored) == N_EVENTS  # none duplicated
    assert set(stored) == {f"dur-{i}" for i in range(N_EVENTS)}  # none lost
    assert acked <= set(stored)


def test_a_deleted_training_item_stays_deleted_after_a_restart(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """The item came with the training data (the store never held it): its DELETE must be
    stored, as a restarted server rebuilds its state from the store."""
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    registry = tmp_path / "registry"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_server(tmp_path / "a", model_dirs[0], store_url=store_url, registry=registry)
    try:
        answer = first.get_json("/users/x/recommendations", k=5)  # an unknown user: popular items
        item = answer["items"][0]["item_id"]
        with first.client() as client:
            assert client.delete(f"/items/{item}").status_code == 200
        assert item not in _items(first.get_json("/users/x/recommendations", k=5))
    finally:
        first.stop()
    second = start_server(tmp_path / "b", None, store_url=store_url, registry=registry)
    try:
        assert item not in _items(second.get_json("/users/x/recommendations", k=5))
        with second.client() as client:
            assert client.get(f"/items/{item}/similar").status_code == 404
    finally:
        second.stop()


def _items(answer: dict[str, list[dict[str, str]]]) -> list[str]:
    return [entry["item_id"] for entry in answer["items"]]


def test_a_restart_with_the_same_model_adds_no_copy_and_a_new_model_is_served(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """`serve --model` on every start (a service unit): the registry holds the folder once;
    a folder it does not hold is published (it was registered and the old one kept serving);
    the same folder again after that does not undo the publish."""
    settings = ServeSettings(store_url=f"sqlite:///{tmp_path / 'store.db'}",
                             registry_dir=tmp_path / "registry")  # fmt: skip

    def started(model: Path) -> str:
        state = ServingState(replace(settings, model_dir=model))
        try:
            state.start()
            assert state.recommender is not None
            return state.recommender.version
        finally:
            state.close()

    first = started(model_dirs[0])
    assert started(model_dirs[0]) == first
    registry = ModelRegistry(settings.registry_dir)
    assert [v.version for v in registry.versions()] == [first]
    second = started(model_dirs[1])
    assert second != first and registry.current() == second
    assert started(model_dirs[0]) == second  # registered before: the published one stays
    assert len(registry.versions()) == 2


def test_what_another_writer_commits_reaches_the_served_model(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """An ingest job (or a second server) writing to the same store: its events and item
    deletions are served without waiting for this server's next write or a restart."""
    from fastapi.testclient import TestClient

    from recsemble.serving.app import create_app

    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = ServeSettings(store_url=store_url, registry_dir=tmp_path / "registry",
                             model_dir=model_dirs[0])  # fmt: skip
    with TestClient(create_app(settings)) as client:
        item = _items(client.get("/users/x/recommendations", params={"k": 5}).json())[0]
        other = open_store(store_url)
        try:
            other.append_events([Event("ext-1", "newcomer", item, "view", 1_800_000_000)])
            other.delete("item", item)
        finally:
            other.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            history = client.get("/users/newcomer/history")
            answer = client.get("/users/x/recommendations", params={"k": 5}).json()
            if history.status_code == 200 and item not in _items(answer):
                break
            time.sleep(0.05)
        assert history.status_code == 200, history.text  # was 404: unknown user
        assert [e["item_id"] for e in history.json()["events"]] == [item]
        assert item not in _items(answer)  # was still recommended after its deletion


def test_a_store_that_cannot_answer_is_a_503_to_retry_and_the_retry_is_stored(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """Another process holds SQLite's write lock past the busy timeout (PostgreSQL down is
    the same answer): a JSON 503 with Retry-After, not a plain-text 500."""
    import sqlite3

    from fastapi.testclient import TestClient

    from recsemble.serving.app import create_app

    path = tmp_path / "store.db"
    settings = ServeSettings(store_url=f"sqlite:///{path}", registry_dir=tmp_path / "registry",
                             model_dir=model_dirs[0])  # fmt: skip
    body = {"events": [{"event_id": "locked-1", "user_id": "u1", "item_id": "i1"}]}
    with TestClient(create_app(settings)) as client:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer, holding the lock
        try:
            refused = client.post("/events", json=body)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "store_unavailable"
        assert refused.headers["Retry-After"] == "1"
        assert client.post("/events", json=body).json() == {"accepted": 1, "duplicates": 0}


def test_a_version_trained_on_another_stores_log_observes_this_one_from_the_start(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """A retrained version records the cursor of the store it was trained on (seq 5, say); on a
    new store (moved, migrated to PostgreSQL) the events accepted there before seq 5 were
    never observed, nor exported for retraining."""
    registry = ModelRegistry(tmp_path / "registry")
    elsewhere = {"store_cursor": 5, "store_id": "another-store", "parent": None}
    registry.publish(registry.add(model_dirs[0], config=elsewhere))
    settings = ServeSettings(store_url=f"sqlite:///{tmp_path / 'new.db'}",
                             registry_dir=registry.root)  # fmt: skip
    state = ServingState(settings)
    try:
        state.start()
        assert state.ingest([Event("n1", "newcomer", "i1", "view", 1_800_000_000)]).accepted == 1
        assert state.recommender is not None
        assert state.recommender.live.get("newcomer") is not None  # was never observed
        assert state.cursor == 1
    finally:
        state.close()


def test_a_store_restored_from_an_older_copy_loses_no_new_event(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """A version retrained to seq 3 (event a3), served on its store restored from a copy taken
    before those events: the events accepted after the restore took seqs 1 to 3 again, and the
    version skipped them for good (not observed, not exported for the next retraining)."""
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = ServeSettings(store_url=store_url, registry_dir=tmp_path / "registry")
    state = ServingState(settings)  # the restored store: the same store id, none of a1..a3
    registry = ModelRegistry(settings.registry_dir)
    trained = {"store_cursor": 3, "store_id": state.store.store_id(), "store_event": "a3"}
    registry.publish(registry.add(model_dirs[0], config={**trained, "parent": None}))
    try:
        state.start()
        fresh = [Event(f"z{n}", "after-restore", f"i{n}", "view", 1_800_000_000) for n in (1, 2)]
        assert state.ingest(fresh).accepted == 2
        assert state.recommender is not None
        live = state.recommender.live.get("after-restore")
        assert live is not None and live.version == 2
    finally:
        state.close()
    # The store the version was trained on still holds a3 at seq 3: it starts after it.
    state = ServingState(ServeSettings(store_url=f"sqlite:///{tmp_path / 'kept.db'}",
                                       registry_dir=tmp_path / "registry"))  # fmt: skip
    try:
        kept = [Event(f"a{n}", "before", "i1", "view", 1_800_000_000) for n in (1, 2, 3)]
        state.store.append_events(kept)
        other = {**trained, "store_id": state.store.store_id()}
        state.registry.publish(state.registry.add(model_dirs[1], config=other))
        assert state.start_cursor(state.registry.current() or "") == 3
    finally:
        state.close()


def test_a_start_up_that_fails_before_any_swap_says_why_on_health_ready(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """The --model copy into the registry failing (a full disk, a link in the folder) left
    /health/ready saying "no model loaded yet", the reason only in the log."""
    import shutil

    from fastapi.testclient import TestClient

    from recsemble.serving.app import create_app

    model = tmp_path / "model"
    shutil.copytree(model_dirs[0], model)
    (model / "notes").symlink_to(model / "manifest.json")  # the registry copies no links
    settings = ServeSettings(store_url=f"sqlite:///{tmp_path / 'store.db'}",
                             registry_dir=tmp_path / "registry", model_dir=model)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert "links and special files are not allowed" in ready.json()["detail"]["model"]

"""The serving state around a hot swap: what is written while a version is being switched to
reaches the version that serves afterwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recsemble.config import RecsembleConfig
from recsemble.pipeline import Recommender, RequestOptions
from recsemble.serving.state import ServeSettings, ServingState, load_recommender
from recsemble.store.base import Event, Record

from .conftest import _cli


class PausedLoader:
    """load_recommender, whose Recommender, once armed, waits inside the swap's catch-up
    (`method`: replaying records or events, under the state's observe lock) until released,
    so that a write can arrive meanwhile."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.armed = False
        self.inside = threading.Event()
        self.release = threading.Event()

    def __call__(self, folder: Path, version: str, config: RecsembleConfig | None) -> Recommender:
        recommender = load_recommender(folder, version, config)
        if self.armed:
            real: Callable[..., None] = getattr(recommender, self.method)

            def paused(*args: Any) -> None:
                self.inside.set()
                assert self.release.wait(30)
                real(*args)

            setattr(recommender, self.method, paused)
        return recommender


@pytest.mark.parametrize("method", ["upsert_items", "observe"])
def test_writes_during_a_hot_swap_reach_the_new_version(tmp_path: Path, method: str) -> None:
    rows = [f"u{u},i{(u * 3 + n) % 20},{1_700_000_000 + n}" for u in range(30) for n in range(6)]
    (tmp_path / "d.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows))
    _cli("train", "--dataset", str(tmp_path / "d.csv"), "--model", "itemknn",
         "--out", str(tmp_path / "model"))  # fmt: skip
    loader = PausedLoader(method)
    settings = ServeSettings(
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        registry_dir=tmp_path / "registry",
        model_dir=tmp_path / "model",
    )
    state = ServingState(settings, loader)
    state.start()
    try:
        state.upsert("item", Record("added", {"title": "new"}))  # the swap replays them
        state.ingest([Event("e0", "u0", "i1", "view", 1)])
        version, old = state.registry.current(), state.recommender
        assert version is not None
        loader.armed = True
        swap = threading.Thread(target=state.publish, args=(version,))
        swap.start()
        assert loader.inside.wait(30)
        writes = [
            threading.Thread(target=state.delete, args=("item", "i3")),
            threading.Thread(target=state.ingest, args=([Event("e1", "u1", "i5", "view", 1)],)),
        ]
        for write in writes:
            write.start()
        time.sleep(0.5)  # both are stored and wait for the lock the swap holds
        loader.release.set()
        for thread in (swap, *writes):
            thread.join(30)
        served = state.recommender
        assert served is not None and served is not old  # the swapped-in one
        assert served.items.removed[served.items.idx("i3")]
        live = served.live.get("u1")
        assert live is not None and served.items.idx("i5") in live.seen.tolist()
    finally:
        state.close()


def test_a_version_published_by_another_server_serves_here(tmp_path: Path) -> None:
    """Two servers on one registry: what one published (or rolled back to) kept the other on
    the version it started with, so a load balancer mixed two models' answers."""
    rows = [f"u{u},i{(u * 3 + n) % 20},{1_700_000_000 + n}" for u in range(30) for n in range(6)]
    (tmp_path / "d.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows))
    for name, neighbors in (("v1", "10"), ("v2", "5")):
        _cli("train", "--dataset", str(tmp_path / "d.csv"), "--model", "itemknn",
             "--set", f"models.itemknn.neighbors={neighbors}",
             "--out", str(tmp_path / name))  # fmt: skip
    settings = ServeSettings(
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        registry_dir=tmp_path / "registry",
        model_dir=tmp_path / "v1",
    )
    first, second = ServingState(settings), ServingState(settings)
    first.start()
    second.start()
    try:
        v1 = first.registry.current()
        v2 = first.registry.add(tmp_path / "v2")
        first.publish(v2)
        first.follow_registry()  # its own publish: nothing to do
        second.follow_registry()
        assert second.recommender is not None and second.recommender.version == v2
        assert second.rollback() == v1
        first.follow_registry()
        assert first.recommender is not None and first.recommender.version == v1
    finally:
        first.close()
        second.close()


def test_a_failed_swap_leaves_the_event_types_of_the_served_version(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """A swap failing in its catch-up had set its version's event types in the store already:
    the served version, which weighs any type, then had a "wishlist" event refused."""
    rows = [f"u{u},i{(u * 3 + n) % 20},{1_700_000_000 + n}" for u in range(30) for n in range(6)]
    (tmp_path / "d.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows))
    _cli("train", "--dataset", str(tmp_path / "d.csv"), "--model", "itemknn",
         "--out", str(tmp_path / "model"))  # fmt: skip
    failing: set[str] = set()

    def loader(folder: Path, version: str, config: RecsembleConfig | None) -> Recommender:
        fresh = load_recommender(folder, version, config)
        if version in failing:  # its catch-up fails, as a store read failing there would

            def observe(events: Any) -> None:
                raise OSError("store read failed")

            fresh.observe = observe  # type: ignore[method-assign]
        return fresh

    settings = ServeSettings(
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        registry_dir=tmp_path / "registry",
        model_dir=tmp_path / "model",  # no event weight table: any type
    )
    state = ServingState(settings, loader)
    state.start()
    try:
        state.ingest([Event("e0", "u0", "i1", "view", 1)])
        weighted = state.registry.add(model_dirs[0])  # view, cart, purchase only
        failing.add(weighted)
        with pytest.raises(OSError, match="store read failed"):
            state.publish(weighted)
        assert state.ingest([Event("e1", "u0", "i2", "wishlist", 2)]).accepted == 1
    finally:
        state.close()


def test_a_deleted_user_loses_the_segment_the_attributes_gave(tmp_path: Path) -> None:
    """A deleted user loses their attributes on the served model, as retraining drops them:
    their cold-start list no longer comes from the segment the attributes gave."""
    rows = [f"u{u},i{(u * 3 + n) % 20},{1_700_000_000 + n}" for u in range(30) for n in range(6)]
    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows))
    users = "\n".join(f"u{u},a" for u in range(31))  # u30: in the table, without history
    (data / "users.csv").write_text("user_id,segment\n" + users)
    _cli("train", "--dataset", str(data), "--model", "itemknn", "--out", str(tmp_path / "m"))
    settings = ServeSettings(
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        registry_dir=tmp_path / "registry",
        model_dir=tmp_path / "m",
    )
    state = ServingState(settings)
    state.start()
    try:
        state.upsert("user", Record("newcomer", {"segment": "a"}))
        served = state.recommender
        assert served is not None
        for user in ("newcomer", "u30"):  # attributes from a PUT, from the training data
            assert served.recommend(user, RequestOptions(k=3)).source == "cold:segment"
            state.delete("user", user)
            assert served.recommend(user, RequestOptions(k=3)).source == "cold:popular"
    finally:
        state.close()

"""POST /admin/train: retraining in a child process on the served data plus the stored events,
then an atomic switch to the new version."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest

from recsemble.data import load_dataset
from recsemble.errors import ConfigError
from recsemble.generators import GENERATORS
from recsemble.registry import ModelRegistry
from recsemble.serving.retrain import export_training_data, train_command
from recsemble.serving.state import ServeSettings, ServingState
from recsemble.store.base import Event, Record

from .conftest import TINY_ENSEMBLE, _cli, start_server


def test_retraining_learns_new_events_and_switches_version(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_ENSEMBLE)
    server = start_server(tmp_path, model_dirs[0], extra=("--train-config", str(config)))
    try:
        with server.client() as client:
            before = client.get("/admin/models").json()["serving"]
            items = [
                e["item_id"] for e in client.get("/users/x/recommendations?k=8").json()["items"]
            ]
            events = [
                {"event_id": f"rt-{i}", "user_id": "newcomer", "item_id": item,
                 "timestamp": 1_800_000_000 + i}
                for i, item in enumerate(items)
            ]  # fmt: skip
            assert client.post("/events", json={"events": events}).json()["accepted"] == 8
            assert client.post("/admin/train").status_code == 202
            assert client.post("/admin/train").status_code == 409  # one at a time
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                listing = client.get("/admin/models").json()
                if listing["serving"] != before:
                    break
                time.sleep(1)
            assert listing["serving"] != before and listing["current"] == listing["serving"]
            job = listing["retraining"]
            assert (job["state"], job["version"], job["error"]) == (
                "published", listing["serving"], None
            )  # fmt: skip
            assert len(listing["versions"]) == 2
            answer = client.get("/users/newcomer/recommendations").json()
            assert answer["user_known"] is True and answer["model_version"] == listing["serving"]
            assert not {e["item_id"] for e in answer["items"]} & set(items)
        new_model = ModelRegistry(server.registry).path(listing["serving"])
        weights = json.loads((new_model / "ids.json").read_text())["event_weights"]
        assert weights == {"view": 1.0, "cart": 3.0, "purchase": 5.0}  # "purchse" stays a 409
        trained_users = json.loads((new_model / "ids.json").read_text())["users"]
        old_users = json.loads((model_dirs[0] / "ids.json").read_text())["users"]
        assert "newcomer" in trained_users and "newcomer" not in old_users
        assert ModelRegistry(server.registry).store_cursor(listing["serving"]) >= 8
        # the cursor is this store's: on another store's log it means nothing
        assert ModelRegistry(server.registry).store_cursor(listing["serving"], "other") == 0
    finally:
        server.stop()


def test_a_failed_retraining_is_reported_by_the_api(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    config = tmp_path / "typo.toml"
    config.write_text(
        TINY_ENSEMBLE.replace('{model = "pop"}', '{model = "pop", view = {events = ["purchse"]}}')
    )
    server = start_server(tmp_path, model_dirs[0], extra=("--train-config", str(config)))
    try:
        with server.client() as client:
            assert client.post("/admin/train").status_code == 202
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                job = client.get("/admin/models").json()["retraining"]
                if job["state"] != "running":
                    break
                time.sleep(0.5)
            assert job["state"] == "failed" and job["finished_at"] >= job["started_at"]
            assert "['purchse'] have no weight" in job["error"]
            assert len(client.get("/admin/models").json()["versions"]) == 1  # still serving v1
    finally:
        server.stop()


def test_exported_events_keep_their_type_weights_and_unknown_types_are_refused(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    state = _started_state(tmp_path, model_dirs[0])
    try:
        typo = Event("e-typo", "u-typo", "i-x", "purchse", 1_800_000_000, None)
        with pytest.raises(ConfigError, match=r"\['purchse'\].*cart, purchase, view"):
            state.ingest([Event("e-ok", "u-typo", "i-x", "view", 1_800_000_000, None), typo])
        assert state.store.events_since(0, 10) == []  # the whole batch was refused
        events = [
            Event(f"e-{kind}", "u-new", f"i-{kind}", kind, 1_800_000_000 + n, None)
            for n, kind in enumerate(("view", "cart", "purchase"))
        ]
        assert state.ingest(events).accepted == 3
        new_item = {"title": "Brand new", "categories": ["gadgets"], "available": True,
                    "attributes": {"price": 9.5}}  # fmt: skip
        state.upsert("item", Record("i-cart", new_item))
        state.upsert("user", Record("u-new", {"country": "NO"}))
        saved_items = pl.read_parquet(model_dirs[0] / "items.parquet")
        gone = saved_items["item_id"][0]
        state.delete("item", gone)
        version = state.registry.current()
        assert version is not None
        folder = export_training_data(state, version, state.cursor, tmp_path / "data")
        frame = pl.read_parquet(folder / "interactions.parquet").filter(user_id="u-new")
        weights = dict(zip(frame["item_id"], frame["weight"], strict=True))
        assert weights == {"i-view": 1.0, "i-cart": 3.0, "i-purchase": 5.0}
        # What PUT /items and PUT /users stored reaches the retrained model's tables.
        data = load_dataset(str(folder))
        items = data.item_attributes
        assert items is not None and data.user_attributes is not None
        row = items.row(data.items.to_idx(pl.Series(["i-cart"]))[0], named=True)
        assert (row["title"], row["categories"], row["price"]) == ("Brand new", ["gadgets"], 9.5)
        assert items["available"][int(data.items.to_idx(pl.Series([gone]))[0])] is False
        assert items.height == len(data.items) and saved_items.height < items.height
        users = data.user_attributes
        assert users["country"][int(data.users.to_idx(pl.Series(["u-new"]))[0])] == "NO"
    finally:
        state.close()


def test_retraining_trains_like_the_served_version_unless_given_a_config(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    state = _started_state(tmp_path, model_dirs[0])
    try:
        version = state.registry.current()
        assert version is not None
        command = train_command(state, version, tmp_path / "data", tmp_path / "out")
        weights = '--set data.event_weights={"view" = 1.0, "cart" = 3.0, "purchase" = 5.0}'
        assert command[-4:-2] == ["--like", str(state.registry.path(version))]
        assert " ".join(command[-2:]) == weights
        mine = tmp_path / "mine.toml"
        mine.write_text("[models.pop]\ncausal = false\n")
        state.settings.train_args = ["--config", str(mine)]
        command = train_command(state, version, tmp_path / "data", tmp_path / "out")
        assert command[-4:-2] == ["--config", str(mine)] and " ".join(command[-2:]) == weights
    finally:
        state.close()


def test_event_weights_of_the_train_config_reach_the_retrained_version(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """The 409 for an unknown type says: add it to [data] event_weights and retrain. Done with
    `serve --train-config`, the served table was set over the config's, so the retrained
    version refused the type still (and kept a changed weight's old value)."""
    state = _started_state(tmp_path, model_dirs[0])
    try:
        version = state.registry.current()
        assert version is not None
        assert state.ingest([Event("e-p", "u-new", "i-p", "purchase", 1_800_000_000)]).accepted
        mine = tmp_path / "mine.toml"
        mine.write_text("[data]\nevent_weights = { wishlist = 2, purchase = 8 }\n")
        state.settings.train_args = ["--config", str(mine)]
        command = train_command(state, version, tmp_path / "data", tmp_path / "out")
        weights = '{"view" = 1.0, "cart" = 3.0, "purchase" = 8.0, "wishlist" = 2.0}'
        assert command[-2:] == ["--set", f"data.event_weights={weights}"]
        folder = export_training_data(state, version, state.cursor, tmp_path / "data")
        frame = pl.read_parquet(folder / "interactions.parquet").filter(user_id="u-new")
        assert frame["weight"].to_list() == [8.0]
    finally:
        state.close()


def _started_state(tmp_path: Path, model: Path) -> ServingState:
    """The server's state in this process: a fresh store and registry serving `model`."""
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    settings = ServeSettings(store_url=store_url, registry_dir=tmp_path / "registry",
                             model_dir=model)  # fmt: skip
    state = ServingState(settings)
    state.start()
    return state


def test_retraining_keeps_explicit_values_and_serves_lone_generators(tmp_path: Path) -> None:
    """Ratings survive the export (the saved ones and one that arrived over the API), so a
    pop-rating model retrains; a lone generator's folder exports like an ensemble's."""
    rows = [
        f"u{user},i{100 + (user * 7 + n) % 30},{1_700_000_000 + 60 * n},{1 + (user + n) % 5}"
        for user in range(40)
        for n in range(8)
    ]
    (tmp_path / "rated.csv").write_text("user_id,item_id,timestamp,rating\n" + "\n".join(rows))
    model = tmp_path / "model"
    _cli("train", "--dataset", str(tmp_path / "rated.csv"), "--model", "pop-rating",
         "--out", str(model))  # fmt: skip
    state = _started_state(tmp_path, model)
    try:
        state.ingest([Event("e-rated", "u-new", "i100", "view", 1_800_000_000, 4.5)])
        version = state.registry.current()
        assert version is not None
        folder = export_training_data(state, version, state.cursor, tmp_path / "data")
    finally:
        state.close()
    data = load_dataset(str(folder))
    assert data.n_interactions == len(rows) + 1
    exported = data.external_interactions().sort("user_id", "item_id", "timestamp")
    original = load_dataset(str(tmp_path / "rated.csv")).external_interactions()
    arrived = {"user_id": ["u-new"], "item_id": ["i100"], "timestamp": [1_800_000_000],
               "value": [4.5]}  # fmt: skip
    expected = pl.concat(
        [original.select(*arrived), pl.DataFrame(arrived)], how="vertical_relaxed"
    ).sort("user_id", "item_id", "timestamp")
    exported = exported.select(expected.columns)
    assert exported.equals(expected.cast(exported.schema))
    GENERATORS["pop-rating"]().fit(data)  # before: "needs explicit values"


def test_an_ingest_job_cannot_store_a_type_the_served_model_does_not_weigh(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    """POST /events refused "purchse" with a 409, but a job appending through recsemble.store
    had it stored, weighed 1 (a view) live and by every retraining."""
    from recsemble.store import open_store

    state = _started_state(tmp_path, model_dirs[0])
    job = open_store(state.settings.store_url)
    try:
        with pytest.raises(ValueError, match=r"'purchse' is not one of .*cart, .*purchase, view"):
            job.append_events([Event("j-typo", "u-job", "i-x", "purchse", 1_800_000_000)])
        assert job.append_events([Event("j-ok", "u-job", "i-x", "purchase", 1_800_000_000)])
        state.follow()
        assert state.recommender is not None and state.recommender.live.get("u-job") is not None
    finally:
        job.close()
        state.close()


def test_stopping_the_server_stops_its_training_child(
    tmp_path: Path, model_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server stopped (SIGTERM) during POST /admin/train left `recsemble train` running as
    an orphan, training for no one for up to an hour, and its temp folder behind."""
    import os
    import signal
    import sys

    from fastapi.testclient import TestClient

    from recsemble.serving import retrain
    from recsemble.serving.app import create_app

    marker = f"recsemble-test-{os.getpid()}-{time.time_ns()}"

    def children() -> list[int]:
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                pass
        return found

    # A training that has not finished when the server stops (a real child process).
    sleeper = [sys.executable, "-c", "import sys, time; time.sleep(600)", marker]
    monkeypatch.setattr(retrain, "train_command", lambda *args: sleeper)
    settings = ServeSettings(store_url=f"sqlite:///{tmp_path / 'store.db'}",
                             registry_dir=tmp_path / "registry",
                             model_dir=model_dirs[0])  # fmt: skip
    try:
        with TestClient(create_app(settings)) as client:
            assert client.post("/admin/train").status_code == 202
            deadline = time.monotonic() + 60
            while not children() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert children()
        assert children() == []  # stopped with the server
        job = retrain.retraining_status()
        assert job is not None and job.state == "failed"
    finally:
        for pid in children():
            os.kill(pid, signal.SIGKILL)


def test_put_attributes_keep_the_catalogs_column_types_in_the_retraining_data(
    tmp_path: Path,
) -> None:
    """A PUT's expires_at in epoch seconds into a datetime column stays that moment (not an
    integer mixing microseconds and seconds), and one PUT price "cheap" does not turn the
    price column into text, which would leave a `price < 20` rule unusable after retraining."""
    import datetime as dt

    from recsemble.rerank.filters import RuleFilter

    data = tmp_path / "data"
    data.mkdir()
    rows = [f"u{u},i{(u * 3 + n) % 12},{1_700_000_000 + n}" for u in range(20) for n in range(5)]
    (data / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows))
    pl.DataFrame({
        "item_id": [f"i{i}" for i in range(12)],
        "price": [float(i) for i in range(12)],
        "expires_at": [dt.datetime(2030, 1, 1)] * 12,
    }).write_parquet(data / "items.parquet")  # fmt: skip
    _cli("train", "--dataset", str(data), "--model", "itemknn", "--out", str(tmp_path / "m"))
    state = _started_state(tmp_path, tmp_path / "m")
    try:
        state.upsert("item", Record("i1", {"title": "a", "attributes": {"price": "cheap"}}))
        later = {"title": "b", "attributes": {"price": 5, "expires_at": 4_000_000_000}}
        state.upsert("item", Record("i2", later))
        version = state.registry.current()
        assert version is not None
        folder = export_training_data(state, version, state.cursor, tmp_path / "export")
        exported = load_dataset(str(folder))
        items = exported.item_attributes
        assert items["price"].dtype == pl.Float64 and items["expires_at"].dtype.is_temporal()
        by_id = dict(zip(exported.items.ids, items.iter_rows(named=True), strict=True))
        assert by_id["i2"]["expires_at"] == dt.datetime(2096, 10, 2, 7, 6, 40)
        assert by_id["i3"]["expires_at"] == dt.datetime(2030, 1, 1)
        assert by_id["i1"]["price"] is None
        rule = {"include": [{"attribute": "price", "op": "<", "value": 20}]}
        RuleFilter(**rule).fit(exported)  # the rule still applies
    finally:
        state.close()


def _alive(pid: int) -> bool:
    """A process that runs (a zombie no reaper collected has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_a_training_child_ends_when_its_server_is_killed(tmp_path: Path) -> None:
    """kill -9 of a server (or the OOM killer) during POST /admin/train left its `recsemble
    train` child training for no one, for up to an hour."""
    import os
    import signal
    import subprocess
    import sys

    endless = tmp_path / "endless.toml"
    os.mkfifo(endless)  # reading it waits for a writer: a training that never ends by itself
    command = [sys.executable, "-m", "recsemble", "train", "--config", str(endless),
               "--out", str(tmp_path / "out")]  # fmt: skip
    server_code = (  # the server's retraining thread, in a process of its own to kill
        "import sys, threading, time\n"
        "from recsemble.serving import retrain\n"
        f"threading.Thread(target=retrain._train, args=({command!r},), daemon=True).start()\n"
        "while 'job' not in retrain._child:\n"
        "    time.sleep(0.05)\n"
        "print(retrain._child['job'].pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", server_code], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    child = 0
    try:
        assert server.stdout is not None
        child = int(server.stdout.readline())
        assert _alive(child)
        server.kill()
        server.wait()
        deadline = time.monotonic() + 60
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        server.kill()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)

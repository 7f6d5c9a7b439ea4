"""POST /admin/train: retraining in a child process on the served data plus the stored events,
then an atomic switch to the new version."""

from __future__ import annotations

import json
import time
from pathlib import Path

from recsemble.registry import ModelRegistry

from .conftest import TINY_ENSEMBLE, start_server


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
            assert len(listing["versions"]) == 2
            answer = client.get("/users/newcomer/recommendations").json()
            assert answer["user_known"] is True and answer["model_version"] == listing["serving"]
            assert not {e["item_id"] for e in answer["items"]} & set(items)
        new_model = ModelRegistry(server.registry).path(listing["serving"])
        trained_users = json.loads((new_model / "ids.json").read_text())["users"]
        old_users = json.loads((model_dirs[0] / "ids.json").read_text())["users"]
        assert "newcomer" in trained_users and "newcomer" not in old_users
        assert ModelRegistry(server.registry).store_cursor(listing["serving"]) >= 8
    finally:
        server.stop()

"""`recsemble serve --config`: the [rerank] stages apply to every answer; a bad file is a clear
error before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl

from .conftest import start_server


def test_configured_stages_shape_every_answer(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[rerank]\nstages = ["cap"]\ncap = { max_per_category = 1 }\n')
    items = pl.read_parquet(model_dirs[0] / "items.parquet")
    ids = items[items.columns[0]].cast(pl.String).to_list()
    categories = dict(zip(ids, items["categories"].to_list(), strict=True))
    server = start_server(tmp_path, model_dirs[0], extra=("--config", str(config)))

    def categories_of(answer: dict[str, Any]) -> list[str]:
        return [c for entry in answer["items"] for c in categories.get(entry["item_id"]) or []]

    try:
        with server.client() as client:
            repeated = 0
            for user in ("0", "1", "someone-new"):
                answer = client.get(f"/users/{user}/recommendations", params={"k": 10}).json()
                seen = categories_of(answer)
                assert len(seen) == len(set(seen)), answer  # no category twice
                params = {"k": 10, "rerank": ""}  # no stage: the model's own order
                plain = categories_of(server.get_json(f"/users/{user}/recommendations", **params))
                repeated += len(plain) > len(set(plain))
            assert repeated  # the cap did the work above
    finally:
        server.stop()


def test_a_bad_config_stops_serve_with_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[rerank]\nstages = ["shiny"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "recsemble", "serve", "--config", str(config), "--port", "9"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown re-ranker 'shiny'" in done.stderr


def test_a_store_model_or_retraining_config_that_cannot_work_stops_serve_at_once(
    tmp_path: Path, model_dirs: tuple[Path, Path]
) -> None:
    cases = [
        (["--store", "mysql://db", "--model", str(model_dirs[0])], "store URL mysql://..."),
        (["--store", "postgresql://nobody@127.0.0.1:9/db", "--model", str(model_dirs[0])],
         "--store: cannot connect to PostgreSQL"),
        (["--store", f"sqlite:///{tmp_path / 's.db'}", "--model", str(tmp_path)],
         "--model: no manifest.json"),
        (["--store", f"sqlite:///{tmp_path / 's.db'}", "--model", str(model_dirs[0]),
          "--train-config", str(tmp_path / "retrain.toml")], "retrain.toml does not exist"),
    ]  # fmt: skip
    for args, needle in cases:
        done = subprocess.run(
            [sys.executable, "-m", "recsemble", "serve", "--port", "9",
             "--registry", str(tmp_path / "registry"), *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        text = " ".join(done.stderr.split())
        assert needle in text and "Traceback" not in text and "serving on" not in text, text

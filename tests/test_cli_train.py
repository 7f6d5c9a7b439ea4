"""`recsemble train` and `recsemble recommend` end to end on a small synthetic folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from recsemble.cli import app

runner = CliRunner()

TINY_ENSEMBLE = """
[ensemble]
validation_folds = 1
members = [
  {model = "pop"},
  {model = "itemknn", candidates = 30},
  {model = "ease-recent", view = {window_days = 60}},
  {model = "covisit", candidates = 50},
]
[ensemble.ranker]
kind = "logistic"
"""


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _fail(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    return result.output


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    _run(
        "data", "synth", "--out", str(root / "data"), "--users", "300", "--items", "120",
        "--interactions", "9000",
    )  # fmt: skip
    (root / "tiny.toml").write_text(TINY_ENSEMBLE)
    return root


@pytest.fixture(scope="module")
def trained(synth: Path) -> tuple[Path, str]:
    out = synth / "model"
    output = _run(
        "train", "--dataset", str(synth / "data"), "--config", str(synth / "tiny.toml"),
        "--out", str(out),
    )  # fmt: skip
    return out, output


def _listed_items(output: str) -> list[str]:
    return re.findall(r"│\s+\d+ │ (i\d+) ", output)


def test_train_writes_a_loadable_ensemble_and_prints_a_summary(trained: tuple[Path, str]) -> None:
    out, output = trained
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "recsemble.ensemble"
    labels = [m["label"] for m in manifest["members"]]
    assert labels == ["pop", "itemknn", "ease-recent@60d", "covisit"]
    for label in labels:
        assert f"member {label}" in output
    assert f"{manifest['training']['pairs']:,} pairs" in output
    assert "logistic" in output and "size on disk" in output and str(out) in output
    # The validation board: the ranker beside the best member alone, per history slice.
    board = manifest["slice_board"]["ndcg"]["5-19"]
    best = max((k for k in board if k != "ranker"), key=lambda k: board[k])
    line = f"NDCG@10 ranker {board['ranker']:.4f}, best member {best} {board[best]:.4f}"
    assert line in " ".join(output.split())
    ids = json.loads((out / "ids.json").read_text())
    assert len(ids["users"]) == manifest["n_users"] and len(ids["items"]) == manifest["n_items"]


def test_recommend_prints_unseen_external_items(synth: Path, trained: tuple[Path, str]) -> None:
    out, _ = trained
    user = json.loads((out / "ids.json").read_text())["users"][0]
    output = _run("recommend", "--model", str(out), "--user", user, "--k", "5")
    items = _listed_items(output)
    assert len(items) == 5 and len(set(items)) == 5
    inter = pl.read_parquet(synth / "data" / "interactions.parquet")
    seen = set(inter.filter(pl.col("user_id").cast(pl.String) == user)["item_id"].cast(pl.String))
    assert seen, "the user should have a history"
    assert not seen & set(items), "recommend listed an item the user already has"
    assert "title" in output  # synthetic items have titles


def test_recommend_answers_unknown_users(trained: tuple[Path, str]) -> None:
    out, _ = trained
    output = _run("recommend", "--model", str(out), "--user", "nobody-knows-me", "--k", "3")
    assert "unknown user" in output
    assert len(_listed_items(output)) == 3


def test_recommend_refuses_an_id_no_data_file_can_hold(trained: tuple[Path, str]) -> None:
    out, _ = trained
    user = json.loads((out / "ids.json").read_text())["users"][0]
    said = " ".join(_fail("recommend", "--model", str(out), "--user", f" {user}").split())
    assert "has leading or trailing whitespace" in said  # it answered as for a new user


def test_train_a_single_generator(synth: Path) -> None:
    out = synth / "knn"
    _run("train", "--dataset", str(synth / "data"), "--model", "itemknn", "--out", str(out))
    assert json.loads((out / "manifest.json").read_text())["generator"] == "itemknn"
    user = json.loads((out / "ids.json").read_text())["users"][1]
    assert len(_listed_items(_run("recommend", "--model", str(out), "--user", user))) == 10


def test_errors_are_one_line(synth: Path, tmp_path: Path) -> None:
    assert "unknown model" in _fail("train", "--dataset", str(synth / "data"), "--model", "nope")
    assert "manifest.json" in _fail("recommend", "--model", str(tmp_path), "--user", "1")


def test_a_served_model_keeps_light_users_and_items_without_interactions(tmp_path: Path) -> None:
    """The protocol drops users with fewer than 5 interactions for evaluation; a model trained
    to serve must still know a user with 3 of them, and every item of the catalog."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [(f"u{u}", f"i{(u + n) % 40}", 1_700_000_000 + 3600 * n) for u in range(60)
            for n in range(8)]  # fmt: skip
    rows += [("light", "i7", 1_700_100_000), ("light", "i8", 1_700_100_100)]
    rows += [("light", "i9", 1_700_100_200)]
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(
        data / "interactions.csv"
    )
    items = [(f"i{n}", f"Item {n}", "a|b" if n % 2 else "c") for n in range(41)]  # i40: none
    pl.DataFrame(items, schema=["item_id", "title", "categories"], orient="row").write_csv(
        data / "items.csv"
    )
    out = tmp_path / "model"
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_ENSEMBLE)
    _run("train", "--dataset", str(data), "--config", str(config), "--out", str(out))
    ids = json.loads((out / "ids.json").read_text())
    assert "light" in ids["users"] and len(ids["users"]) == 61
    assert "i40" in ids["items"] and len(ids["items"]) == 41
    output = _run("recommend", "--model", str(out), "--user", "light", "--k", "3")
    assert "unknown user" not in output and len(_listed_items(output)) == 3


def test_train_like_a_saved_model_reuses_its_settings(
    synth: Path, trained: tuple[Path, str]
) -> None:
    model, _ = trained
    again = synth / "again"
    _run("train", "--dataset", str(synth / "data"), "--like", str(model), "--out", str(again))
    before = json.loads((model / "manifest.json").read_text())
    after = json.loads((again / "manifest.json").read_text())
    assert after["config"] == before["config"] and after["model_params"] == before["model_params"]
    assert len(after["config"]["members"]) == 4  # the tiny ensemble's, not the 11 defaults
    knn = synth / "knn-20"
    _run("train", "--dataset", str(synth / "data"), "--model", "itemknn",
         "--set", "models.itemknn.neighbors=20", "--out", str(knn))  # fmt: skip
    _run("train", "--dataset", str(synth / "data"), "--like", str(knn), "--out", str(synth / "k2"))
    saved = json.loads((synth / "k2" / "manifest.json").read_text())
    assert saved["generator"] == "itemknn" and saved["config"]["neighbors"] == 20
    said = " ".join(_run("recommend", "--model", str(knn), "--user", "nobody[x]").split())
    assert "user nobody[x]: itemknn has no answer for a user it never saw" in said
    text = " ".join(_fail("train", "--dataset", str(synth / "data"), "--model", "pop",
                          "--like", str(knn), "--out", str(synth / "k3")).split())  # fmt: skip
    assert "is a saved itemknn" in text


def test_train_like_keeps_the_saved_event_weights(synth: Path) -> None:
    """New data with event types but no weight table weighs them as the saved model did."""
    weighted = synth / "weighted"
    _run("train", "--dataset", str(synth / "data"), "--model", "pop", "--out", str(weighted),
         "--set", "data.event_weights={view = 1, cart = 2, purchase = 7}")  # fmt: skip
    table = {"view": 1.0, "cart": 2.0, "purchase": 7.0}
    assert json.loads((weighted / "ids.json").read_text())["event_weights"] == table
    rows = "user_id,item_id,timestamp,event\n" + "\n".join(
        f"u{n % 9},i{n % 13},{1_700_000_000 + n},{('view', 'cart', 'purchase')[n % 3]}"
        for n in range(120)
    )
    (synth / "new.csv").write_text(rows)
    again = synth / "weighted-2"
    _run("train", "--dataset", str(synth / "new.csv"), "--like", str(weighted), "--out", str(again))
    assert json.loads((again / "ids.json").read_text())["event_weights"] == table


def test_recommend_says_when_the_list_is_shorter_than_asked(trained: tuple[Path, str]) -> None:
    out, _ = trained
    user = json.loads((out / "ids.json").read_text())["users"][0]
    output = " ".join(_run("recommend", "--model", str(out), "--user", user, "--k", "500").split())
    shown = len(re.findall(r"│ \d+ │ i\d+ ", output))
    assert 0 < shown < 500 and f"{shown} of 500 asked" in output

"""The ensemble trained with its members on Spark (spark.members.SparkMembers): the members with
a Spark form fitted there, the others, the features and the ranker on the driver; the same
lists as the ensemble trained in this process, and the CLI's `--engine spark` paths."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from recsemble.cli import app
from recsemble.config import RecsembleConfig
from recsemble.data.dataset import Dataset
from recsemble.evaluation import protocol
from recsemble.ranking.ensemble import Ensemble
from recsemble.ranking.ids import Catalog
from recsemble.ranking.persistence import save_model
from recsemble.ranking.training import fit_model
from recsemble.spark.members import SparkMembers
from tests.spark.conftest import lists_without_spark

runner = CliRunner()

#: Deterministic members, two with a Spark form and one (userknn) without, and one on a view.
ENSEMBLE = """
[ensemble]
validation_folds = 1
members = [
  {model = "pop"},
  {model = "covisit", candidates = 40},
  {model = "pop", name = "pop-recent", view = {window_days = 30}},
  {model = "userknn", candidates = 40},
]
[ensemble.ranker]
kind = "lightgbm"
"""


def _config() -> RecsembleConfig:
    return RecsembleConfig.model_validate(tomllib.loads(ENSEMBLE))


@pytest.fixture(scope="module")
def split(synthetic: Dataset) -> protocol.Split:
    return protocol.split(protocol.prepare(synthetic), "temporal-user")


@pytest.fixture(scope="module")
def both(spark: Any, split: protocol.Split) -> tuple[Ensemble, Ensemble, SparkMembers]:
    """The ensemble fitted here, and with its members on Spark."""
    config = _config()
    local = fit_model(config, "ensemble", split.train)
    members = SparkMembers(spark)
    remote = fit_model(config, "ensemble", split.train, fit_member=members)
    members.release()
    assert isinstance(local, Ensemble) and isinstance(remote, Ensemble)
    return local, remote, members


def test_members_on_spark_give_the_local_ensemble(
    both: tuple[Ensemble, Ensemble, SparkMembers], split: protocol.Split
) -> None:
    local, remote, members = both
    # One validation fold and the refit: each member twice, each the way its form allows.
    assert members.on_spark == ["pop", "covisit", "pop", "pop", "covisit", "pop"]
    assert members.on_driver == ["userknn", "userknn"]
    users = split.evaluated_users
    at = split.reference_time[users]
    mine = remote.recommend(users, 10, at=at)
    theirs = local.recommend(users, 10, at=at)
    assert np.array_equal(mine.items, theirs.items)
    np.testing.assert_allclose(mine.scores, theirs.scores, rtol=1e-5, atol=1e-6)


def test_the_spark_trained_ensemble_serves_without_spark(
    both: tuple[Ensemble, Ensemble, SparkMembers], split: protocol.Split, tmp_path: Path
) -> None:
    remote = both[1]
    folder = save_model(remote, tmp_path / "ensemble", Catalog.from_dataset(split.train))
    expected = remote.recommend(list(range(20)), 10).items.tolist()
    assert lists_without_spark(folder) == expected


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_trains_and_evaluates_the_ensemble_on_spark(
    spark: Any, synthetic: Dataset, tmp_path: Path
) -> None:
    folder = tmp_path / "log"
    folder.mkdir()
    synthetic.external_interactions().write_parquet(folder / "interactions.parquet")
    config = tmp_path / "ensemble.toml"
    config.write_text(ENSEMBLE)
    out = tmp_path / "model"
    output = _run(
        "train", "--engine", "spark", "--input", str(folder), "--config", str(config),
        "--out", str(out),
    )  # fmt: skip
    assert "trained ensemble on Spark" in output
    assert "members fitted on Spark: pop, covisit" in output
    user = json.loads((out / "ids.json").read_text())["users"][0]
    assert f"user {user}" in _run("recommend", "--model", str(out), "--user", user)
    common = ["evaluate", "--dataset", str(folder), "--config", str(config)]
    common += ["--models", "ensemble"]
    _run(*common, "--json", str(tmp_path / "local.json"))
    _run(*common, "--engine", "spark", "--json", str(tmp_path / "spark.json"))
    local = json.loads((tmp_path / "local.json").read_text())
    remote = json.loads((tmp_path / "spark.json").read_text())
    assert list(remote) == list(local) == ["pop", "ensemble"]
    assert remote["ensemble"]["meta"]["engine"] == "spark"
    assert remote["ensemble"]["ndcg@10"] == pytest.approx(local["ensemble"]["ndcg@10"], abs=1e-6)

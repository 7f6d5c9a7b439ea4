"""Batch scoring on Spark (local[2]) against the same scoring in this process, and against the
API's own answer: same users, ranks, items and explanations; scores within 1e-6."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsemble.config import RecsembleConfig
from recsemble.data.dataset import Dataset
from recsemble.evaluation.protocol import prepare
from recsemble.pipeline import Recommender, RequestOptions
from recsemble.ranking.ids import Catalog
from recsemble.ranking.persistence import save_model
from recsemble.ranking.training import fit_model
from recsemble.spark.batch import score_locally, score_on_spark
from recsemble.spark.scoring import SCHEMA, explanation_json

AT = 1_700_000_000
TINY_ENSEMBLE = """
[ensemble]
validation_folds = 1
members = [
  {model = "pop"},
  {model = "itemknn", candidates = 40},
  {model = "covisit", candidates = 40},
]
[ensemble.ranker]
kind = "lightgbm"
"""


@pytest.fixture(scope="module")
def prepared(synthetic: Dataset) -> Dataset:
    return prepare(synthetic, min_user_interactions=5)


def _saved(prepared: Dataset, model: str, folder: Path, toml: str = "") -> Path:
    config = RecsembleConfig.model_validate(tomllib.loads(toml))
    fitted = fit_model(config, model, prepared)
    return save_model(fitted, folder, Catalog.from_dataset(prepared))


@pytest.fixture(scope="module")
def itemknn_dir(prepared: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _saved(prepared, "itemknn", tmp_path_factory.mktemp("batch") / "itemknn")


@pytest.fixture(scope="module")
def ensemble_dir(prepared: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("batch") / "ensemble"
    return _saved(prepared, "ensemble", folder, TINY_ENSEMBLE)


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("user", "ascending"), ("rank", "ascending")])


def _assert_same(local: pa.Table, spark: pa.Table) -> None:
    assert local.num_rows == spark.num_rows > 0
    for name in ("user", "rank", "item", "explanation", "history_events", "history_latest"):
        assert local.column(name).to_pylist() == spark.column(name).to_pylist(), name
    scores = np.asarray(local.column("score")) - np.asarray(spark.column("score"))
    assert np.abs(scores).max() <= 1e-6


@pytest.mark.parametrize("which", ["itemknn_dir", "ensemble_dir"])
def test_spark_batch_equals_local_batch(
    spark: Any, prepared: Dataset, which: str, request: pytest.FixtureRequest
) -> None:
    folder: Path = request.getfixturevalue(which)
    frame = prepared.external_interactions().select("user_id", "item_id", "timestamp", "weight")
    local = _sorted(score_locally(frame, folder, k=10, at=AT))
    interactions = spark.createDataFrame(frame.to_arrow())
    # Small partitions: several tasks, so the workers' model cache is exercised too.
    lists = score_on_spark(interactions, folder, k=10, at=AT, users_per_partition=150)
    remote = _sorted(pa.Table.from_batches(lists.toArrow().to_batches(), lists.toArrow().schema))
    assert remote.column_names == SCHEMA.names
    assert set(local.column("user").to_pylist()) == set(prepared.users.ids.tolist())
    _assert_same(local.cast(SCHEMA), remote.cast(SCHEMA))


@pytest.mark.parametrize("which", ["itemknn_dir", "ensemble_dir"])
def test_batch_lists_are_the_api_answers(
    prepared: Dataset, which: str, request: pytest.FixtureRequest
) -> None:
    folder: Path = request.getfixturevalue(which)
    frame = prepared.external_interactions()
    table = score_locally(frame, folder, k=10, at=AT)
    recommender = Recommender.load(folder)
    users = table.column("user").to_pylist()
    for user in sorted(set(users))[:25]:
        answer = recommender.recommend(user, RequestOptions(k=10, explain=True, at=AT))
        rows = [r for r in table.to_pylist() if r["user"] == user]
        assert [r["item"] for r in rows] == [a.item_id for a in answer.items]
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
        assert np.allclose([r["score"] for r in rows], [a.score for a in answer.items], atol=1e-6)
        assert [r["explanation"] for r in rows] == [
            explanation_json(a.explanation) for a in answer.items
        ]


def test_newer_history_is_folded_in(prepared: Dataset, itemknn_dir: Path) -> None:
    """A user with events after training gets a list computed with them (and their marker)."""
    frame = prepared.external_interactions()
    user = frame["user_id"][0]
    before = score_locally(frame, itemknn_dir, k=10, at=AT)
    top = [r["item"] for r in before.to_pylist() if r["user"] == user]
    newer = frame.filter(frame["user_id"] == user).head(1)
    latest = int(frame.filter(frame["user_id"] == user)["timestamp"].max()) + 60
    newer = newer.with_columns(item_id=newer["item_id"].__class__("item_id", [top[0]]))
    newer = newer.with_columns(timestamp=newer["timestamp"] * 0 + latest)
    after = score_locally(frame.vstack(newer), itemknn_dir, k=10, at=AT)
    mine = [r for r in after.to_pylist() if r["user"] == user]
    assert top[0] not in [r["item"] for r in mine]  # now seen
    old_marker = next(r for r in before.to_pylist() if r["user"] == user)["history_events"]
    assert mine[0]["history_events"] == old_marker + 1
    assert mine[0]["history_latest"] == latest


def test_local_batch_reports_users_scored(prepared: Dataset, itemknn_dir: Path) -> None:
    frame = prepared.external_interactions()
    calls: list[tuple[int, int]] = []
    table = score_locally(frame, itemknn_dir, k=5, at=AT, on_progress=lambda *c: calls.append(c))
    n_users = frame["user_id"].n_unique()
    assert calls[-1] == (n_users, n_users)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert len(set(table.column("user").to_pylist())) == n_users


def test_the_batch_command_writes_every_users_list(
    prepared: Dataset, itemknn_dir: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from recsemble.cli import app

    source = tmp_path / "input"
    source.mkdir()
    frame = prepared.external_interactions().select("user_id", "item_id", "timestamp", "weight")
    frame.write_parquet(source / "interactions.parquet")
    out = tmp_path / "lists"
    args = ["batch", "--model", str(itemknn_dir), "--output", str(out), "--input", str(source)]
    result = CliRunner().invoke(app, [*args, "--k", "3"])
    assert result.exit_code == 0, result.output
    written = pa.concat_tables([pq.read_table(path) for path in sorted(out.glob("*.parquet"))])
    assert set(written.column("user").to_pylist()) == set(frame["user_id"].to_list())
    assert max(written.column("rank").to_pylist()) == 3
    assert "users scored" in result.output
    again = CliRunner().invoke(app, [*args, "--k", "2"])  # an earlier batch's folder: replaced
    assert again.exit_code == 0, again.output
    assert max(pq.read_table(out).column("rank").to_pylist()) == 2


@pytest.mark.parametrize("kind", ["file", "folder with other files"])
def test_the_batch_command_refuses_an_output_it_would_destroy(
    itemknn_dir: Path, tmp_path: Path, kind: str
) -> None:
    from typer.testing import CliRunner

    from recsemble.cli import app

    out = tmp_path / "out"
    if kind == "file":
        out.write_text("keep me")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    args = ["batch", "--model", str(itemknn_dir), "--output", str(out), "--input", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # the console wraps long lines
    assert ("is a file" if kind == "file" else "holds other files (notes.txt)") in text
    kept = out if kind == "file" else out / "notes.txt"
    assert kept.read_text() == "keep me"

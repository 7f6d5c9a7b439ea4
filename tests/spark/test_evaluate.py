"""Metrics computed on Spark equal evaluation/metrics.py's; the CLI's --engine spark reports
what the local engine reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from recsemble.cli import app
from recsemble.data.dataset import Dataset
from recsemble.evaluation import protocol
from recsemble.evaluation.metrics import compute_metrics
from recsemble.evaluation.runner import catalog_stats, truth_matrix
from recsemble.spark.evaluate import PER_USER, list_metrics, metric_context
from recsemble.types import PAD_IDX

runner = CliRunner()


def _random_lists(split: protocol.Split, k: int, seed: int = 3) -> np.ndarray:
    """Distinct items per user; some lists short (padded), some empty, many with hits."""
    rng = np.random.default_rng(seed)
    users = split.evaluated_users
    test = split.test.user_item_matrix("binary")
    lists = np.full((users.size, k), PAD_IDX, dtype=np.int64)
    for row, user in enumerate(users):
        relevant = test.indices[test.indptr[user] : test.indptr[user + 1]]
        pool = np.unique(np.concatenate([relevant, rng.choice(split.train.n_items, 3 * k)]))
        length = [0, 1, k // 2, k, k][row % 5]
        lists[row, :length] = rng.permutation(pool)[:length]
    return lists


def _table(spark: Any, columns: dict[str, np.ndarray]) -> Any:
    return spark.createDataFrame(pa.table(columns))


def test_list_metrics_equal_the_single_machine(spark: Any, synthetic: Dataset) -> None:
    k = 5  # lists of 10: ranks beyond k are left out
    split = protocol.split(protocol.prepare(synthetic), "temporal-global")
    users = split.evaluated_users
    lists = _random_lists(split, 10)
    history = split.train.user_item_matrix("binary")[users]
    expected = compute_metrics(
        lists, truth_matrix(split, users), k, catalog_stats(split), history=history
    )

    def pairs(dataset: Dataset) -> Any:
        return _table(
            spark,
            {"user": dataset.column("user_idx"), "item": dataset.column("item_idx")},
        )

    real = lists >= 0
    rows = np.repeat(users, lists.shape[1]).reshape(lists.shape)
    ranks = np.tile(np.arange(1, lists.shape[1] + 1), (users.size, 1))
    lists_table = _table(
        spark, {"user": rows[real], "item": lists[real].astype(np.int32), "rank": ranks[real]}
    )
    matrix, names = split.train.item_categories()
    coo = matrix.tocoo()
    categories = _table(spark, {"item": coo.row.astype(np.int32), "category": names.ids[coo.col]})
    catalog = _table(spark, {"item": np.arange(split.train.n_items, dtype=np.int32)})
    context = metric_context(pairs(split.test), pairs(split.train), catalog, categories=categories)
    measured = list_metrics(lists_table, context, k)
    per_user = measured.per_user.orderBy("user").toArrow()
    assert np.array_equal(per_user.column("user").to_numpy(), users)
    values = expected.per_user()
    for name in (*PER_USER, "ild", "calibration_kl"):
        got = np.asarray(per_user.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        np.testing.assert_allclose(got, values[name], atol=1e-9, rtol=1e-9, err_msg=name)
    summary = expected.summary()
    hits = expected.n_hits.sum()
    summary[f"longtail_hit_share@{k}"] = expected.n_longtail_hits.sum() / hits
    assert measured.summary.keys() == summary.keys()
    for key, value in summary.items():
        assert measured.summary[key] == pytest.approx(value, abs=1e-6), key


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def folder(synthetic: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spark-cli") / "log"
    out.mkdir()
    synthetic.external_interactions().write_parquet(out / "interactions.parquet")
    return out


def test_evaluate_engine_spark_reports_the_local_keys(
    spark: Any, folder: Path, tmp_path: Path
) -> None:
    common = ["evaluate", "--dataset", str(folder), "--models", "pop,covisit,ials"]
    common += ["--set", "models.ials.factors=8", "--set", "models.ials.iterations=3"]
    _run(*common, "--json", str(tmp_path / "local.json"))
    _run(*common, "--engine", "spark", "--json", str(tmp_path / "spark.json"))
    local = json.loads((tmp_path / "local.json").read_text())
    remote = json.loads((tmp_path / "spark.json").read_text())
    assert list(remote) == list(local)
    for name, entry in local.items():
        assert remote[name].keys() == entry.keys(), name
        assert remote[name]["slices"].keys() == entry["slices"].keys()
        assert remote[name]["slices"]["all"].keys() == entry["slices"]["all"].keys()
        assert remote[name]["per_user"].keys() == entry["per_user"].keys()
        assert remote[name]["meta"]["engine"] == "spark"
        assert remote[name]["meta"]["split_sha256"] == entry["meta"]["split_sha256"]
    for name in ("pop", "covisit"):  # deterministic members: the same figures
        for key, value in local[name].items():
            if "@" in key:
                assert remote[name][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


def test_train_engine_spark_from_parquet_input(spark: Any, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    output = _run(
        "train", "--engine", "spark", "--input", str(folder), "--model", "covisit",
        "--out", str(out),
    )  # fmt: skip
    assert "trained covisit on Spark" in output
    assert (out / "manifest.json").is_file() and (out / "ids.json").is_file()
    user = json.loads((out / "ids.json").read_text())["users"][0]
    assert f"user {user}" in _run("recommend", "--model", str(out), "--user", user)


def test_input_needs_the_spark_engine(folder: Path) -> None:
    result = runner.invoke(app, ["train", "--input", str(folder)])
    assert result.exit_code == 2
    assert "--engine spark" in result.output
    result = runner.invoke(app, ["evaluate", "--engine", "flink"])
    assert result.exit_code == 2
    assert "unknown engine" in result.output


def test_spark_training_keeps_the_users_and_items_local_training_keeps(
    spark: Any, tmp_path: Path
) -> None:
    """Training for serving, on Spark as on one machine: light users and catalog items without
    interactions keep their ids (the same id maps, the same scores)."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [f"u{u},i{(u + n) % 30},{1_700_000_000 + 60 * n}" for u in range(40) for n in range(6)]
    rows += ["light,i3,1700100000", "light,i4,1700100060"]
    (data / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    items = "\n".join(f"i{n},Item {n}" for n in range(32))  # i30, i31: no interaction
    (data / "items.csv").write_text("item_id,title\n" + items + "\n")
    outs = {}
    for engine in ("local", "spark"):
        outs[engine] = tmp_path / engine
        _run("train", "--dataset", str(data), "--model", "itemknn", "--engine", engine,
             "--out", str(outs[engine]))  # fmt: skip
    ids = {e: json.loads((out / "ids.json").read_text()) for e, out in outs.items()}
    assert ids["spark"]["users"] == ids["local"]["users"] and "light" in ids["spark"]["users"]
    assert ids["spark"]["items"] == ids["local"]["items"] and len(ids["spark"]["items"]) == 32
    answers = [_run("recommend", "--model", str(out), "--user", "light", "--k", "3") for out in
               outs.values()]  # fmt: skip
    tables = [answer[answer.index("user light") :] for answer in answers]  # past "loaded <path>"
    assert tables[0] == tables[1] and "unknown user" not in tables[0]

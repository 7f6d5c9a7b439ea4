"""The smallest data a user may try first: one user. Every command answers, none crashes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recsemble.cli import app

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_one_user_evaluates_reports_and_trains(tmp_path: Path) -> None:
    data = tmp_path / "one.csv"
    rows = [f"solo,i{n},{1_700_000_000 + n}" for n in range(20)]
    data.write_text("user_id,item_id,timestamp\n" + "\n".join(rows))
    results = tmp_path / "r.json"
    _ok("evaluate", "--dataset", str(data), "--models", "itemknn", "--json", str(results))
    entry = json.loads(results.read_text())["itemknn"]
    assert "decision" not in entry  # one user: no paired comparison (it was KeyError 'all')
    _ok("report", str(results), "-o", str(tmp_path / "r.html"))
    _ok("train", "--dataset", str(data), "--out", str(tmp_path / "model"))  # routing skipped
    assert (tmp_path / "model" / "manifest.json").is_file()


def test_batch_needs_the_users_and_says_when_it_knows_none(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    rows = [f"u{u},i{(u * 3 + n) % 15},{1_700_000_000 + n}" for u in range(6) for n in range(6)]
    data.write_text("user_id,item_id,timestamp\n" + "\n".join(rows))
    model = tmp_path / "model"
    _ok("train", "--dataset", str(data), "--model", "pop", "--out", str(model))
    out = str(tmp_path / "lists")
    bare = runner.invoke(app, ["batch", "--model", str(model), "--output", out])
    assert bare.exit_code == 2 and "--dataset, --input" in bare.output  # not the demo's users
    strangers = tmp_path / "s.csv"
    strangers.write_text(data.read_text().replace("\nu", "\nx"))  # other user ids
    unknown = runner.invoke(app, ["batch", "--model", str(model), "--output", out,
                                  "--dataset", str(strangers)])  # fmt: skip
    assert unknown.exit_code == 2 and "none of the 6 users" in " ".join(unknown.output.split())
    _ok("batch", "--model", str(model), "--output", out, "--dataset", str(data))


def test_batch_lists_a_user_with_fewer_interactions_than_evaluation_needs(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    data = tmp_path / "d.csv"
    rows = [f"u{u},i{(u * 3 + n) % 15},{1_700_000_000 + n}" for u in range(6) for n in range(6)]
    rows += ["light,i1,1700000100", "light,i2,1700000101"]  # 2 items: the server answers them
    data.write_text("user_id,item_id,timestamp\n" + "\n".join(rows))
    model = tmp_path / "model"
    _ok("train", "--dataset", str(data), "--model", "itemknn", "--out", str(model))
    out = tmp_path / "lists"
    _ok("batch", "--model", str(model), "--output", str(out), "--dataset", str(data))
    lists = pq.read_table(out)
    users = set(lists.column("user").to_pylist())
    assert users == {f"u{u}" for u in range(6)} | {"light"}
    light = [i for u, i in zip(lists.column("user").to_pylist(), lists.column("item").to_pylist(),
                               strict=True) if u == "light"]  # fmt: skip
    assert light and not {"i1", "i2"} & set(light)  # their own items are not recommended


def test_batch_weighs_events_by_the_models_own_table(tmp_path: Path) -> None:
    """Trained with purchase = 20, batched without repeating it: the lists are the API's (they
    were computed with every event weighing 1, and load-recs served them as precomputed)."""
    import pyarrow.parquet as pq

    from recsemble.pipeline import Recommender, RequestOptions

    data = tmp_path / "d.csv"
    kinds = ("view", "view", "purchase")
    rows = [f"u{u},i{(u * 5 + n * n) % 23},{1_700_000_000 + n},{kinds[(u + n) % 3]}"
            for u in range(30) for n in range(7)]  # fmt: skip
    data.write_text("user_id,item_id,timestamp,event\n" + "\n".join(rows))
    model = tmp_path / "model"
    _ok("train", "--dataset", str(data), "--model", "itemknn", "--out", str(model),
        "--set", "data.event_weights={view=1,purchase=20}")  # fmt: skip
    out = tmp_path / "lists"
    _ok("batch", "--model", str(model), "--output", str(out), "--dataset", str(data), "--k", "5")
    lists = pq.read_table(out).to_pylist()
    recommender = Recommender.load(model)
    try:
        for user in {row["user"] for row in lists}:
            served = recommender.recommend(user, RequestOptions(k=5)).items
            batch = sorted((r for r in lists if r["user"] == user), key=lambda r: r["rank"])
            assert [r["item"] for r in batch] == [i.item_id for i in served], user
    finally:
        recommender.close()

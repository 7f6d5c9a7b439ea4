"""The smallest data a user may try first: one user. Every command answers, none crashes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
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


def test_batch_lists_every_user_the_trained_model_serves(tmp_path: Path) -> None:
    """A user with fewer interactions than the protocol evaluates is known to the served
    model (train keeps every user), so the batch has a list for them too."""
    data = tmp_path / "d.csv"
    rows = [f"u{u},i{(u * 3 + n) % 15},{1_700_000_000 + n}" for u in range(6) for n in range(u + 1)]
    data.write_text("user_id,item_id,timestamp\n" + "\n".join(rows))
    model = tmp_path / "model"
    _ok("train", "--dataset", str(data), "--model", "itemknn", "--out", str(model))
    out = tmp_path / "lists"
    _ok("batch", "--model", str(model), "--output", str(out), "--dataset", str(data), "--k", "3")
    written = pl.read_parquet(out)
    served = json.loads((model / "ids.json").read_text())["users"]
    assert sorted(set(written["user"].to_list())) == sorted(served) == [f"u{u}" for u in range(6)]

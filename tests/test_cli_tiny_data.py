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

"""`recsemble analyze` end to end on a small synthetic folder."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from recsemble.cli import app

runner = CliRunner()
MEMBERS = ["pop", "itemknn", "covisit"]


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _small_config(path: Path) -> Path:
    members = ", ".join(f'{{model = "{m}", candidates = 30}}' for m in MEMBERS)
    path.write_text(
        f"[ensemble]\nvalidation_folds = 1\nmembers = [{members}]\nranker = {{max_rounds = 10}}\n"
    )
    return path


def test_analyze_prints_overlap_gains_and_the_pruning_curve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _run("data", "synth", "--out", str(data), "--users", "300", "--items", "200",
         "--interactions", "6000", "--format", "csv")  # fmt: skip
    out, plot = tmp_path / "analysis.json", tmp_path / "curve.png"
    # k=5 from the config's first cut-off (analyze used 10 whatever the config said)
    text = _run(
        "analyze", "--dataset", str(data), "--config", str(_small_config(tmp_path / "r.toml")),
        "--set", "protocol.k=[20,5]", "--ranker-rounds", "10", "--json", str(out),
        "--plot", str(plot),
    )  # fmt: skip
    for title in ("Jaccard@5", "rank-biased overlap", "Spearman", "unique hits",
                  "Leave one member out", "Forward selection"):  # fmt: skip
        assert title in text
    assert "<- recommended" in text and "total runtime" in text
    result = json.loads(out.read_text())
    assert result["members"] == MEMBERS and result["k"] == 5
    assert set(result["jaccard"]) == set(MEMBERS) and result["jaccard"]["pop"]["pop"] == 1.0
    assert [len(step["members"]) for step in result["curve"]] == [1, 2, 3]
    assert set(result["leave_one_out_delta"]) == set(MEMBERS)
    # the printed line is valid config that prunes exactly what was not recommended
    prune_line = next(line for line in text.splitlines() if line.startswith("prune = ["))
    assert prune_line == result["prune_line"]
    pruned = tomllib.loads(f"[ensemble]\n{prune_line}")["ensemble"]["prune"]
    assert sorted(pruned + result["recommended"]) == sorted(MEMBERS)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_reports_a_bad_config_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[ensemble]\nprune = ["nope"]\n')
    result = runner.invoke(app, ["analyze", "--dataset", "synthetic", "--config", str(bad)])
    assert result.exit_code == 2 and "nope" in result.output

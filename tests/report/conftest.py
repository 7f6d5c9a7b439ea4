"""A real results.json from the CLI on tiny synthetic data, and its report, for the end-to-end
and browser tests: `data synth` -> `evaluate --json` (the ensemble with its analysis, itemknn,
an mmr sweep) -> `report`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsemble.cli import app
from tests.serving.conftest import TINY_ENSEMBLE


@dataclass(frozen=True)
class CliReport:
    results: Path
    html: Path
    output: str  # what `recsemble report` printed


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def cli_report(tmp_path_factory: pytest.TempPathFactory) -> CliReport:
    root = tmp_path_factory.mktemp("report")
    run_cli("data", "synth", "--out", str(root / "data"), "--users", "200", "--items", "150",
            "--interactions", "6000", "--seed", "3")  # fmt: skip
    (root / "tiny.toml").write_text(TINY_ENSEMBLE)
    results = root / "results.json"
    run_cli("evaluate", "--dataset", str(root / "data"), "--config", str(root / "tiny.toml"),
            "--models", "ensemble,itemknn", "--k", "10,20", "--json", str(results),
            "--rerank", "mmr", "--sweep", "rerank.mmr.lambda=0:1:0.5",
            "--set", "evaluate.analyze=true")  # fmt: skip
    html = root / "report.html"
    output = run_cli("report", str(results), "-o", str(html))
    return CliReport(results, html, output)

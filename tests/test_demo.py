"""`recsemble demo` end to end on a small data set: train, evaluate, report, serve, check the
URLs and curl lines it prints (the real `make demo` runs the same command on the demo data)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsemble.cli import app

SMALL = """
[protocol]
k = [10]
[evaluate]
baseline = "pop"
sweep = ["rerank.mmr.lambda=0.6,0.9"]
[ensemble]
validation_folds = 1
calibration = "isotonic"
members = [
  {model = "pop"}, {model = "itemknn", candidates = 40}, {model = "covisit", candidates = 40}
]
[ensemble.ranker]
kind = "logistic"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("demo")
    args = ["data", "synth", "--out", str(root / "data"), "--users", "200", "--items", "150"]
    args += ["--interactions", "6000", "--seed", "4"]
    assert CliRunner().invoke(app, args).exit_code == 0
    (root / "small.toml").write_text(SMALL)
    command = [sys.executable, "-m", "recsemble", "demo", "--out", str(root / "out")]
    command += ["--dataset", str(root / "data"), "--config", str(root / "small.toml")]
    command += ["--port", str(_free_port()), "--no-keep-serving"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "out", done.stdout


def test_demo_prints_answering_urls_and_curl_lines(demo_run: tuple[Path, str]) -> None:
    _, stdout = demo_run
    for name, path in (("dashboard", "/dashboard"), ("report", "/report"), ("API docs", "/docs")):
        assert re.search(rf"{name}\s+http://127\.0\.0\.1:\d+{path}\b", stdout), stdout
    curls = [line.strip() for line in stdout.splitlines() if line.strip().startswith("curl ")]
    assert len(curls) == 3
    assert "/recommendations" in curls[0] and "-X POST" in curls[1] and "/similar" in curls[2]


def test_demo_writes_the_results_and_report(demo_run: tuple[Path, str]) -> None:
    out, stdout = demo_run
    results = json.loads((out / "results.json").read_text())
    assert {"ensemble", "pop", "itemknn", "covisit"} <= set(results)
    assert "analysis" in results["ensemble"] and "decision" in results["ensemble"]
    assert results["ensemble"]["decision"]["statement"] in stdout
    report = (out / "report.html").read_text()
    assert "Plotly" in report and results["ensemble"]["decision"]["statement"][:40] in report
    assert (out / "model" / "manifest.json").exists()


def _posted_ids(store_file: Path) -> set[str]:
    from recsemble.store.sqlite import SQLiteStore

    store = SQLiteStore(store_file)
    try:
        return {stored.event.event_id for stored in store.events_since(0)}
    finally:
        store.close()


def test_a_second_run_keeps_the_events_posted_to_the_first(demo_run: tuple[Path, str]) -> None:
    """Re-running the demo on the same --out deleted store.db, with every event its server had
    acknowledged; it now serves on the same store (a restart), and --fresh starts over."""
    from recsemble.cli_demo import Paths, _start_server
    from recsemble.store import Event
    from recsemble.store.sqlite import SQLiteStore

    paths = Paths.under(demo_run[0])
    store = SQLiteStore(paths.store)
    store.append_events([Event("posted-by-a-user", "u-new", "i-new", "view", 1_700_000_000)])
    store.close()
    _start_server(paths, _free_port()).stop()
    assert "posted-by-a-user" in _posted_ids(paths.store)
    _start_server(paths, _free_port(), fresh=True).stop()
    assert "posted-by-a-user" not in _posted_ids(paths.store)

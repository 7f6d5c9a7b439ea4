"""Errors and plain lines of the command line: one clear line that names what is wrong, and
paths or names printed as written (rich would read "[x]" in them as markup and drop it)."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer
from typer.testing import CliRunner, Result

from recsemble.cli import _errors_exit, app
from recsemble.errors import DataError
from recsemble.evaluation.decision import decide

runner = CliRunner()
ROWS = "user_id,item_id,timestamp\n" + "\n".join(
    f"u{u},i{100 + (u * 3 + n) % 20},{1_700_000_000 + n}" for u in range(12) for n in range(8)
)
CALIBRATED = 'ensemble.calibration="isotonic"'
BINARY = b"PAR1\x15\x04\xb0\xff\x00\x01"  # the head of a Parquet file: not UTF-8
VERSION = "20250101T000000.000000Z-0123456789ab"  # a well-formed registry version name


def _said(result: Result) -> str:
    return " ".join(result.output.split())


def _fails(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output  # a handled error, not a crash
    return _said(result)


def test_paths_with_brackets_print_as_written(tmp_path: Path) -> None:
    folder = tmp_path / "set[v2]"
    folder.mkdir()
    (folder / "interactions.csv").write_text(ROWS)
    out = tmp_path / "out[final]" / "r.json"
    result = runner.invoke(
        app, ["evaluate", "--dataset", str(folder), "--models", "pop", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"results written to {out}" in result.output  # it printed .../out/r.json
    assert "Dataset(set[v2]:" in result.output  # the log line on stderr
    described = runner.invoke(app, ["data", "describe", str(folder)])
    assert "Dataset set[v2]" in described.output
    config = tmp_path / "c[local].toml"
    config.write_text("[protocol]\nseed = 3\n")
    shown = runner.invoke(app, ["config", "show", "--config", str(config)])
    assert "c[local].toml" in _said(shown)  # the source column


def test_train_and_recommend_print_bracketed_paths_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # short paths: the summary table would wrap long ones
    folder = Path("set[v2]")
    folder.mkdir()
    (folder / "interactions.csv").write_text(ROWS)
    model = Path("m[a]")
    trained = runner.invoke(
        app, ["train", "--dataset", str(folder), "--model", "pop", "--out", str(model)]
    )
    assert trained.exit_code == 0, trained.output
    said = _said(trained)
    assert "Dataset(set[v2]:" in said  # the log line; it printed "Dataset(set:"
    assert "m[a]" in said  # "saved to" in the summary table
    answered = runner.invoke(app, ["recommend", "--model", str(model), "--user", "u1"])
    assert answered.exit_code == 0, answered.output
    assert "loaded m[a] in" in _said(answered)
    parquet = Path("p[1]")
    parquet.mkdir()
    pl.read_csv(io.StringIO(ROWS)).write_parquet(parquet / "interactions.parquet")
    described = runner.invoke(app, ["data", "describe", str(parquet)])
    assert described.exit_code == 0, described.output  # polars read "[1]" as a glob


def test_binary_files_where_text_is_read_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # short paths: stderr wraps at 80 columns
    binary = Path("data.parquet")
    binary.write_bytes(BINARY)
    model = Path("model")
    model.mkdir()
    (model / "manifest.json").write_bytes(BINARY)
    said = _fails("config", "show", "--config", str(binary))  # was UnicodeDecodeError
    assert f"config file {binary} is not TOML (not UTF-8 text)" in said
    said = _fails("recommend", "--model", str(model), "--user", "u1")
    assert "manifest.json: not a JSON file (not UTF-8 text)" in said
    assert "not a results file" in _fails("compare", str(binary))


def test_a_data_file_given_as_model_folder_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("data.csv").write_text(ROWS)
    for args in (
        ["batch", "--model", "data.csv", "--dataset", "data.csv", "--output", "lists"],
        ["train", "--dataset", "data.csv", "--like", "data.csv", "--out", "m"],
    ):  # both were NotADirectoryError tracebacks
        assert "data.csv/manifest.json: cannot read it (Not a directory)" in _fails(*args)


def test_a_bug_key_error_says_it_is_internal(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit), _errors_exit():
        raise KeyError("all")  # a bare key: a bug's, not a message of ours
    said = " ".join(capsys.readouterr().err.split())
    assert "internal error: KeyError 'all'" in said


def test_decide_with_too_few_users_says_so() -> None:
    meta = {"baseline": "pop", "model": "itemknn", "role": "model"}
    results = {"itemknn": {"meta": meta, "vs_baseline": {"ndcg@10": {}}}}  # 1 user: no "all"
    with pytest.raises(DataError, match="fewer than 2 users were evaluated"):
        decide(results, "itemknn", "ndcg@10")  # was KeyError 'all'


def test_calibration_folds_beyond_the_users_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "one.csv"
    rows = [f"solo,i{n},{1_700_000_000 + n}" for n in range(20)]
    data.write_text("user_id,item_id,timestamp\n" + "\n".join(rows))
    out = str(tmp_path / "m")
    said = _fails("train", "--dataset", str(data), "--out", out, "--set", CALIBRATED)
    assert "1 validation user(s) cannot fill 3 folds" in said  # was a ValueError traceback
    assert "ensemble.calibration_folds" in said


def _commands(group: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    """(command path, command) of every leaf command under a typer group."""
    out: list[tuple[list[str], Any]] = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            out += _commands(command, [*path, name])
        else:
            out.append(([*path, name], command))
    return out


def test_help_texts_keep_their_brackets() -> None:
    """Option help is rich markup: "[rerank] stages" printed as " stages" and "pip install
    'recsemble[spark]'" as "pip install 'recsemble'" (a wrong install line)."""
    import re

    from typer.main import get_command

    for path, command in _commands(get_command(app), []):
        tokens = {
            token
            for param in command.params
            for token in re.findall(r"\[[\w.*]+\]", getattr(param, "help", None) or "")
        }
        if not tokens:
            continue
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
        shown = "".join(result.output.split())
        assert all(token in shown for token in tokens), (path, tokens)


def test_report_and_compare_name_an_analysis_file_given_for_results(tmp_path: Path) -> None:
    analysis = tmp_path / "analysis.json"  # the keys `recsemble analyze --json` writes
    analysis.write_text('{"members": ["pop"], "k": 10, "leave_one_out_delta": {}, '
                        '"prune_line": "prune = []", "meta": {}}')  # fmt: skip
    for args in (["report", str(analysis)], ["compare", str(analysis)]):
        said = _fails(*args)  # was "expected an object of model name -> results"
        assert "this is `recsemble analyze --json` output" in said, said


def test_a_store_that_cannot_be_opened_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    from recsemble.spark.scoring import SCHEMA

    monkeypatch.chdir(tmp_path)
    pq.write_table(SCHEMA.empty_table(), "lists.parquet")
    Path("notes.db").write_text("not a database")
    said = _fails("load-recs", "--input", "lists.parquet", "--model-version", VERSION,
                  "--store", "sqlite:///notes.db")  # fmt: skip
    assert "notes.db: cannot open it as a store: the file is not an SQLite database" in said
    assert Path("notes.db").read_text() == "not a database"
    unreachable = f"postgresql://u@/db?host={tmp_path}&port=1"  # was a ConnectionError traceback
    said = _fails("load-recs", "--input", "lists.parquet", "--model-version", VERSION,
                  "--store", unreachable)  # fmt: skip
    assert "--store: cannot connect to PostgreSQL" in said


def test_a_registry_path_that_cannot_be_a_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("keep me")
    said = _fails("serve", "--registry", "notes.txt", "--store", "sqlite:///s.db")
    assert "notes.txt: cannot create the registry folder (Not a directory" in said
    assert Path("notes.txt").read_text() == "keep me"  # was a NotADirectoryError traceback


@pytest.mark.parametrize("every", ["0", "-60"])
def test_a_retraining_period_below_a_second_is_refused(tmp_path: Path, every: str) -> None:
    store = f"sqlite:///{tmp_path / 's.db'}"
    with socket.socket() as taken:  # were it accepted, the server would stop at once
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        said = _fails("serve", "--registry", str(tmp_path / "r"), "--store", store,
                      "--port", port, "--retrain-every", every)  # fmt: skip
    assert "retrain-every" in said and "greater than or equal" in said  # -60: back to back


def test_a_port_in_use_is_refused_before_saying_serving(tmp_path: Path) -> None:
    """It printed "recsemble serving on http://127.0.0.1:PORT", then the bind error."""
    store = f"sqlite:///{tmp_path / 's.db'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        said = _fails("serve", "--registry", str(tmp_path / "r"), "--store", store,
                      "--port", port)  # fmt: skip
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in said
    assert "pick another with --port" in said and "serving on" not in said

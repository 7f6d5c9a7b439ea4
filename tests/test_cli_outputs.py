"""No command writes its results over, or into, the data it read."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recsemble.cli import app

runner = CliRunner()
ROWS = "user_id,item_id,timestamp\n" + "\n".join(
    f"u{u},i{100 + (u * 3 + n) % 20},{1_700_000_000 + n}" for u in range(12) for n in range(8)
)


def _fails(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code != 0, result.output
    return " ".join(result.output.split())


def test_outputs_never_replace_the_input_data(tmp_path: Path) -> None:
    data = tmp_path / "mydata.csv"
    data.write_text(ROWS)
    said = _fails("evaluate", "--dataset", str(data), "--models", "pop", "--json", str(data))
    assert f"--json {data} would write over the input data {data}" in said
    assert data.read_text() == ROWS  # the data is still there
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "interactions.csv").write_text(ROWS)
    dump = folder / "dump"
    said = _fails("evaluate", "--dataset", str(folder), "--models", "pop", "--dump", str(dump))
    assert "would write into the input data folder" in said and not dump.exists()
    said = _fails("tune", "--dataset", str(data), "--models", "pop-trending", "--out", str(data))
    assert "would write over the input data" in said
    results = tmp_path / "results.json"
    results.write_text("{}")
    said = _fails("report", str(results), "-o", str(results))
    assert "would write over the input data" in said and results.read_text() == "{}"


def test_names_and_errors_print_as_written(tmp_path: Path) -> None:
    """Square brackets are text, not rich markup: variant names and values stay whole."""
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "interactions.csv").write_text(ROWS)
    items = "\n".join(f"i{100 + i},{'a|b' if i % 2 else 'c'}" for i in range(20))
    (folder / "items.csv").write_text("item_id,categories\n" + items)
    results = tmp_path / "sweep.json"
    args = ["evaluate", "--dataset", str(folder), "--models", "pop-trending", "--json"]
    swept = runner.invoke(app, [*args, str(results), "--sweep", "rerank.mmr.lambda=0:1:1"])
    assert swept.exit_code == 0, swept.output
    compared = runner.invoke(app, ["compare", str(results), "--baseline", "pop"])
    said = " ".join(compared.output.split())
    assert "pop-trending+mmr[lambda=0] vs pop" in said and "mmr[lambda=1] vs pop" in said
    only = tmp_path / "only-baseline.json"
    only.write_text(json.dumps({"pop": json.loads(results.read_text())["pop"]}))
    assert "nothing to compare: it holds only the baseline 'pop'" in _fails(
        "compare", str(only), "--baseline", "pop"
    )  # it printed nothing and exited 0
    said = _fails("config", "show", "--set", "evaluate.models=[itemknn,pop]")
    assert "(got '[itemknn,pop]')" in said
    said = _fails("evaluate", "--dataset", str(folder), "--sweep", "rerank.mmr.lambda=a:b:c")
    assert "a:b:c" in said


def test_paths_of_the_wrong_kind_are_one_clear_line(tmp_path: Path) -> None:
    """A folder where a file is read, a file where a folder is read or written: no traceback."""
    data = tmp_path / "data.csv"
    data.write_text(ROWS)
    folder = tmp_path / "somedir"
    folder.mkdir()
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    cases = [
        (["compare", str(folder)], "cannot read it"),
        (["report", str(folder), "-o", str(tmp_path / "r.html")], "cannot read it"),
        (["config", "show", "--config", str(folder)], "cannot read it"),
        (["compare", str(data)], "not valid JSON"),
        (["compare", str(empty)], "holds no model results"),  # was StopIteration
        (["recommend", "--model", str(data), "--user", "u1"], "cannot read it"),
        (["train", "--dataset", str(data), "--model", "pop", "--out", f"{data}/m"], "is a file"),
    ]
    for args, needle in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)  # a handled error, not a crash
        assert needle in " ".join(result.output.split()), (args, result.output)


def test_a_dump_holds_only_this_runs_lists(tmp_path: Path) -> None:
    data = tmp_path / "mydata.csv"
    data.write_text(ROWS)
    dump = tmp_path / "dump"
    for models in ("pop,pop-trending", "pop"):
        result = runner.invoke(
            app, ["evaluate", "--dataset", str(data), "--models", models, "--dump", str(dump)]
        )
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in dump.iterdir()) == ["recs-pop.csv", "test.csv", "train.csv"]

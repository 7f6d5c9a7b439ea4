"""The command line, end to end, including the acceptance checks of the foundation issue."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsemble.cli import app

from . import reference_protocol as ref

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _fail(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    return result.output


def _read_rows(path: Path) -> list[tuple[str, str, int]]:
    with path.open(newline="") as fh:
        return [(r["user"], r["item"], int(r["timestamp"])) for r in csv.DictReader(fh)]


def _raw_movielens(root: Path, name: str) -> tuple[list[tuple[str, str, int]], dict[str, set[str]]]:
    """Interactions and genres read straight from the official files, without recsemble."""
    if name == "ml-100k":
        with (root / name / "u.data").open() as fh:
            rows = [(u, i, int(t)) for u, i, _, t in (line.split("\t") for line in fh)]
        genre_names = [
            g.split("|")[0] for g in (root / name / "u.genre").read_text().split("\n") if g
        ]
        genres = {}
        for line in (root / name / "u.item").read_text(encoding="latin-1").splitlines():
            parts = line.split("|")
            genres[parts[0]] = {
                g for g, flag in zip(genre_names, parts[5:], strict=True) if flag == "1"
            }
        return rows, genres
    with (root / name / "ratings.csv").open(newline="") as fh:
        rows = [(r["userId"], r["movieId"], int(r["timestamp"])) for r in csv.DictReader(fh)]
    with (root / name / "movies.csv").open(newline="", encoding="utf-8") as fh:
        genres = {
            r["movieId"]: set()
            if r["genres"] == "(no genres listed)"
            else set(r["genres"].split("|"))
            for r in csv.DictReader(fh)
        }
    return rows, genres


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["ml-100k", "ml-latest-small"])
@pytest.mark.parametrize("protocol", ["temporal-user", "temporal-global"])
def test_dump_matches_independent_protocol(
    dataset: str, protocol: str, shared_datasets: Path, tmp_path: Path
) -> None:
    _run(
        "evaluate", "--dataset", dataset, "--data-dir", str(shared_datasets),
        "--protocol", protocol, "--models", "pop,pop-trending", "--k", "10",
        "--json", str(tmp_path / "r.json"), "--dump", str(tmp_path / "dump"),
    )  # fmt: skip
    rows, genres = _raw_movielens(shared_datasets, dataset)
    prepared = ref.prepare(rows)
    splitter = ref.temporal_user if protocol == "temporal-user" else ref.temporal_global
    ref_train, ref_test = splitter(prepared)
    train = _read_rows(tmp_path / "dump" / "train.csv")
    test = _read_rows(tmp_path / "dump" / "test.csv")
    assert sorted(train) == sorted(ref_train)
    assert sorted(test) == sorted(ref_test)
    results = json.loads((tmp_path / "r.json").read_text())
    catalog = len({i for _, i, _ in prepared})
    for model in ("pop", "pop-trending"):
        recs: dict[str, list[str]] = {}
        with (tmp_path / "dump" / f"recs-{model}.csv").open(newline="") as fh:
            for r in sorted(csv.DictReader(fh), key=lambda r: (r["user"], int(r["rank"]))):
                recs.setdefault(r["user"], []).append(r["item"])
        assert set(recs) <= {u for u, _, _ in ref_test}
        seen = {(u, i) for u, i, _ in ref_train}
        assert not any((u, i) in seen for u, items in recs.items() for i in items)
        expected = ref.metrics(recs, ref_train, ref_test, catalog, 10, genres)
        for key, value in expected.items():
            assert results[model][key] == pytest.approx(value, abs=1e-9), (model, key)


@pytest.mark.realdata
def test_pop_reference_figures_ml100k(shared_datasets: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    _run(
        "evaluate",
        "--dataset",
        "ml-100k",
        "--data-dir",
        str(shared_datasets),
        "--models",
        "pop",
        "--json",
        str(out),
    )
    pop = json.loads(out.read_text())["pop"]
    assert pop["ndcg@10"] == pytest.approx(0.1158, abs=0.001)
    assert pop["recall@10"] == pytest.approx(0.0625, abs=0.001)
    assert pop["hit@10"] == pytest.approx(0.5345, abs=0.001)
    assert set(pop["slices"]) >= {"all", "20-99", "100+"}
    assert pop["slices"]["all"]["ndcg@10"] == pytest.approx(pop["ndcg@10"])
    assert 0.0 <= pop["longtail_hit_share@10"] <= 1.0


@pytest.mark.realdata
def test_compare_prints_paired_intervals(shared_datasets: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    _run(
        "evaluate", "--dataset", "ml-100k", "--data-dir", str(shared_datasets),
        "--models", "pop,pop-trending", "--json", str(out),
    )  # fmt: skip
    text = _run(
        "compare", str(out), "--baseline", "pop", "--metric", "ndcg@10", "--resamples", "200"
    )
    assert "pop-trending vs pop: ndcg@10" in text
    assert "95% CI" in text and "all" in text
    assert "unknown" not in _fail("compare", str(out), "--baseline", "nope")


def test_compare_names_the_slices_too_small_to_compare(tmp_path: Path) -> None:
    """A slice of one user has no paired comparison: the table says so rather than showing
    the other slices as if they were all (here user u0, 4 train items, is the 1-4 slice)."""
    rows = [f"u0,i{i},{i}" for i in range(5)]
    rows += [f"u{u},i{(u + i) % 12},{i}" for u in range(1, 4) for i in range(10)]
    data = tmp_path / "small.csv"
    data.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    out = tmp_path / "r.json"
    _run("evaluate", "--dataset", str(data), "--models", "itemknn", "--json", str(out))
    per_user = json.loads(out.read_text())["pop"]["per_user"]
    assert per_user["slice"].count("1-4") == 1
    text = " ".join(_run("compare", str(out), "--metric", "ndcg@10").split())
    assert "not compared, fewer than 2 users with values: 1-4 (1 user)" in text


def _small_log(path: Path, shift: int = 0) -> Path:
    rows = [
        f"u{u},i{(u * 7 + i * 3) % 40},{1000 + i * 10 + shift}"
        for u in range(30)
        for i in range(12)
    ]
    path.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    return path


def test_compare_pairs_two_runs_on_the_same_split(tmp_path: Path) -> None:
    """A config change was comparable only inside one run: `compare a.json b.json` refused
    the second file. The same model in both is named per run; pop, equal in both, once."""
    data = _small_log(tmp_path / "log.csv")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    _run("evaluate", "--dataset", str(data), "--models", "itemknn", "--json", str(a))
    _run(
        "evaluate", "--dataset", str(data), "--models", "itemknn", "--json", str(b),
        "--set", "models.itemknn.neighbors=2",
    )  # fmt: skip
    text = _run("compare", str(a), str(b), "--baseline", "a:itemknn", "--metric", "ndcg@10")
    assert "b:itemknn vs a:itemknn: ndcg@10" in text
    assert "pop vs a:itemknn: ndcg@10" in text and "a:pop" not in text
    mean = json.loads(b.read_text())["itemknn"]["ndcg@10"]
    assert f"{mean:.4f}" in text


def test_compare_refuses_runs_on_other_splits(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    _run("evaluate", "--dataset", str(_small_log(tmp_path / "x.csv")), "--json", str(a))
    shifted = _small_log(tmp_path / "y.csv", shift=1)  # one second later: another split
    _run("evaluate", "--dataset", str(shifted), "--json", str(b))
    said = " ".join(_fail("compare", str(a), str(b)).split())
    assert "its split is not the one of" in said and "b.json" in said
    old = json.loads(b.read_text())  # a file written before split_sha256 was recorded
    for entry in old.values():
        del entry["meta"]["split_sha256"]
    b.write_text(json.dumps(old))
    said = " ".join(_fail("compare", str(a), str(b)).split())
    assert "dataset is" in said and "y.csv" in said


def test_synth_describe_and_evaluate_generated_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _run(
        "data",
        "synth",
        "--out",
        str(data),
        "--users",
        "300",
        "--items",
        "200",
        "--interactions",
        "6000",
    )
    described = _run("data", "describe", str(data))
    assert "users" in described and "interactions" in described
    out = tmp_path / "r.json"
    text = _run(
        "evaluate", "--dataset", str(data), "--models", "pop-trending", "--k", "5,10",
        "--json", str(out),
    )  # fmt: skip
    assert "pop-trending" in text and "ndcg@5" in text
    results = json.loads(out.read_text())
    assert list(results) == ["pop", "pop-trending"]  # the baseline is always there, first
    assert {"ndcg@5", "ndcg@10", "ild@10", "coverage@10", "novelty@10", "arp@10"} <= set(
        results["pop"]
    )


def test_config_show_lists_sources(tmp_path: Path) -> None:
    toml = tmp_path / "recsemble.toml"
    toml.write_text(
        '[protocol]\nname = "temporal-global"\n[models.pop-trending]\nhalf_life_days = 3\n'
    )
    text = _run("config", "show", "--config", str(toml), "--set", "protocol.k=[10,20]")
    assert "temporal-global" in text and f"file {toml}" in text.replace("\n", "")
    assert "cli" in text and "default" in text


def test_evaluate_warns_when_the_split_point_is_full_of_ties(tmp_path: Path) -> None:
    rows = [f"u{u},i{i},1700000000" for u in range(30) for i in range(u % 7, u % 7 + 8)]
    data = tmp_path / "same-time.csv"
    data.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    out = tmp_path / "results.json"
    text = _run("evaluate", "--dataset", str(data), "--models", "pop", "--json", str(out))
    assert "100% of the test interactions have the timestamp of the split point" in " ".join(
        text.split()
    )
    assert json.loads(out.read_text())["pop"]["meta"]["boundary_tie_share"] == 1.0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["evaluate", "--models", "pop,itemknnn"], "unknown model"),
        (["evaluate", "--models", "POP"], "unknown model 'POP'; did you mean 'pop'?"),
        (["train", "--model", "EASE", "--out", "m"], "did you mean 'ease'?"),
        (["evaluate", "--k", "ten"], "--k takes integers"),
        (["evaluate", "--k", "10,0"], "protocol.k.0: Input should be greater"),
        (["evaluate", "--set", "protocol.k=[]"], "protocol.k: List should have at least 1"),
        (["evaluate", "--protocol", "random"], "protocol.name"),
        (["evaluate", "--set", "protocol.tset_fraction=0.1"], "test_fraction"),
        (["evaluate", "--dataset", "/no/such/file.csv"], "/no/such/file.csv"),
        (["data", "synth", "--out", "x", "--format", "xml"], "parquet or csv"),
        (["data", "synth", "--out", "x", "--items", "20"], "n_items (20) must be >= n_categories"),
    ],
)
def test_bad_input_gets_a_clear_error(args: list[str], needle: str) -> None:
    assert needle in _fail(*args)


def test_output_paths_are_checked_before_any_work(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    cases = [
        (["evaluate", "--json", str(tmp_path)], "--json"),
        (["evaluate", "--dump", str(a_file)], "--dump"),
        (["evaluate", "--json", str(a_file / "results.json")], "is a file, not a folder"),
        (["tune", "--models", "pop-trending", "--out", str(tmp_path)], "--out"),
        (["report", str(a_file), "-o", str(tmp_path)], "--out"),
        (["data", "synth", "--out", str(a_file)], "--out"),
        (["train", "--model", "pop", "--out", str(tmp_path)], "does not hold a saved model"),
    ]
    for args, needle in cases:
        # The dataset does not exist: a check made after loading it would name it instead.
        data = ["--dataset", str(tmp_path / "missing.csv")] if args[0] != "report" else []
        text = " ".join(_fail(*args, *([] if args[0] in ("data",) else data)).split())
        assert needle in text and "missing.csv" not in text, (args, text)
    assert a_file.read_text() == "keep me"


def test_data_too_thin_for_the_protocol_is_named(tmp_path: Path) -> None:
    data = tmp_path / "thin.csv"
    data.write_text("user_id,item_id,timestamp\nu1,i1,5\nu1,i2,6\nu2,i1,7\n")
    text = " ".join(_fail("evaluate", "--dataset", str(data), "--models", "pop").split())
    assert "none of its 2 users has the 5 distinct interactions" in text

"""Hyper-parameter tuning: validation window only, spaces valid, TOML that evaluate accepts."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from recsemble.cli import app
from recsemble.config import resolve
from recsemble.data.dataset import Dataset
from recsemble.data.synthetic import SyntheticConfig, write_synthetic
from recsemble.errors import ConfigError
from recsemble.evaluation import search_spaces, tuning
from recsemble.evaluation.protocol import Split, validation_split
from recsemble.evaluation.workflow import build_models, load_and_split
from recsemble.generators.popularity import TrendingPopularity

runner = CliRunner()
SMALL = SyntheticConfig(n_users=300, n_items=200, n_interactions=6000)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    write_synthetic(folder, SMALL)
    return folder


def _pairs(dataset: Dataset) -> set[tuple[int, int]]:
    inter = dataset.interactions
    return set(zip(inter["user_idx"].to_list(), inter["item_idx"].to_list(), strict=True))


@pytest.mark.parametrize("name", sorted(search_spaces.SEARCH_SPACES))
def test_every_space_key_is_a_valid_config_value(name: str) -> None:
    search_spaces.check_space(name)


def test_a_space_key_that_is_no_config_field_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        search_spaces.SEARCH_SPACES, "pop-trending", {"half_lfe": {"float": [1, 2]}}
    )
    with pytest.raises(ConfigError, match="'half_lfe' is not a TrendingConfig field"):
        search_spaces.check_space("pop-trending")
    monkeypatch.setitem(
        search_spaces.SEARCH_SPACES, "pop-trending", {"half_life_days": {"int": [-5, 2]}}
    )
    with pytest.raises(ConfigError, match="half_life_days=-5"):
        search_spaces.check_space("pop-trending")
    monkeypatch.setitem(
        search_spaces.SEARCH_SPACES, "pop-trending", {"half_life_days": {"float": [2, 1]}}
    )
    with pytest.raises(ConfigError, match="malformed"):
        search_spaces.check_space("pop-trending")


def test_tune_sees_only_the_validation_window(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resolve(None, {"data.dataset": str(data_dir)}, env={}).config
    _, outer = load_and_split(config)
    expected = validation_split(outer)
    outer_test = _pairs(outer.test)
    splits: list[Split] = []
    fitted: list[Dataset] = []
    real_tune_model, real_fit = tuning.tune_model, TrendingPopularity.fit

    def spy_tune_model(name: str, validation: Split, **kwargs: Any) -> tuning.TuningResult:
        splits.append(validation)
        return real_tune_model(name, validation, **kwargs)

    def spy_fit(self: TrendingPopularity, dataset: Dataset) -> TrendingPopularity:
        fitted.append(dataset)
        return real_fit(self, dataset)

    monkeypatch.setattr(tuning, "tune_model", spy_tune_model)
    monkeypatch.setattr(TrendingPopularity, "fit", spy_fit)
    report = tuning.tune(config, ["pop-trending"], n_trials=4, seed=3)
    assert len(splits) == 1 and len(fitted) == 4
    assert splits[0].test.interactions.equals(expected.test.interactions)
    assert splits[0].train.interactions.equals(expected.train.interactions)
    for dataset in fitted:
        assert dataset.interactions.equals(expected.train.interactions)
        assert not _pairs(dataset) & outer_test  # the outer test part never reaches fit
    assert not _pairs(splits[0].test) & outer_test  # ... nor the measurement
    result = report.results["pop-trending"]
    assert result.n_trials == 4 and 0.0 < result.best_value <= 1.0
    assert result.base_value is not None and result.best_value >= result.base_value
    again = real_tune_model("pop-trending", expected, n_trials=4, seed=3)
    assert again.params == result.params and again.best_value == result.best_value


def test_cli_writes_a_config_that_evaluate_accepts(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tuned.toml"
    args = ["tune", "--dataset", str(data_dir), "--models", "pop-trending,itemknn"]
    args += ["--trials", "3", "--out", str(out), "--set", "protocol.k=[5,10]"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# Tuned hyper-parameters")
    assert "recsemble tune --dataset" in text and "--trials 3" in text
    raw = tomllib.loads(text)
    assert raw["evaluate"]["models"] == ["pop-trending", "itemknn"]
    assert raw["protocol"]["k"] == [5, 10]
    assert set(raw["models"]["itemknn"]) == set(search_spaces.SEARCH_SPACES["itemknn"])
    resolved = resolve(out, env={}).config
    assert resolved.data.dataset == str(data_dir)
    assert resolved.model_config_for("itemknn").neighbors == raw["models"]["itemknn"]["neighbors"]
    results = tmp_path / "r.json"
    evaluated = runner.invoke(app, ["evaluate", "--config", str(out), "--json", str(results)])
    assert evaluated.exit_code == 0, evaluated.output
    assert list(json.loads(results.read_text())) == ["pop", "pop-trending", "itemknn"]


def test_without_models_the_configured_tunable_ones_are_tuned(
    data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tuned.toml"
    args = ["tune", "--dataset", str(data_dir), "--trials", "2", "--out", str(out)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert tomllib.loads(out.read_text())["evaluate"]["models"] == ["pop-trending"]  # not pop


def test_models_to_tune_do_not_replace_the_configured_ones(data_dir: Path, tmp_path: Path) -> None:
    # --models names what to tune; the experiment the config evaluates keeps its other models.
    given = tmp_path / "given.toml"
    given.write_text('[evaluate]\nmodels = ["itemknn", "pop-trending"]\n')
    out = tmp_path / "tuned.toml"
    args = ["tune", "--config", str(given), "--dataset", str(data_dir), "--models", "pop-trending"]
    result = runner.invoke(app, [*args, "--trials", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = tomllib.loads(out.read_text())
    assert written["evaluate"]["models"] == ["itemknn", "pop-trending"]
    assert list(written["models"]) == ["pop-trending"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--models", "itemknnn"], "unknown model"),
        (["--models", "pop"], "no search space for 'pop'"),
        (["--models", "pop-trending", "--trials", "0"], "Invalid value"),
        (["--models", "pop-trending", "--metric", "ndgc@10"], "ndcg@10"),
    ],
)
def test_bad_input_gets_a_clear_error(data_dir: Path, args: list[str], needle: str) -> None:
    result = runner.invoke(app, ["tune", "--dataset", str(data_dir), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output


def test_library_rejects_bad_trials_and_metrics(data_dir: Path) -> None:
    config = resolve(None, {"data.dataset": str(data_dir)}, env={}).config
    _, outer = load_and_split(config)
    validation = validation_split(outer)
    with pytest.raises(ConfigError, match="trials must be >= 1"):
        tuning.tune_model("pop-trending", validation, n_trials=0)
    with pytest.raises(ConfigError, match="metric"):
        tuning.parse_metric("ndcg")
    with pytest.raises(ConfigError, match="no models"):
        tuning.tune(config, [])
    # A hard window replaces the searched half-life: refused before any trial runs.
    with pytest.raises(ConfigError, match=r"cannot tune pop-trending.*not both"):
        tuning.tune_model("pop-trending", validation, base_params={"window_days": 3}, n_trials=2)


def test_rendered_values_are_valid_toml() -> None:
    values = {"a": 1.5e-05, "b": True, "c": 'x "y"\n', "d": [1, 2], "e": {"view": 1.0}}
    parsed = tomllib.loads("\n".join(tuning._table("t", values)))
    assert parsed["t"] == values


EXPERIMENT = """
[protocol]
seed = 7
bootstrap_resamples = 200
[evaluate]
models = ["itemknn", "ensemble"]
rerank = ["mmr"]
[ensemble]
serving_top = "none"
members = [{model = "pop"}, {model = "itemknn", candidates = 40}]
[ensemble.ranker]
kind = "logistic"
[rerank.mmr]
lambda = 0.5
[models.pop-trending]
window_days = 3
"""


def test_the_written_config_keeps_the_experiment(tmp_path: Path) -> None:
    """Only [models.*] and the tuned names change: evaluating the written file runs the
    experiment the input described (its ensemble, re-ranking, seed), not the defaults."""
    given = tmp_path / "given.toml"
    given.write_text(EXPERIMENT)
    config = resolve(given).config
    result = tuning.TuningResult("userknn", {"neighbors": 30}, 0.2, 0.2, 0.1, 3, 1.0)
    report = tuning.TuningReport("ndcg@10", "temporal-user", 100, {"userknn": result})
    written = tmp_path / "tuned.toml"
    tuning.write_config(written, config, report, "recsemble tune ...")
    again = resolve(written).config
    assert again.models == {"pop-trending": {"window_days": 3}, "userknn": {"neighbors": 30}}
    assert again.evaluate.models == ["itemknn", "ensemble", "userknn"]
    for section in ("protocol", "ensemble", "rerank"):
        assert getattr(again, section) == getattr(config, section), section
    assert again.evaluate.model_dump(exclude={"models"}) == config.evaluate.model_dump(
        exclude={"models"}
    )


def test_the_written_config_evaluates_the_reranked_default_models(tmp_path: Path) -> None:
    # rerank_models names a default model (evaluate.models left unset): the written file must
    # still evaluate it, or `evaluate` refuses the file.
    given = tmp_path / "given.toml"
    given.write_text('[evaluate]\nrerank = ["mmr"]\nrerank_models = ["pop-trending"]\n')
    result = tuning.TuningResult("userknn", {"neighbors": 30}, 0.2, 0.2, 0.1, 3, 1.0)
    report = tuning.TuningReport("ndcg@10", "temporal-user", 100, {"userknn": result})
    written = tmp_path / "tuned.toml"
    tuning.write_config(written, resolve(given).config, report, "recsemble tune ...")
    again = resolve(written).config
    assert again.evaluate.models == ["userknn", "pop-trending"]
    build_models(again)  # what evaluate runs first: it checks rerank_models


def test_paired_gain_se_is_mean_over_standard_error() -> None:
    gain = np.array([0.3, -0.1, 0.2, 0.0])
    expected = gain.mean() / (gain.std(ddof=1) / 2.0)
    assert tuning.paired_gain_se(gain) == pytest.approx(expected)
    assert tuning.paired_gain_se(np.full(5, 0.01)) == math.inf  # the same gain for everyone
    assert tuning.paired_gain_se(np.zeros(5)) == 0.0
    assert tuning.paired_gain_se(np.array([0.5])) == 0.0  # one user says nothing


def _scripted_objective(
    monkeypatch: pytest.MonkeyPatch, mean_gain: float, spread: float
) -> list[float]:
    """Trial 0 (the base) scores 0.2 for every user; every later trial i gains
    mean_gain * i / 10 on average, each user +-spread around it."""
    means: list[float] = []

    def per_user(self: tuning.ValidationObjective, model: Any) -> np.ndarray:
        n, trial = self.users.size, len(means)
        signs = np.resize([1.0, -1.0], n)
        signs[-1] = 0.0 if n % 2 else signs[-1]  # the spread itself adds nothing on average
        values = np.full(n, 0.2)
        if trial:
            values += mean_gain * trial / 10 + spread * signs
        means.append(float(values.mean()))
        return values

    monkeypatch.setattr(tuning.ValidationObjective, "per_user", per_user)
    return means


@pytest.mark.parametrize(
    ("mean_gain", "spread", "min_gain_se", "kept"),
    [
        (0.002, 0.1, 1.0, True),  # a gain far inside its noise: the base stays
        (0.002, 0.1, 0.0, False),  # the rule switched off: the best trial wins
        (0.05, 0.01, 1.0, False),  # a gain well outside the noise
    ],
)
def test_the_base_is_kept_unless_the_gain_beats_the_noise(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    mean_gain: float,
    spread: float,
    min_gain_se: float,
    kept: bool,
) -> None:
    config = resolve(None, {"data.dataset": str(data_dir)}, env={}).config
    _, outer = load_and_split(config)
    validation = validation_split(outer)
    means = _scripted_objective(monkeypatch, mean_gain, spread)
    result = tuning.tune_model(
        "pop-trending", validation, n_trials=4, seed=0, min_gain_se=min_gain_se
    )
    assert result.kept_base is kept and result.gain_se is not None
    assert result.best_value == pytest.approx(max(means))
    assert result.base_value == pytest.approx(means[0])
    assert result.value == pytest.approx(means[0] if kept else max(means))
    assert (result.gain_se <= 1.0) is (mean_gain < 0.01)
    base_params = TrendingPopularity.Config().model_dump()
    chosen = {key: base_params[key] == value for key, value in result.params.items()}
    assert all(chosen.values()) is kept


def test_the_written_header_shows_the_gain_and_the_kept_base(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted_objective(monkeypatch, 0.002, 0.1)
    out = tmp_path / "tuned.toml"
    args = ["tune", "--dataset", str(data_dir), "--models", "pop-trending", "--trials", "3"]
    result = runner.invoke(app, [*args, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "base kept" in " ".join(result.output.split())  # rich wraps long lines
    text = out.read_text()
    assert "--min-gain-se 1" in text and "gain/SE" in text
    row = next(line for line in text.splitlines() if line.startswith("#   pop-trending"))
    assert row.split()[-2].endswith("*")
    bad = runner.invoke(app, [*args, "--min-gain-se", "-1", "--out", str(out)])
    assert bad.exit_code == 2 and "min-gain-se" in bad.output

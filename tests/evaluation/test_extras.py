"""results.json beyond the metrics: item-popularity slices, paired comparisons, roles, the
decision statement, and the ensemble's analysis and reliability curves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from recsemble.cli import app
from recsemble.config import RecsembleConfig
from recsemble.evaluation.decision import decide
from recsemble.evaluation.item_slices import item_popularity_slices
from recsemble.evaluation.workflow import run_evaluation


def test_item_slices_known_answer() -> None:
    # 5 items: head = the ceil(0.2 * 5) = 1 most popular, item 0; tail = items 1..4.
    popularity = np.array([10, 5, 1, 1, 0])
    lists = np.array([[0, 2, -1], [1, 3, 4]])
    truth = sp.csr_array(np.array([[1, 0, 0, 1, 0], [1, 1, 0, 0, 1]]))
    out = item_popularity_slices(lists, truth, popularity, (2, 3))
    head, tail = out["head"], out["tail"]
    assert head["n_items"] == 1 and tail["n_items"] == 4
    assert head["n_test_interactions"] == 2 and tail["n_test_interactions"] == 3
    # k=2: user 0 lists [0, 2] (hit 0, head), user 1 lists [1, 3] (hit 1, tail)
    assert head["recall@2"] == pytest.approx(1 / 2)
    assert tail["recall@2"] == pytest.approx(1 / 3)
    assert head["list_share@2"] == pytest.approx(1 / 4)
    # k=3: user 1 also gets 4 (a tail hit); user 0's third slot is empty
    assert tail["recall@3"] == pytest.approx(2 / 3)
    assert tail["list_share@3"] == pytest.approx(4 / 5)


def _comparison(mean_a: float, mean_b: float, low: float, high: float) -> dict[str, float]:
    return {
        "n_users": 100,
        "mean_a": mean_a,
        "mean_b": mean_b,
        "mean_diff": mean_a - mean_b,
        "ci_low": low,
        "ci_high": high,
        "p_wilcoxon": 0.001,
        "p_ttest": 0.002,
    }


def _results(slices: dict[str, tuple[float, float]], overall: tuple[float, float]) -> Any:
    by_slice = {"all": _comparison(0.3, 0.2, *overall)}
    by_slice.update({name: _comparison(0.3, 0.2, lo, hi) for name, (lo, hi) in slices.items()})
    meta = {"baseline": "pop", "model": "ensemble", "role": "model"}
    return {"ensemble": {"meta": meta, "vs_baseline": {"ndcg@10": by_slice}}}


def test_decision_names_won_lost_and_tied_slices() -> None:
    results = _results(
        {"1-4": (-0.05, -0.01), "5-19": (0.02, 0.2), "20-99": (-0.01, 0.1)}, (0.05, 0.15)
    )
    record = decide(results, "ensemble", "ndcg@10")
    assert record["slices_won"] == ["5-19"]
    assert record["slices_lost"] == ["1-4"]
    assert record["slices_tied"] == ["20-99"]
    assert record["ab_test"] is True
    assert record["relative_gain"] == pytest.approx(0.5)
    assert record["relative_ci_low"] == pytest.approx(0.25)
    text = record["statement"]
    assert "beats popularity by +50.0% NDCG@10 [95% CI +25.0%, +75.0%]" in text
    # it read "wins in every user slice except 1-4 (loses), ..." for 1 slice won of 3
    assert (
        "wins in 1 of 3 user slices (5-19); loses in 1-4; no significant difference in 20-99"
        in text
    )
    assert "worth an A/B test: yes" in text


def test_decision_names_the_slices_too_small_to_compare() -> None:
    results = _results({"5-19": (0.02, 0.2)}, (0.05, 0.15))
    sizes = {"all": 101, "cold": 0, "1-4": 1, "5-19": 100}
    results["ensemble"]["slices"] = {name: {"n_users": n} for name, n in sizes.items()}
    record = decide(results, "ensemble", "ndcg@10")
    assert record["slices_too_small"] == ["1-4"]  # an empty slice is not named
    # it read "wins in every user slice" with the one-user slice never compared
    assert (
        "wins in every user slice (history length; 1-4 too small to compare)"
        in (record["statement"])
    )


def test_decision_says_no_when_the_interval_includes_zero() -> None:
    record = decide(_results({"5-19": (-0.01, 0.2)}, (-0.02, 0.2)), "ensemble", "ndcg@10")
    assert record["ab_test"] is False
    assert "does not significantly beat popularity: " in record["statement"]
    lower = _results({"5-19": (-0.2, 0.01)}, (-0.2, 0.01))  # lower, within the noise
    lower["ensemble"]["vs_baseline"]["ndcg@10"]["all"].update(mean_a=0.15, mean_diff=-0.05)
    text = decide(lower, "ensemble", "ndcg@10")["statement"]
    assert "does not significantly beat popularity: -25.0% NDCG@10" in text  # was "by -25.0%"
    assert "worth an A/B test: no" in record["statement"]
    assert "includes zero" in record["statement"]


def test_decision_says_worse_when_the_interval_lies_below_zero() -> None:
    """It read "does not significantly beat popularity by -50.0%" for a significant loss."""
    meta = {"baseline": "pop", "model": "ensemble", "role": "model"}
    by_slice = {"all": _comparison(0.1, 0.2, -0.15, -0.05)}
    results = {"ensemble": {"meta": meta, "vs_baseline": {"ndcg@10": by_slice}}}
    text = decide(results, "ensemble", "ndcg@10")["statement"]
    expected = "is significantly worse than popularity by -50.0% NDCG@10 [95% CI -75.0%, -25.0%]"
    assert expected in text and "does not significantly beat" not in text


def test_decision_over_a_baseline_scoring_zero_is_absolute() -> None:
    """A baseline mean of 0 gave "+nan%" figures, and a significant gain was called "under
    1%, too small to see online"."""
    meta = {"baseline": "pop", "model": "ensemble", "role": "model"}
    by_slice = {"all": _comparison(0.3, 0.0, 0.1, 0.5)}
    results = {"ensemble": {"meta": meta, "vs_baseline": {"ndcg@10": by_slice}}}
    record = decide(results, "ensemble", "ndcg@10")
    assert "beats popularity by +0.3000 NDCG@10 [95% CI +0.1000, +0.5000]" in record["statement"]
    assert "nan" not in record["statement"] and record["ab_test"] is True


TINY = """
[protocol]
k = [5, 10]
[evaluate]
models = ["ensemble", "itemknn"]
analyze = true
analysis_users = 60
sweep = ["rerank.mmr.lambda=0.5,0.9"]
[ensemble]
validation_folds = 1
calibration = "isotonic"
members = [
  {model = "pop"}, {model = "itemknn", candidates = 30}, {model = "covisit", candidates = 30}
]
[ensemble.ranker]
kind = "logistic"
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import tomllib

    root: Path = tmp_path_factory.mktemp("extras")
    args = ["data", "synth", "--out", str(root), "--users", "150", "--items", "100"]
    args += ["--interactions", "4000", "--seed", "5"]
    assert CliRunner().invoke(app, args).exit_code == 0
    config = RecsembleConfig.model_validate({**tomllib.loads(TINY), "data": {"dataset": str(root)}})
    return run_evaluation(config).results


def test_roles_and_variant_settings_are_recorded(results: dict[str, Any]) -> None:
    assert results["pop"]["meta"]["role"] == "baseline"
    assert results["itemknn"]["meta"]["role"] == "model"
    meta = results["itemknn+mmr[lambda=0.5]"]["meta"]
    assert meta["role"] == "variant" and meta["variant_of"] == "itemknn"
    assert meta["sweep"] == {"stage": "mmr", "key": "lambda", "value": 0.5}
    assert all(entry["meta"]["baseline"] == "pop" for entry in results.values())


def test_comparisons_match_the_stored_means(results: dict[str, Any]) -> None:
    assert "vs_baseline" not in results["pop"]
    row = results["ensemble"]["vs_baseline"]["ndcg@5"]["all"]
    assert row["mean_a"] == pytest.approx(results["ensemble"]["ndcg@5"])
    assert row["mean_b"] == pytest.approx(results["pop"]["ndcg@5"])
    assert row["ci_low"] <= row["mean_diff"] <= row["ci_high"]


def test_decision_statement_numbers_are_the_records(results: dict[str, Any]) -> None:
    record = results["ensemble"]["decision"]
    shown = [float(x) / 100 for x in re.findall(r"([+-]\d+\.\d)%", record["statement"])]
    stored = [record["relative_gain"], record["relative_ci_low"], record["relative_ci_high"]]
    assert shown == pytest.approx(stored, abs=0.0005)
    means = re.search(r"\((\d\.\d{4}) vs (\d\.\d{4})", record["statement"])
    assert means is not None
    assert float(means[1]) == pytest.approx(record["mean"], abs=5e-5)
    assert float(means[2]) == pytest.approx(record["baseline_mean"], abs=5e-5)


def test_ensemble_diagnostics(results: dict[str, Any]) -> None:
    analysis = results["ensemble"]["analysis"]
    assert analysis["members"] == ["pop", "itemknn", "covisit"]
    assert results["ensemble"]["meta"]["n_users"] > 60  # the analysis ran on a sample of 60
    assert analysis["users"] == analysis["slices"]["all"] == 60
    assert set(analysis["leave_one_out_delta"]) == set(analysis["members"])
    assert analysis["curve"] and analysis["recommended"]
    curves = results["ensemble"]["calibration"]["curves"]
    assert set(curves) == {"ensemble", "pop", "itemknn", "covisit"}
    for curve in curves.values():
        assert len(curve["mean_predicted"]) == len(curve["observed"]) == len(curve["count"])
        assert 0.0 <= curve["ece"] <= 1.0
    assert "analysis" not in results["itemknn"]


def test_rerank_models_limits_the_variants_and_must_be_evaluated() -> None:
    from recsemble.errors import ConfigError
    from recsemble.evaluation.workflow import build_models

    evaluate = {"models": ["itemknn", "ease"], "sweep": ["rerank.mmr.lambda=0.5,0.9"]}
    config = RecsembleConfig.model_validate({"evaluate": {**evaluate, "rerank_models": ["ease"]}})
    models, specs = build_models(config)
    assert {v.name for v in specs} == {"ease+mmr[lambda=0.5]", "ease+mmr[lambda=0.9]"}
    assert set(models) == {"pop", "itemknn", "ease", *(v.name for v in specs)}
    wrong = RecsembleConfig.model_validate({"evaluate": {**evaluate, "rerank_models": ["bpr"]}})
    with pytest.raises(ConfigError, match="bpr"):
        build_models(wrong)


def test_popularity_is_evaluated_whatever_the_baseline() -> None:
    from recsemble.evaluation.workflow import build_models

    config = RecsembleConfig.model_validate(
        {"evaluate": {"models": ["covisit", "ease"], "baseline": "itemknn"}}
    )
    models, _ = build_models(config)
    assert list(models) == ["itemknn", "pop", "covisit", "ease"]  # pop was left out


def test_comparisons_use_the_protocol_bootstrap_settings(tmp_path: Path) -> None:
    """protocol.bootstrap_resamples and protocol.seed reach vs_baseline (they were accepted
    and ignored: every run drew 1,000 resamples from seed 0)."""
    from recsemble.evaluation.significance import compare_per_slice

    args = ["data", "synth", "--out", str(tmp_path), "--users", "80", "--items", "100"]
    assert CliRunner().invoke(app, [*args, "--interactions", "1500", "--seed", "2"]).exit_code == 0
    protocol = {"bootstrap_resamples": 37, "seed": 11}
    config = RecsembleConfig.model_validate(
        {
            "data": {"dataset": str(tmp_path)},
            "protocol": protocol,
            "evaluate": {"models": ["itemknn"]},
        }
    )
    results = run_evaluation(config).results
    per_user = results["itemknn"]["per_user"]
    expected = compare_per_slice(
        per_user["ndcg@10"],
        results["pop"]["per_user"]["ndcg@10"],
        per_user["slice"],
        n_resamples=37,
        seed=11,
    )
    assert results["itemknn"]["vs_baseline"]["ndcg@10"] == expected
    assert expected["all"]["n_resamples"] == 37

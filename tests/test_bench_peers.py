"""bench_generators' "matched" implicit rows: every committed tuned config maps onto implicit's
own constructor arguments, and a matched row is compared with the tuned row only."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from implicit.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender
from threadpoolctl import threadpool_limits

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
sys.path.insert(0, str(BENCHMARKS / "peers"))

import plan  # noqa: E402

import bench_generators  # noqa: E402
import report  # noqa: E402

KINDS = {
    "als": AlternatingLeastSquares,
    "bpr": BayesianPersonalizedRanking,
    "cosine": CosineRecommender,
    "tfidf": TFIDFRecommender,
    "bm25": BM25Recommender,
}


# implicit's own cosine normalisation hands its fit a COO matrix, and it warns about it.
@pytest.mark.filterwarnings("ignore:Method expects CSR input")
@pytest.mark.parametrize("dataset", ["ml-100k", "ml-latest-small"])
def test_tuned_configs_map_onto_implicit_models_that_fit(dataset: str) -> None:
    tuned, _ = bench_generators._tuned_configs(dataset, ["ials", "bpr", "itemknn", "ease"])
    assert {"ials", "bpr", "itemknn"} <= set(tuned)
    assert plan.implicit_matched("ease", tuned["ease"]) is None
    matrix = sp.random(30, 20, density=0.3, format="csr", dtype=np.float32, random_state=0)
    matrix.data[:] = 1.0
    for model in ("ials", "bpr", "itemknn"):
        matched = plan.implicit_matched(model, tuned[model])
        assert matched is not None
        name, params = matched
        # Small enough to fit at once; the keys are what the benchmark passes.
        params |= {"iterations": 1} if "iterations" in params else {}
        with threadpool_limits(1, "blas"):  # as implicit asks (and run_implicit.py does)
            KINDS[name](**params).fit(sp.csr_matrix(matrix), show_progress=False)


def test_matched_tuned_ials_keeps_the_same_confidence() -> None:
    config = {"factors": 32, "regularization": 5.0, "iterations": 7, "alpha": 15.0}
    name, params = plan.implicit_matched("ials", config) or ("", {})
    # recsemble's confidence 1 + alpha * w is implicit's alpha * w at w = 1.
    assert (name, params) == (
        "als",
        {"factors": 32, "regularization": 5.0, "iterations": 7, "alpha": 16.0},
    )


def _row(config: str, library: str, ndcg: np.ndarray) -> report.Row:
    matched = config.startswith("als-matched")
    row = report.Row("ials", library, config, matched, fit_s=1.0, recommend_s=0.5)
    row.metrics = {"ndcg": float(ndcg.mean())}
    row.user_ndcg = ndcg
    return row


def test_a_matched_peer_row_stands_beside_the_tuned_row_only() -> None:
    rng = np.random.default_rng(0)
    rows = [
        _row("default", "recsemble", rng.random(50)),
        _row("tuned", "recsemble", rng.random(50)),
        _row("als: factors=64", "implicit", rng.random(50)),
        _row("als-matched: factors=248", "implicit", rng.random(50)),
    ]
    pairs = {(c["config"], c["peer_config"]) for c in report.comparisons(rows)}
    assert pairs == {
        ("default", "als: factors=64"),
        ("tuned", "als: factors=64"),
        ("tuned", "als-matched: factors=248"),
    }


def test_a_peer_variant_becomes_an_extra_row_with_its_params(tmp_path: Path) -> None:
    variants = plan.peer_variants(
        ["recbole:simplex:epochs=60", "recbole:simplex:embedding_size=128,aggregator=mean"]
    )
    wide = {"embedding_size": 128, "aggregator": "mean"}
    assert variants == {
        "recbole": [
            ("simplex", "simplex epochs=60", {"epochs": 60}),
            ("simplex", "simplex embedding_size=128,aggregator=mean", wide),
        ]
    }
    runs = plan.peer_runs(["recbole"], ["twotower"], tmp_path, tmp_path, False, {}, 10, variants)
    # With or without a recbole venv (setup=False never makes one), each row has its command.
    by_label = {run.row.config: run for run in runs}
    assert set(by_label) == {"multivae", "simplex", *(label for _, label, _ in variants["recbole"])}
    sixty = by_label["simplex epochs=60"]
    assert sixty.row.model == "twotower"
    assert not any(run.row.beside_tuned for run in runs)  # variants stand beside every row
    assert sixty.command[sixty.command.index("--params") + 1] == '{"epochs": 60}'
    assert "--params" not in by_label["simplex"].command
    assert len({run.out for run in runs}) == len(runs)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lenskit:ease:damping=2", "only ('implicit', 'recbole') take parameters"),
        (
            "recbole:bpr:epochs=3",
            "recbole runs ['ease', 'itemknn', 'multivae', 'simplex', 'sasrec']",
        ),
        ("recbole:simplex", "takes PEER:MODEL:key=value[,key=value], got 'recbole:simplex'"),
        ("recbole:simplex:epochs", "takes PEER:MODEL:key=value"),
    ],
)
def test_a_malformed_peer_variant_is_refused_by_name(spec: str, message: str) -> None:
    with pytest.raises(SystemExit, match=re.escape(message)):
        plan.peer_variants([spec])


def test_peer_runs_mark_the_matched_rows(tmp_path: Path) -> None:
    tuned = {"ials": {"factors": 8, "regularization": 1.0, "iterations": 2, "alpha": 3.0}}
    runs = plan.peer_runs(["implicit"], ["ials"], tmp_path, tmp_path, False, tuned, 10)
    assert {run.row.config: run.row.beside_tuned for run in runs} == {
        "als": False,
        "als-matched": True,
    }

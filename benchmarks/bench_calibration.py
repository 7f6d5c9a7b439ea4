"""Calibration, the member blend and the diversity trade-off of the ensemble (issue 4, parts 4, 8).

For each dataset: one temporal-user split (prepare + split), one Ensemble fitted on its train
part with the dataset's configs/<dataset>.toml model parameters (and its [ensemble] section,
the defaults when there is none). Then, on that one fit:

- calibration: the meta-ranker is retrained K times on all validation users but one fold and
  scores the fold it did not see; a calibrator is fitted on those honest scores. ECE and the
  reliability table before (the ranker's own probability: LightGBM's binary objective returns
  sigmoid(margin)) and after: on the validation pairs (cross-fitted: each fold calibrated by a
  calibrator fitted on the other folds) and on the test candidates (the served ranker, the
  calibrator fitted on all out-of-fold scores);
- blend vs tree: per-member calibrators (rank -> P(interaction)) and non-negative blend weights
  learned on the validation pairs, then NDCG@10 on the test candidates against the tree ranker
  (paired bootstrap CI of the difference) and the time each takes to score them;
- diversity: greedy re-ranking of the test candidates for each strength and similarity:
  NDCG@10, ILD@10 and coverage@10.

    python benchmarks/bench_calibration.py [--datasets ml-100k,ml-latest-small]
        [--diversity-datasets ml-100k] [--data-dir ../shared/datasets]
        [--out out/bench-calibration] [--kind isotonic] [--folds 3]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.config import resolve
from recsemble.data import load_dataset
from recsemble.evaluation import prepare, split
from recsemble.evaluation.metrics import CatalogStats, MetricResult, compute_metrics
from recsemble.evaluation.protocol import Split
from recsemble.evaluation.runner import catalog_stats
from recsemble.evaluation.significance import paired_comparison
from recsemble.ranking.blend import Blend
from recsemble.ranking.calibration import (
    Reliability,
    calibrate_ranker,
    expected_calibration_error,
    ranker_probability,
    reliability,
)
from recsemble.ranking.candidates import Candidates
from recsemble.ranking.diversity import diversified_top_per_row
from recsemble.ranking.ensemble import Ensemble, _top_per_row
from recsemble.ranking.trainingset import _concat, _labels
from recsemble.types import PAD_IDX

ROOT = Path(__file__).resolve().parents[1]
K = 10


@dataclass(frozen=True)
class TestCandidates:
    """The served ensemble's candidates for every evaluated user, with their test labels."""

    cands: Candidates
    features: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]  # the tree ranker's
    labels: npt.NDArray[np.int8]
    truth: sp.csr_array
    stats: CatalogStats
    categories: sp.csr_array | None


def fit_ensemble(dataset: str, data_dir: Path) -> tuple[Ensemble, Split]:
    path = ROOT / "configs" / f"{dataset}.toml"
    config = resolve(path if path.exists() else None).config
    data = prepare(
        load_dataset(dataset, data_dir=data_dir),
        min_user_interactions=config.protocol.min_user_interactions,
    )
    the_split = split(data, "temporal-user", config.protocol.test_fraction)
    start = time.perf_counter()
    ensemble = Ensemble(config.ensemble, config.models, protocol="temporal-user")
    ensemble.fit(the_split.train)
    print(f"\n## {dataset}: {data!r}; ensemble fit {time.perf_counter() - start:.0f} s")
    return ensemble, the_split


def test_candidates(ensemble: Ensemble, the_split: Split) -> TestCandidates:
    users = the_split.evaluated_users
    blocks = list(ensemble.ranked_blocks(users, at=the_split.reference_time[users]))
    cands = _concat([b.candidates for b in blocks], [b.lo for b in blocks], users.size)
    truth = sp.csr_array(the_split.test.user_item_matrix("binary")[users])
    stats = catalog_stats(the_split)
    return TestCandidates(
        cands,
        np.concatenate([b.features.values for b in blocks]),
        np.concatenate([b.scores for b in blocks]),
        _labels(cands, truth),
        truth,
        stats,
        stats.item_categories,
    )


def metrics_of(test: TestCandidates, picks: tuple[Any, ...]) -> MetricResult:
    rows, slots, items, _ = picks
    recs = np.full((test.cands.n_rows, K), PAD_IDX, dtype=np.int64)
    recs[rows, slots] = items
    return compute_metrics(recs, test.truth, K, test.stats)


# -- calibration -------------------------------------------------------------------------------
def print_reliability(
    title: str, before: Reliability, after: Reliability, equal_mass: tuple[float, float]
) -> None:
    print(
        f"{title}: ECE before {before.ece:.4f}, after {after.ece:.4f} "
        f"(equal-mass bins: {equal_mass[0]:.4f} -> {equal_mass[1]:.4f})"
    )
    print(
        f"  {'bin':>9} | {'pred':>6} {'obs':>6} {'pairs':>8} | {'pred':>6} {'obs':>6} {'pairs':>8}"
    )
    for b, a in zip(before.rows(), after.rows(), strict=True):
        cells = [
            f"{p:6.3f} {o:6.3f} {n:8,d}" if n else f"{'':6} {'':6} {0:8d}" for *_, p, o, n in (b, a)
        ]
        print(f"  {b[0]:.1f}-{b[1]:.1f}   | {cells[0]} | {cells[1]}")


def calibration_section(
    ens: Ensemble, test: TestCandidates, kind: str, folds: int
) -> dict[str, Any]:
    start = time.perf_counter()
    result = calibrate_ranker(ens.training_, ens.config, kind, folds)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    # the served ranker's own probabilities: the same reading as out of fold (binary LightGBM)
    test_raw = ranker_probability(test.scores, ens.ranker_)
    test_calibrated = result.calibrator.predict(test.scores)
    labels = ens.training_.labels
    tables = {
        "validation": {"before": result.before, "after": result.after},
        "test": {
            "before": reliability(test_raw, test.labels),
            "after": reliability(test_calibrated, test.labels),
        },
    }
    equal_mass = {
        "validation": (_quantile_ece(result.raw, labels), _quantile_ece(result.calibrated, labels)),
        "test": (_quantile_ece(test_raw, test.labels), _quantile_ece(test_calibrated, test.labels)),
    }
    print(f"\n### calibration ({kind}, {folds} user folds, {seconds:.0f} s)")
    print("before = the ranker's own output as a probability (LightGBM binary: sigmoid(margin))")
    for part, what in (("validation", "cross-fitted"), ("test", "served ranker")):
        n_pairs = int(tables[part]["before"].count.sum())
        print_reliability(
            f"{part} pairs ({n_pairs:,}, {what})",
            tables[part]["before"],
            tables[part]["after"],
            equal_mass[part],
        )
    return {"seconds": seconds, "equal_mass_ece": equal_mass, **tables}


def _quantile_ece(probabilities: npt.NDArray[np.float64], labels: npt.ArrayLike) -> float:
    return expected_calibration_error(probabilities, labels, 10, "quantile")


# -- blend ---------------------------------------------------------------------------------------
def blend_section(ens: Ensemble, test: TestCandidates, kind: str) -> dict[str, Any]:
    training = ens.training_
    start = time.perf_counter()
    blend = Blend("rank", kind).fit(training.candidates, training.labels)  # type: ignore[arg-type]
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    blend_scores = blend.rank(test.cands)
    blend_s = time.perf_counter() - start
    start = time.perf_counter()
    ens.ranker_.predict(test.features)
    tree_s = time.perf_counter() - start
    tree = metrics_of(test, _top_per_row(test.cands, test.scores, K))
    mixed = metrics_of(test, _top_per_row(test.cands, blend_scores, K))
    members = {}
    for m, label in enumerate(test.cands.members):
        by_rank = -np.nan_to_num(test.cands.ranks[:, m], nan=np.inf).astype(np.float32)
        members[label] = metrics_of(test, _top_per_row(test.cands, by_rank, K)).ndcg.mean()
    best = max(members, key=lambda label: members[label])
    diff = paired_comparison(mixed.ndcg, tree.ndcg)
    probs = blend.calibrators_.predict(test.cands)
    print(f"\n### blend vs tree ranker (test candidates, NDCG@{K})")
    print(f"  {'member':16} {'weight':>8} {'test ECE':>9} {'alone':>7}")
    for m, (label, weight) in enumerate(blend.weights.items()):
        ece = reliability(probs[:, m], test.labels).ece
        print(f"  {label:16} {weight:8.3f} {ece:9.4f} {members[label]:7.4f}")
    print(f"  tree ranker  NDCG@{K} {tree.ndcg.mean():.4f}  (scoring {tree_s * 1e3:.0f} ms)")
    print(
        f"  blend        NDCG@{K} {mixed.ndcg.mean():.4f}  (scoring {blend_s * 1e3:.0f} ms, "
        f"fit {fit_s:.1f} s)"
    )
    print(f"  best member  NDCG@{K} {members[best]:.4f}  ({best})")
    print(
        f"  blend - tree: {diff['mean_diff']:+.4f}, 95% CI [{diff['ci_low']:+.4f}, "
        f"{diff['ci_high']:+.4f}], {diff['n_users']} users"
    )
    return {
        "tree_ndcg": float(tree.ndcg.mean()),
        "blend_ndcg": float(mixed.ndcg.mean()),
        "best_member": best,
        "best_member_ndcg": float(members[best]),
        "blend_minus_tree": diff,
        "weights": blend.weights,
        "tree_scoring_s": tree_s,
        "blend_scoring_s": blend_s,
    }


# -- diversity -----------------------------------------------------------------------------------
def diversity_section(
    test: TestCandidates, strengths: list[float], kinds: list[str]
) -> list[dict[str, Any]]:
    print(f"\n### diversity trade-off (test candidates, greedy max-redundancy re-ranking, k={K})")
    print(
        f"  {'similarity':10} {'strength':>8} {'NDCG':>7} {'ILD':>7} {'coverage':>8} {'seconds':>7}"
    )
    rows = []
    for kind in kinds:
        if kind != "members" and test.categories is None:
            continue
        for strength in strengths:
            start = time.perf_counter()
            picks = diversified_top_per_row(
                test.cands,
                test.scores,
                K,
                strength,
                item_categories=test.categories,
                similarity=kind,  # type: ignore[arg-type]
            )
            seconds = time.perf_counter() - start
            summary = metrics_of(test, picks).summary()
            row = {
                "similarity": kind,
                "strength": strength,
                "ndcg": summary[f"ndcg@{K}"],
                "ild": summary.get(f"ild@{K}", float("nan")),
                "coverage": summary[f"coverage@{K}"],
                "seconds": seconds,
            }
            rows.append(row)
            print(
                f"  {kind:10} {strength:8.2f} {row['ndcg']:7.4f} {row['ild']:7.4f} "
                f"{row['coverage']:8.4f} {seconds:7.2f}"
            )
    return rows


# -- plots ---------------------------------------------------------------------------------------
def plot_reliability(dataset: str, calibration: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharey=True)
    for ax, part in zip(axes, ("validation", "test"), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
        for stage, style in (("before", "--"), ("after", "-")):
            table: Reliability = calibration[part][stage]
            shown = table.count > 0
            x, y = table.mean_predicted[shown], table.observed[shown]
            (line,) = ax.plot(x, y, style, label=f"{stage} (ECE {table.ece:.4f})")
            # marker area grows with the log of the bin's pairs: sparse bins are noisy
            size = 8 + 12 * np.log10(table.count[shown])
            ax.scatter(x, y, s=size**1.5 / 4, color=line.get_color(), alpha=0.7)
        ax.set(
            title=f"{dataset}: {part}",
            xlabel="mean predicted probability",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.legend(loc="upper left")
    axes[0].set_ylabel("observed interaction rate")
    fig.tight_layout()
    path = out / f"reliability-{dataset}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_diversity(dataset: str, rows: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for kind in dict.fromkeys(row["similarity"] for row in rows):
        mine = [row for row in rows if row["similarity"] == kind]
        for ax, x in zip(axes, ("ild", "coverage"), strict=True):
            ax.plot([r[x] for r in mine], [r["ndcg"] for r in mine], "o-", label=kind)
            for r in mine:
                ax.annotate(f"{r['strength']:g}", (r[x], r["ndcg"]), fontsize=7)
    axes[0].set(xlabel=f"ILD@{K}", ylabel=f"NDCG@{K}", title=f"{dataset}: accuracy vs diversity")
    axes[1].set(xlabel=f"coverage@{K}", ylabel=f"NDCG@{K}", title="accuracy vs coverage")
    for ax in axes:
        ax.legend(title="similarity")
    fig.tight_layout()
    path = out / f"diversity-{dataset}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- main --------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, Reliability):
        return {"ece": value.ece, "bins": value.rows()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ml-100k,ml-latest-small")
    parser.add_argument("--diversity-datasets", default="ml-100k")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench-calibration")
    parser.add_argument("--kind", choices=["isotonic", "platt"], default="isotonic")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--strengths", default="0,0.05,0.1,0.2,0.5,1")
    parser.add_argument("--similarities", default="category,members,both")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    print(("command: python benchmarks/bench_calibration.py " + shlex.join(sys.argv[1:])).strip())
    args.out.mkdir(parents=True, exist_ok=True)
    strengths = [float(s) for s in args.strengths.split(",")]
    results: dict[str, Any] = {}
    for dataset in args.datasets.split(","):
        ensemble, the_split = fit_ensemble(dataset, args.data_dir)
        test = test_candidates(ensemble, the_split)
        calibration = calibration_section(ensemble, test, args.kind, args.folds)
        plots = [plot_reliability(dataset, calibration, args.out)]
        entry: dict[str, Any] = {
            "calibration": calibration,
            "blend": blend_section(ensemble, test, args.kind),
        }
        if dataset in args.diversity_datasets.split(","):
            entry["diversity"] = diversity_section(test, strengths, args.similarities.split(","))
            plots.append(plot_diversity(dataset, entry["diversity"], args.out))
        print(
            "plots: "
            + ", ".join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in plots)
        )
        results[dataset] = entry
    path = args.out / "results.json"
    path.write_text(json.dumps(_jsonable(results), indent=2, default=float))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

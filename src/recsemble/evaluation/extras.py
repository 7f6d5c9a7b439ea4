"""What results.json holds beyond each model's metrics, for the report and for people:
roles and variant settings in `meta`, item-popularity slices, paired comparisons against the
baseline, and (for the ensemble) the member analysis, reliability curves and the decision.

Each function adds to the results document in place (README, "Evaluation report", lists the
keys).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recsemble.evaluation.decision import decide
from recsemble.evaluation.item_slices import item_popularity_slices
from recsemble.evaluation.runner import Evaluation, truth_matrix
from recsemble.evaluation.significance import compare_per_slice
from recsemble.evaluation.slices import ALL
from recsemble.evaluation.sweep import Variant

if TYPE_CHECKING:
    from recsemble.evaluation.protocol import Split
    from recsemble.ranking.ensemble import Ensemble

#: The metrics compared against the baseline, per user and slice, at every k.
COMPARED = ("ndcg", "recall", "hit")
Progress = Callable[[str, str, int, int], None]


def add_roles(results: dict[str, Any], baseline: str, specs: Sequence[Variant]) -> None:
    """meta.baseline and meta.role ("baseline", "model", "variant" + its stages and sweep)."""
    by_name = {v.name: v for v in specs}
    for name, entry in results.items():
        meta = entry["meta"]
        meta["baseline"] = baseline
        meta["role"] = "baseline" if name == baseline else "variant" if name in by_name else "model"
        if name in by_name:
            meta.update(by_name[name].meta())


def add_item_slices(results: dict[str, Any], evaluation: Evaluation) -> None:
    truth = truth_matrix(evaluation.split, evaluation.users)
    popularity = evaluation.split.train.item_popularity
    for name, run in evaluation.runs.items():
        results[name]["item_slices"] = item_popularity_slices(
            run.topk.items, truth, popularity, evaluation.ks
        )


def add_comparisons(
    results: dict[str, Any],
    evaluation: Evaluation,
    baseline: str,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> None:
    """vs_baseline: metric@k -> slice -> paired comparison (bootstrap CI, p-values), with
    `n_resamples` bootstrap resamples from `seed` (protocol.bootstrap_resamples, .seed)."""
    labels = evaluation.slice_labels
    base = evaluation.runs[baseline].metrics
    for name, run in evaluation.runs.items():
        if name == baseline:
            continue
        out: dict[str, Any] = {}
        for k in evaluation.ks:
            mine, theirs = run.metrics[k].per_user(), base[k].per_user()
            for metric in COMPARED:
                out[f"{metric}@{k}"] = compare_per_slice(
                    mine[metric], theirs[metric], labels, n_resamples=n_resamples, seed=seed
                )
        results[name]["vs_baseline"] = out


def add_decisions(results: dict[str, Any], k: int) -> None:
    """A decision for every plain model (the report leads with the ensemble's)."""
    metric = f"ndcg@{k}"
    for entry in results.values():
        if entry["meta"]["role"] != "model" or "vs_baseline" not in entry:
            continue
        if ALL not in entry["vs_baseline"].get(metric, {}):
            continue  # under 2 evaluated users: no paired comparison, so no decision
        entry["decision"] = decide(results, entry["meta"]["model"], metric)


def add_ensemble_diagnostics(
    entry: dict[str, Any],
    ens: Ensemble,
    the_split: Split,
    k: int,
    progress: Progress | None = None,
    max_users: int | None = None,
) -> None:
    """analysis (overlap, marginal gains, pruning curve) and calibration (reliability), on a
    seeded sample of `max_users` evaluated users when given (analysis.users says how many)."""
    from recsemble.ranking.analysis import analyze, evaluation_pool
    from recsemble.ranking.reliability import reliability_curves

    def report(stage: str, done: int, total: int) -> None:
        if progress:
            progress("ensemble", stage, done, total)

    report("test candidates", 0, 1)
    users = the_split.evaluated_users
    if max_users is not None and users.size > max_users:
        users = np.sort(np.random.default_rng(0).choice(users, max_users, replace=False))
    pool = evaluation_pool(ens, the_split, users)  # the costly part, shared by both
    report("test candidates", 1, 1)
    analysis = analyze(ens, the_split, k=k, progress=report, test_pool=pool)
    entry["analysis"] = {**analysis.to_json(), "users": int(users.size)}
    report("calibration", 0, 1)
    entry["calibration"] = reliability_curves(ens, the_split, test_pool=pool)
    report("calibration", 1, 1)

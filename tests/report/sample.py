"""A small hand-built results.json with every section the report reads (the schema of
`recsemble evaluate --json`), from random per-user values, so the tests know every number."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from recsemble.evaluation.significance import compare_per_slice

K = (10, 20)
SLICES = ("cold", "1-4", "5-19", "20-99", "100+")
PER_USER = ("ndcg", "recall", "precision", "map", "mrr", "hit", "novelty", "ild")
LIST_LEVEL = ("coverage", "longtail_hit_share", "gini", "calibration_kl")
MEMBERS = ("pop", "itemknn", "covisit")
N_USERS = 60


def _user_slices() -> list[str]:
    # cold and 100+ stay empty, as on small data sets
    return ["1-4"] * 10 + ["5-19"] * 35 + ["20-99"] * 15


def _entry(name: str, level: float, rng: np.random.Generator, meta: dict[str, Any]) -> Any:
    slices = _user_slices()
    per_user: dict[str, Any] = {"user_id": [f"u{i}" for i in range(N_USERS)], "slice": slices}
    entry: dict[str, Any] = {}
    for k in K:
        for metric in PER_USER:
            values = np.clip(rng.normal(level, 0.1, N_USERS), 0, None)
            column = [float(v) for v in values]
            if metric == "ild":
                column[0] = None  # a one-item list has no ILD: nulls must be skipped
            per_user[f"{metric}@{k}"] = column
            entry[f"{metric}@{k}"] = float(np.mean([v for v in column if v is not None]))
        for metric in LIST_LEVEL:
            entry[f"{metric}@{k}"] = float(rng.uniform(0.2, 0.8))
    entry["slices"] = _slices(entry, per_user)
    entry["per_user"] = per_user
    entry["meta"] = {
        "dataset": "synthetic-test",
        "protocol": "temporal-user",
        "test_fraction": 0.2,
        "k": list(K),
        "model": name,
        "n_users": N_USERS,
        "fit_seconds": 0.1,
        "recommend_seconds": 0.1,
        "baseline": "pop",
        **meta,
    }
    entry["item_slices"] = {
        group: {
            "n_items": n_items,
            "n_test_interactions": 100,
            **{f"recall@{k}": float(rng.uniform(0.05, 0.5)) for k in K},
            **{f"list_share@{k}": share for k in K},
        }
        for group, n_items, share in (("head", 30, 1 - level), ("tail", 120, level))
    }
    return entry


def _slices(entry: dict[str, Any], per_user: dict[str, Any]) -> dict[str, Any]:
    labels = np.array(per_user["slice"])
    out: dict[str, Any] = {"all": {"n_users": N_USERS, **entry}}
    for name in SLICES:
        mask = labels == name
        stats: dict[str, Any] = {"n_users": int(mask.sum())}
        for key in entry:
            column = per_user.get(key)
            values = [v for v, m in zip(column or [], mask, strict=False) if m and v is not None]
            stats[key] = float(np.mean(values)) if values else None
        out[name] = stats
    return out


def _vs_baseline(entry: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    def floats(values: list[float | None]) -> Any:
        return np.array([np.nan if v is None else v for v in values])

    return {
        f"{m}@{k}": compare_per_slice(
            floats(entry["per_user"][f"{m}@{k}"]),
            floats(base["per_user"][f"{m}@{k}"]),
            base["per_user"]["slice"],
            n_resamples=200,
        )
        for m in ("ndcg", "recall", "hit")
        for k in K
    }


def _analysis() -> dict[str, Any]:
    members = list(MEMBERS)
    matrix = {a: {b: 1.0 if a == b else 0.3 for b in members} for a in members}
    matrix["pop"]["covisit"] = None  # undefined cells are null
    curve_members = [["itemknn"], ["itemknn", "covisit"], ["itemknn", "covisit", "pop"]]
    return {
        "members": members,
        "k": 10,
        "jaccard": matrix,
        "rbo": copy.deepcopy(matrix),
        "score_spearman": {a: {b: 1.0 if a == b else -0.2 for b in members} for a in members},
        "reach": [
            {"member": m, "ndcg": 0.1, "hits": 20, "unique_hits": 3, "candidate_recall": 0.4}
            for m in members
        ],
        "union_candidate_recall": 0.7,
        "slices": {"all": 60, "1-4": 10, "5-19": 35, "20-99": 15, "cold": 0},
        "ensemble_ndcg": {"all": 0.3},
        "baseline_ndcg": {"all": 0.3},
        "leave_one_out_delta": {
            "pop": {"all": 0.001, "1-4": -0.01, "5-19": None},
            "itemknn": {"all": -0.05, "1-4": -0.02, "5-19": -0.06},
            "covisit": {"all": -0.01, "1-4": 0.0, "5-19": -0.02},
        },
        "curve": [
            {
                "members": chosen,
                "added": chosen[-1],
                "validation_ndcg": 0.2 + 0.05 * i,
                "validation_gain": 0.05,
                "validation_gain_se": 0.01,
                "test_ndcg": 0.19 + 0.05 * i,
                "latency_ms_per_user": 0.5 * (i + 1),
            }
            for i, chosen in enumerate(curve_members)
        ],
        "recommended": ["itemknn", "covisit"],
        "prune_line": 'members = [{model = "itemknn"}, {model = "covisit"}]',
        "latency_ms_per_user": dict.fromkeys(members, 0.5),
    }


def _calibration() -> dict[str, Any]:
    def curve(ece: float, skew: float) -> dict[str, Any]:
        predicted = [0.05, 0.15, 0.3, None, 0.7]
        observed = [None if p is None else min(1.0, p * skew) for p in predicted]
        return {"ece": ece, "mean_predicted": predicted, "observed": observed, "count": [5] * 5}

    return {
        "kind": "isotonic",
        "strategy": "quantile",
        "curves": {"ensemble": curve(0.02, 1.05), "itemknn": curve(0.11, 1.6)},
    }


def decision_for(entry: dict[str, Any]) -> dict[str, Any]:
    cmp = entry["vs_baseline"]["ndcg@10"]["all"]
    gain = cmp["mean_diff"] / cmp["mean_b"]
    return {
        "model": "ensemble",
        "baseline": "pop",
        "metric": "ndcg@10",
        "mean": cmp["mean_a"],
        "baseline_mean": cmp["mean_b"],
        "mean_diff": cmp["mean_diff"],
        "ci_low": cmp["ci_low"],
        "ci_high": cmp["ci_high"],
        "relative_gain": gain,
        "relative_ci_low": cmp["ci_low"] / cmp["mean_b"],
        "relative_ci_high": cmp["ci_high"] / cmp["mean_b"],
        "p_value": cmp["p_ttest"],
        "slices_won": ["5-19", "20-99"],
        "slices_lost": [],
        "slices_tied": ["1-4"],
        "ab_test": True,
        "reasons": ["the gain's CI excludes 0", "no slice is worse"],
        "statement": f"The ensemble beats popularity by {gain:+.1%} NDCG@10 (test statement).",
    }


def sample_results(seed: int = 0) -> dict[str, Any]:
    """pop (baseline), ensemble, itemknn, and ensemble re-ranked: a fixed mmr chain and a sweep
    of mmr.lambda; every NEW section of results.json filled in."""
    rng = np.random.default_rng(seed)
    results = {
        "pop": _entry("pop", 0.2, rng, {"role": "baseline"}),
        "ensemble": _entry("ensemble", 0.4, rng, {"role": "model"}),
        "itemknn": _entry("itemknn", 0.35, rng, {"role": "model"}),
    }
    variant = {"role": "variant", "variant_of": "ensemble", "stages": ["mmr"]}
    results["ensemble+mmr"] = _entry("ensemble+mmr", 0.38, rng, variant)
    for value in (0.0, 0.5, 1.0):
        name = f"ensemble+mmr[lambda={value:g}]"
        sweep = {"sweep": {"stage": "mmr", "key": "lambda", "value": value}}
        results[name] = _entry(name, 0.3 + 0.1 * value, rng, {**variant, **sweep})
    for name, entry in results.items():
        if name != "pop":
            entry["vs_baseline"] = _vs_baseline(entry, results["pop"])
    ensemble = results["ensemble"]
    ensemble["analysis"] = _analysis()
    ensemble["calibration"] = _calibration()
    ensemble["decision"] = decision_for(ensemble)
    return results

"""The plain-language verdict of an evaluation: does a model beat the baseline, where, and is
it worth an online A/B test?

Built from the paired comparisons already in results.json (`vs_baseline`), so every number in
the statement is one of the numbers stored beside it. The rule: an A/B test is worth running
when the overall gain is significant (the 95% CI of the paired difference lies above zero)
and at least MIN_RELATIVE_GAIN relative; slices the model loses are named as what to watch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recsemble.errors import DataError
from recsemble.evaluation.slices import ALL, HISTORY_SLICES

#: Below this relative gain an online test is unlikely to show the difference.
MIN_RELATIVE_GAIN = 0.01
_NAMES = {"pop": "popularity", "ensemble": "the ensemble"}


def display_name(model: str) -> str:
    return _NAMES.get(model, model)


def decide(results: Mapping[str, Any], model: str, metric: str) -> dict[str, Any]:
    """The decision record for `model` on `metric` (e.g. "ndcg@10"); raises KeyError when the
    model has no paired comparison for that metric, DataError when it has too few users."""
    entry = results[model]
    baseline = entry["meta"]["baseline"]
    by_slice = entry["vs_baseline"][metric]
    overall = by_slice.get(ALL)
    if overall is None:  # compare_per_slice skips slices of under 2 users, "all" included
        raise DataError(
            f"no decision for {model!r} on {metric}: fewer than 2 users were evaluated, "
            f"too few to compare it with {baseline!r}"
        )
    base_mean = overall["mean_b"]
    relative = (lambda x: x / base_mean) if base_mean else (lambda x: float("nan"))
    won, lost, tied = _slice_outcomes(by_slice)
    record: dict[str, Any] = {
        "model": model,
        "baseline": baseline,
        "metric": metric,
        "mean": overall["mean_a"],
        "baseline_mean": base_mean,
        "mean_diff": overall["mean_diff"],
        "ci_low": overall["ci_low"],
        "ci_high": overall["ci_high"],
        "relative_gain": relative(overall["mean_diff"]),
        "relative_ci_low": relative(overall["ci_low"]),
        "relative_ci_high": relative(overall["ci_high"]),
        "p_value": overall["p_wilcoxon"],
        "n_users": overall["n_users"],
        "slices_won": won,
        "slices_lost": lost,
        "slices_tied": tied,
        "slices_too_small": _too_small(entry, by_slice),
    }
    record["ab_test"], record["reasons"] = _verdict(record)
    record["statement"] = statement(record)
    return record


def _slice_outcomes(by_slice: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
    won, lost, tied = [], [], []
    for name in HISTORY_SLICES:
        row = by_slice.get(name)
        if row is None:  # fewer than 2 users in the slice: nothing to say
            continue
        if row["ci_low"] > 0:
            won.append(name)
        elif row["ci_high"] < 0:
            lost.append(name)
        else:
            tied.append(name)
    return won, lost, tied


def _verdict(record: Mapping[str, Any]) -> tuple[bool, list[str]]:
    reasons = []
    significant = record["ci_low"] > 0
    # A baseline mean of 0 has no relative gain: any significant gain over it counts as large.
    large = record["relative_gain"] >= MIN_RELATIVE_GAIN or record["baseline_mean"] == 0
    if significant:
        reasons.append(f"the 95% CI of the gain lies above zero (p = {record['p_value']:.2g})")
    elif record["ci_high"] < 0:
        reasons.append("it is significantly worse than the baseline")
    else:
        reasons.append("the 95% CI of the difference includes zero: the gain may be noise")
    if significant and not large:
        reasons.append(f"the gain is under {MIN_RELATIVE_GAIN:.0%}, too small to see online")
    if record["slices_lost"]:
        reasons.append(f"watch the slices it loses ({', '.join(record['slices_lost'])})")
    return significant and large, reasons


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def _gain(record: Mapping[str, Any]) -> str:
    """The gain and its CI: relative, or absolute where the baseline's mean is 0."""
    metric = record["metric"].upper()
    if record["baseline_mean"] == 0:
        low, high = record["ci_low"], record["ci_high"]
        return f"{record['mean_diff']:+.4f} {metric} [95% CI {low:+.4f}, {high:+.4f}]"
    low, high = _pct(record["relative_ci_low"]), _pct(record["relative_ci_high"])
    return f"{_pct(record['relative_gain'])} {metric} [95% CI {low}, {high}]"


def statement(record: Mapping[str, Any]) -> str:
    """One sentence a product owner can read; numbers formatted from `record` only."""
    model = display_name(record["model"])
    baseline = display_name(record["baseline"])
    verb = (
        "beats"
        if record["ci_low"] > 0
        else "is significantly worse than"
        if record["ci_high"] < 0
        else "does not significantly beat"
    )
    # "beats X by -16.7%" reads as a gain: a difference within the noise is stated, not "by"
    joint = " by " if record["ci_low"] > 0 or record["ci_high"] < 0 else ": "
    head = (
        f"{model[0].upper()}{model[1:]} {verb} {baseline}{joint}{_gain(record)}"
        f" ({record['mean']:.4f} vs {record['baseline_mean']:.4f}, "
        f"{record['n_users']:,} users)"
    )
    return f"{head}, {_slices_phrase(record)}; worth an A/B test: " + (
        f"{'yes' if record['ab_test'] else 'no'}, because {'; '.join(record['reasons'])}."
    )


def _too_small(entry: Mapping[str, Any], by_slice: Mapping[str, Any]) -> list[str]:
    """Slices with evaluated users but none of the paired comparison (under 2 users)."""
    sizes = entry.get("slices", {})
    return [
        name
        for name, metrics in sizes.items()
        if name != ALL and name not in by_slice and (metrics or {}).get("n_users")
    ]


def _slices_phrase(record: Mapping[str, Any]) -> str:
    won, lost, tied = record["slices_won"], record["slices_lost"], record["slices_tied"]
    small = record.get("slices_too_small") or []
    unseen = f"; {', '.join(small)} too small to compare" if small else ""
    if not (won or lost or tied):
        return "no user slice large enough to compare"
    if not (lost or tied):
        return f"wins in every user slice (history length{unseen})"
    total = len(won) + len(lost) + len(tied)
    parts = [f"wins in {len(won)} of {total} user slices" + (f" ({', '.join(won)})" if won else "")]
    parts += [f"loses in {', '.join(lost)}"] if lost else []
    parts += [f"no significant difference in {', '.join(tied)}"] if tied else []
    return "; ".join(parts) + unseen

"""An independent, deliberately plain implementation of ../shared/benchmark-protocol.md.

Pure Python (no numpy, polars or recsemble code), written from the protocol text alone, so that
agreement with recsemble's vectorized implementation is evidence that both follow the text.
"""

from __future__ import annotations

import math
from collections import defaultdict

Row = tuple[str, str, int]  # (user id, item id, timestamp)


def prepare(rows: list[Row], min_interactions: int = 5) -> list[Row]:
    earliest: dict[tuple[str, str], int] = {}
    for user, item, ts in rows:
        key = (user, item)
        if key not in earliest or ts < earliest[key]:
            earliest[key] = ts
    per_user: dict[str, int] = defaultdict(int)
    for user, _ in earliest:
        per_user[user] += 1
    return [(u, i, t) for (u, i), t in earliest.items() if per_user[u] >= min_interactions]


def temporal_user(rows: list[Row], fraction: float = 0.2) -> tuple[list[Row], list[Row]]:
    by_user: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_user[row[0]].append(row)
    train: list[Row] = []
    test: list[Row] = []
    for user_rows in by_user.values():
        user_rows.sort(key=lambda r: (r[2], r[1]))
        n_test = max(1, math.floor(fraction * len(user_rows)))
        train.extend(user_rows[: len(user_rows) - n_test])
        test.extend(user_rows[len(user_rows) - n_test :])
    return train, test


def temporal_global(rows: list[Row], fraction: float = 0.2) -> tuple[list[Row], list[Row]]:
    ordered = sorted(rows, key=lambda r: (r[2], r[0], r[1]))
    n_train = math.floor((1 - fraction) * len(ordered))
    return ordered[:n_train], ordered[n_train:]


def metrics(
    recs: dict[str, list[str]],
    train: list[Row],
    test: list[Row],
    catalog_size: int,
    k: int,
    categories: dict[str, set[str]] | None = None,
) -> dict[str, float]:
    """Macro-averaged metrics over users with test items, as the protocol defines them."""
    truth: dict[str, set[str]] = defaultdict(set)
    for user, item, _ in test:
        truth[user].add(item)
    pop: dict[str, set[str]] = defaultdict(set)
    for user, item, _ in train:
        pop[item].add(user)
    n_train_users = len({u for u, _, _ in train})
    sums: dict[str, float] = defaultdict(float)
    shown: set[str] = set()
    for user, relevant in truth.items():
        top = recs.get(user, [])[:k]
        shown.update(top)
        rel = [1.0 if item in relevant else 0.0 for item in top]
        hits = sum(rel)
        sums["hit"] += 1.0 if hits else 0.0
        sums["precision"] += hits / k
        sums["recall"] += hits / len(relevant)
        dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel))
        ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
        sums["ndcg"] += dcg / ideal
        ap = sum(sum(rel[: i + 1]) / (i + 1) * r for i, r in enumerate(rel))
        sums["map"] += ap / min(k, len(relevant))
        first = next((i for i, r in enumerate(rel) if r), None)
        sums["mrr"] += 0.0 if first is None else 1.0 / (first + 1)
        if top:
            pops = [len(pop.get(item, ())) for item in top]
            sums["novelty"] += sum(-math.log2(max(p, 1) / n_train_users) for p in pops) / len(top)
            sums["arp"] += sum(pops) / len(top)
        if categories is not None and len(top) >= 2:
            sums["ild"] += _ild(top, categories)
            sums["_ild_users"] += 1
    n = len(truth)
    ild_users = sums.pop("_ild_users", 0.0)
    out = {f"{name}@{k}": value / n for name, value in sums.items() if name != "ild"}
    if categories is not None:
        out[f"ild@{k}"] = sums["ild"] / ild_users
    out[f"coverage@{k}"] = len(shown) / catalog_size
    return out


def _ild(top: list[str], categories: dict[str, set[str]]) -> float:
    distances = []
    for a in range(len(top)):
        for b in range(a + 1, len(top)):
            first, second = categories.get(top[a], set()), categories.get(top[b], set())
            union = first | second
            jaccard = len(first & second) / len(union) if union else 0.0
            distances.append(1.0 - jaccard)
    return sum(distances) / len(distances)

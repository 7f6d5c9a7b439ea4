"""Member subsets without refitting members: retrain only the meta-ranker on fewer members.

A RankingPool holds a set of requests' candidates, features and targets. Restricting it to some
members drops the others' feature columns and the candidates only they proposed, and recomputes
the features that aggregate over members, so a ranker trained on the restricted pool sees what
an ensemble without those members would have seen (the members themselves are not refitted).

Forward selection reads the validation pool only (the ensemble's stored training set): the curve
and the pruned set it recommends never see the test part.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from recsemble.generators import CandidateGenerator
from recsemble.ranking.candidates import Candidates
from recsemble.ranking.features import FeatureTable
from recsemble.ranking.metaranker import MetaRanker, RankerConfig
from recsemble.ranking.trainingset import (
    TrainingSet,
    _groups_with_positives,
    _nonzero_groups,
    _sample_negatives,
)
from recsemble.types import PAD_IDX

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
#: Features computed from every member's proposals (features.py); recomputed for a subset.
_PROPOSAL_COUNT, _BEST_RANK = "n_proposed", "best_rank"
#: progress(done, total) of a long loop.
StepProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class RankingPool:
    """Candidates of some requests, their features and targets: what a ranker learns from or is
    measured on. targets[r] counts row r's target items, reachable by the candidates or not."""

    candidates: Candidates
    features: FeatureTable
    labels: npt.NDArray[np.int8]
    users: I32
    history_lengths: I64  # per request row: events in the user's history
    targets: I64

    @property
    def members(self) -> tuple[str, ...]:
        return self.candidates.members

    def keep_members(self, members: Collection[str]) -> RankingPool:
        """The pool as an ensemble of only `members` (pool order kept) would have built it."""
        unknown = set(members) - set(self.members)
        if unknown or not members:
            raise ValueError(f"members {sorted(unknown)} not in the pool {list(self.members)}")
        kept = [m for m in self.members if m in members]
        dropped = set(self.members) - set(kept)
        cols = [self.members.index(m) for m in kept]
        c = self.candidates
        ranks = c.ranks[:, cols]
        proposed = np.isfinite(ranks)
        pair = np.flatnonzero(proposed.any(axis=1))
        ranks, proposed = ranks[pair], proposed[pair]
        cands = Candidates(
            c.rows[pair],
            c.items[pair],
            _gather(c.scores, pair, cols),
            ranks,
            _gather(c.zscores, pair, cols),
            tuple(kept),
            c.n_rows,
        )
        names = self.features.names
        feature_cols = [i for i, n in enumerate(names) if n.rpartition(":")[0] not in dropped]
        values = _gather(self.features.values, pair, feature_cols)
        kept_names = tuple(names[i] for i in feature_cols)
        if _PROPOSAL_COUNT in kept_names:
            values[:, kept_names.index(_PROPOSAL_COUNT)] = proposed.sum(axis=1)
        if _BEST_RANK in kept_names:
            values[:, kept_names.index(_BEST_RANK)] = np.where(proposed, ranks, np.inf).min(axis=1)
        table = FeatureTable(values, kept_names)
        return replace(self, candidates=cands, features=table, labels=self.labels[pair])

    def pairs_of_rows(self, row_mask: npt.NDArray[np.bool_] | None) -> I64:
        """Positions of the candidate pairs of the requests where row_mask holds (all: None)."""
        if row_mask is None:
            return np.arange(self.labels.size, dtype=np.int64)
        return np.flatnonzero(row_mask[self.candidates.rows]).astype(np.int64)

    def training_set(self, pairs: I64) -> TrainingSet:
        """Some pairs as a TrainingSet for the ensemble's sampling rules (rows keep their
        numbers; features left out, they are gathered only for the pairs the ranker keeps)."""
        c = self.candidates
        no_columns = np.zeros((pairs.size, 0), np.float32)
        return TrainingSet(
            candidates=Candidates(
                c.rows[pairs], c.items[pairs], no_columns, no_columns, no_columns, (), c.n_rows
            ),
            features=FeatureTable(no_columns, ()),
            labels=self.labels[pairs],
            users=self.users,
            history_lengths=self.history_lengths,
            n_targets=int(self.targets.sum()),
        )


def _gather(values: F32, rows: I64, cols: list[int]) -> F32:
    """values[rows][:, cols] in one pass per axis (np.take is the fastest gather here)."""
    return np.take(np.take(values, rows, axis=0), cols, axis=1)


def fit_ranker(
    pool: RankingPool,
    config: RankerConfig,
    negatives_per_user: int | None,
    rows: npt.NDArray[np.bool_] | None = None,
) -> MetaRanker | None:
    """A ranker trained as Ensemble.fit trains one, on the requests where `rows` holds (all:
    None); None when no such request has a reachable target."""
    pairs = pool.pairs_of_rows(rows)
    training = pool.training_set(pairs)
    keep = _groups_with_positives(training) & _sample_negatives(
        training, negatives_per_user, config.seed
    )
    if not keep.any():
        return None
    chosen = pairs[keep]
    return MetaRanker(config).fit(
        np.take(pool.features.values, chosen, axis=0),
        pool.labels[chosen],
        _nonzero_groups(training.candidates.take(keep)),
    )


def pool_scores(ranker: MetaRanker | None, pool: RankingPool, pairs: I64 | None = None) -> F32:
    """The ranker's scores of the pairs (all: None); without a ranker, the best rank any member
    gave them (the members' own order)."""
    pairs = pool.pairs_of_rows(None) if pairs is None else pairs
    if ranker is not None:
        return ranker.predict(np.take(pool.features.values, pairs, axis=0))
    ranks = pool.candidates.ranks[pairs]
    best: F32 = np.where(np.isfinite(ranks), ranks, np.inf).min(axis=1).astype(np.float32)
    return -best


def top_items(cands: Candidates, scores: F32, k: int) -> I32:
    """(n_rows, k) best candidates per row, PAD_IDX-padded; ties go to the lower item."""
    order, rows, slots = _ranked(cands.rows, cands.items, scores, k)
    out = np.full((cands.n_rows, k), PAD_IDX, dtype=np.int32)
    out[rows, slots] = cands.items[order]
    return out


def ndcg_per_row(pool: RankingPool, scores: F32, k: int, pairs: I64 | None = None) -> F64:
    """NDCG@k of each request's top-k by `scores` (one per pair in `pairs`, all: None) against
    all its targets; NaN for a request without targets."""
    pairs = pool.pairs_of_rows(None) if pairs is None else pairs
    c = pool.candidates
    order, rows, slots = _ranked(c.rows[pairs], c.items[pairs], scores, k)
    gains = pool.labels[pairs[order]] / np.log2(slots + 2.0)
    dcg = np.bincount(rows, weights=gains, minlength=c.n_rows)
    ideal_prefix = np.concatenate(([0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))))
    idcg = ideal_prefix[np.minimum(pool.targets, k)]
    return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)


def _ranked(rows: I64, items: I32, scores: F32, k: int) -> tuple[I64, I64, I64]:
    """Positions of each row's k best pairs, with their rows and 0-based slots; ties go to
    the lower item, as in the ensemble."""
    order = np.lexsort((items, -scores, rows))
    sorted_rows = rows[order]
    slots = np.arange(rows.size) - np.searchsorted(sorted_rows, sorted_rows)
    keep = slots < k
    return order[keep].astype(np.int64), sorted_rows[keep], slots[keep].astype(np.int64)


# -- forward selection on the validation pool ---------------------------------------------------
@dataclass(frozen=True)
class SelectionStep:
    """One point of the forward selection curve."""

    members: tuple[str, ...]
    added: str
    validation_ndcg: float
    # Gain over the previous step and its paired standard error over validation requests:
    # gains within about two SEs are noise, whatever the curve's shape suggests.
    gain: float = float("nan")
    gain_se: float = float("nan")


def user_folds(users: I32, n_folds: int, seed: int) -> I64:
    """Fold of each request row, by user: a user's requests (one per validation fold of the
    ensemble) never sit on both sides of a split."""
    unique = np.unique(users)
    fold_of_user = np.random.default_rng(seed).permutation(unique.size) % n_folds
    return fold_of_user[np.searchsorted(unique, users)].astype(np.int64)


def validation_ndcg(
    pool: RankingPool,
    members: Collection[str],
    config: RankerConfig,
    negatives_per_user: int | None,
    k: int,
    folds: I64,
) -> F64:
    """Cross-fitted NDCG@k per validation request of a ranker over `members`: each user is
    scored by a ranker trained on the other folds' users only."""
    sub = pool.keep_members(members)
    per_row = np.full(sub.candidates.n_rows, np.nan)
    for fold in np.unique(folds):
        held = folds == fold
        ranker = fit_ranker(sub, config, negatives_per_user, rows=~held)
        pairs = sub.pairs_of_rows(held)
        scores = pool_scores(ranker, sub, pairs)
        per_row[held] = ndcg_per_row(sub, scores, k, pairs)[held]
    return per_row


def forward_selection(
    pool: RankingPool,
    config: RankerConfig,
    negatives_per_user: int | None,
    k: int = 10,
    n_folds: int = 2,
    progress: StepProgress | None = None,
) -> list[SelectionStep]:
    """Greedy: start from the best single member, add the one that raises validation NDCG@k
    most, until every member is in. Reads only `pool` (validation requests), never the test."""
    folds = user_folds(pool.users, n_folds, config.seed)
    chosen: list[str] = []
    remaining = list(pool.members)
    steps: list[SelectionStep] = []
    total = len(remaining) * (len(remaining) + 1) // 2
    done = 0
    previous = np.full(pool.candidates.n_rows, np.nan)
    while remaining:
        per_row = {}
        for member in remaining:
            members = [*chosen, member]
            per_row[member] = validation_ndcg(pool, members, config, negatives_per_user, k, folds)
            done += 1
            if progress:
                progress(done, total)
        means = {m: _mean(values) for m, values in per_row.items()}
        best = max(remaining, key=lambda m: np.nan_to_num(means[m], nan=-1.0))
        chosen.append(best)
        remaining.remove(best)
        gain, gain_se = _paired_gain(per_row[best], previous)
        steps.append(SelectionStep(tuple(chosen), best, means[best], gain, gain_se))
        previous = per_row[best]
    return steps


def _mean(values: F64) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _paired_gain(after: F64, before: F64) -> tuple[float, float]:
    """Mean per-request difference and its standard error (NaN without two pairs)."""
    diff = (after - before)[np.isfinite(after) & np.isfinite(before)]
    if diff.size < 2:
        return float("nan"), float("nan")
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))


#: The recommended set is the smallest within this share of the best validation NDCG: a rule
#: on point estimates (each step's gain ± SE says whether it is more than noise).
RECOMMEND_TOLERANCE = 0.005


def recommended_step(
    steps: Sequence[SelectionStep], tolerance: float = RECOMMEND_TOLERANCE
) -> SelectionStep:
    """The smallest member set within `tolerance` (relative) of the best validation NDCG."""
    best = max(s.validation_ndcg for s in steps)
    return next(s for s in steps if s.validation_ndcg >= best * (1.0 - tolerance))


def prune_line(all_members: Sequence[str], keep: Collection[str]) -> str:
    """The `prune = [...]` line of the `[ensemble]` section that serves only `keep`."""
    pruned = ", ".join(json.dumps(m) for m in all_members if m not in keep)  # TOML-safe quoting
    return f"prune = [{pruned}]"


# -- serving cost ------------------------------------------------------------------------------
def member_latency_ms(
    members: dict[str, CandidateGenerator],
    users: I32,
    at: I64,
    repeats: int = 3,
) -> dict[str, float]:
    """Milliseconds per user of each member's score_catalog over the batch `users` (best of
    `repeats`, after one warm-up call): the work a member adds to every request it serves.

    The histories are passed as request data, so members compute their answers: what a request
    with fresh events costs (a fitted user's unchanged history is read from a stored row,
    score_cache.py, which costs every member about the same copy)."""
    out = {}
    for label, member in members.items():
        histories = member.histories_.rows(users).detached()
        warm = min(8, users.size)
        member.score_catalog(users[:warm], at=at[:warm], histories=histories.rows(range(warm)))
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            member.score_catalog(users, at=at, histories=histories)
            best = min(best, time.perf_counter() - start)
        out[label] = 1000.0 * best / max(1, users.size)
    return out

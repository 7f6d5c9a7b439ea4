"""The meta-ranker's training set: validation requests, their candidates, features and targets.

Built by Ensemble.fit from one or more validation windows; these helpers stack folds, label
candidates with the validation targets, sample negatives and find which members propose
anything for each history slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from recsemble.data.dataset import Dataset
from recsemble.evaluation.slices import HISTORY_SLICES, history_slice_labels
from recsemble.ranking.candidates import Candidates
from recsemble.ranking.features import FeatureTable

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TrainingSet:
    """What the ranker learned from: validation candidates, features and targets."""

    candidates: Candidates
    features: FeatureTable
    labels: npt.NDArray[np.int8]
    users: I32
    history_lengths: I64  # per request row: events in the user's history
    n_targets: int  # validation (user, item) targets, reachable or not
    # per request row: the user's validation targets, reachable or not (None: not recorded)
    target_counts: I64 | None = None


def _routes(training: TrainingSet, labels: list[str]) -> dict[str, list[str]]:
    """Slice -> the members worth running there: those that proposed anything for validation
    requests of that slice (e.g. no factor model for users without history). A slice the
    validation window never saw runs every member."""
    slice_of_row = _slice_positions(training.history_lengths)
    proposed = np.isfinite(training.candidates.ranks)
    routes = {}
    for pos, name in enumerate(HISTORY_SLICES):
        in_slice = slice_of_row[training.candidates.rows] == pos
        if not np.any(slice_of_row == pos):
            routes[name] = list(labels)
            continue
        counts = proposed[in_slice].sum(axis=0)
        routes[name] = [label for label, n in zip(labels, counts, strict=True) if n > 0]
    return routes


def _slice_positions(lengths: npt.ArrayLike) -> I64:
    """Position of each history length's slice in HISTORY_SLICES."""
    labels = history_slice_labels(np.asarray(lengths, dtype=np.int64))
    position = {name: pos for pos, name in enumerate(HISTORY_SLICES)}
    return np.array([position[str(label)] for label in labels], dtype=np.int64)


def _stack_training(folds: list[TrainingSet]) -> TrainingSet:
    """The folds' pairs together, each fold's requests numbered after the previous ones'."""
    offsets = np.cumsum([0] + [f.candidates.n_rows for f in folds[:-1]]).tolist()
    n_rows = sum(f.candidates.n_rows for f in folds)
    return TrainingSet(
        _concat([f.candidates for f in folds], offsets, n_rows),
        FeatureTable(np.concatenate([f.features.values for f in folds]), folds[0].features.names),
        np.concatenate([f.labels for f in folds]),
        np.concatenate([f.users for f in folds]),
        np.concatenate([f.history_lengths for f in folds]),
        sum(f.n_targets for f in folds),
        None
        if any(f.target_counts is None for f in folds)
        else np.concatenate([f.target_counts for f in folds if f.target_counts is not None]),
    )


def _concat(parts: list[Candidates], offsets: list[int], n_rows: int) -> Candidates:
    if not parts:
        empty = np.zeros((0, 0), np.float32)
        return Candidates(np.zeros(0, np.int64), np.zeros(0, np.int32), empty, empty, empty, (), 0)
    return Candidates(
        np.concatenate([p.rows + off for p, off in zip(parts, offsets, strict=True)]),
        np.concatenate([p.items for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.ranks for p in parts]),
        np.concatenate([p.zscores for p in parts]),
        parts[0].members,
        n_rows,
    )


def _labels(cands: Candidates, truth: sp.csr_array) -> npt.NDArray[np.int8]:
    """1 where the candidate is one of its user's targets (truth rows = request rows)."""
    n_items = np.int64(truth.shape[1])
    truth_rows = np.repeat(np.arange(truth.shape[0], dtype=np.int64), np.diff(truth.indptr))
    truth_keys = np.sort(truth_rows * n_items + truth.indices)
    keys = cands.rows * n_items + cands.items
    return np.isin(keys, truth_keys).astype(np.int8)


def _groups_with_positives(training: TrainingSet) -> npt.NDArray[np.bool_]:
    """Pairs of users with at least one reachable target: others teach a ranker nothing."""
    rows = training.candidates.rows
    hits = np.bincount(rows, weights=training.labels, minlength=training.candidates.n_rows)
    mask: npt.NDArray[np.bool_] = hits[rows] > 0
    return mask


def _sample_negatives(
    training: TrainingSet, per_user: int | None, seed: int
) -> npt.NDArray[np.bool_]:
    """Every positive and at most `per_user` random negatives per request: the ranker learns
    as well from a sample of the easy negatives and trains several times faster."""
    labels = training.labels
    if per_user is None:
        return np.ones(labels.size, dtype=bool)
    rows = training.candidates.rows
    noise = np.random.default_rng(seed).random(labels.size)
    order = np.lexsort((noise, labels, rows))  # per row: negatives first, in random order
    sorted_rows = rows[order]
    position = np.arange(order.size) - np.searchsorted(sorted_rows, sorted_rows)
    keep = np.empty(labels.size, dtype=bool)
    keep[order] = position < per_user
    return keep | (labels > 0)


def _nonzero_groups(cands: Candidates) -> I64:
    sizes = cands.group_sizes()
    out: I64 = sizes[sizes > 0]
    return out


def validation_source(dataset: Dataset, min_interactions: int) -> Dataset:
    """The interactions of users with at least `min_interactions` items, ids unchanged (all of
    `dataset` when no user is lighter, as after the protocol's preparation, or none is left)."""
    lengths = dataset.user_history_lengths
    if lengths[lengths > 0].min(initial=min_interactions) >= min_interactions:
        return dataset
    heavy = np.flatnonzero(lengths >= min_interactions)
    if heavy.size == 0:
        return dataset
    users = dataset.column("user_idx")
    keep = pl.Series(np.isin(users, heavy))
    return dataset.with_interactions(dataset.interactions.filter(keep))

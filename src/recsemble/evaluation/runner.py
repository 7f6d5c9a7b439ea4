"""Run models under the protocol: fit on train, rank the full catalog, score every metric.

The runner calls generators exactly as a user would (fit, then batch recommend with the moment
of recommendation), so the figures it reports are what a deployment would have seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.data.dataset import Dataset
from recsemble.evaluation.metrics import CatalogStats, MetricResult, compute_metrics
from recsemble.evaluation.protocol import Split
from recsemble.evaluation.slices import history_slice_labels, longtail_hit_share, sliced_summary
from recsemble.generators.history import Histories
from recsemble.types import PAD_IDX, TopK, check_k

#: progress(model name, stage, done, total): stage is "fit" or "recommend".
Progress = Callable[[str, str, int, int], None]

_USERS_PER_CALL = 2048


class Model(Protocol):
    """What the runner needs: a generator or an ensemble, called as a user would."""

    def fit(self, dataset: Dataset) -> Any: ...

    def recommend(
        self,
        users: npt.ArrayLike,
        k: int,
        *,
        exclude_seen: bool = True,
        at: npt.ArrayLike | None = None,
        histories: Histories | None = None,
    ) -> TopK: ...


@runtime_checkable
class SteppedFit(Protocol):
    """A model whose fit reports its steps (the ensemble: each member fit, each training set,
    the ranker), so a long fit shows counts and an ETA rather than one silent step."""

    @property
    def fit_steps(self) -> int: ...

    def report_fit(self, start: Callable[[str], None], done: Callable[[], None]) -> None: ...


def fit_counting(model: Model, dataset: Dataset, on_step: Callable[[int, int], None]) -> None:
    """model.fit(dataset), calling on_step(done, total) as its steps complete."""
    if not isinstance(model, SteppedFit):
        on_step(0, 1)
        model.fit(dataset)
        on_step(1, 1)
        return
    total, count = model.fit_steps, 0
    on_step(0, total)

    def done() -> None:
        nonlocal count
        count = min(count + 1, total)
        on_step(count, total)

    model.report_fit(lambda _stage: None, done)
    try:
        model.fit(dataset)
    finally:  # a later fit (an analysis refit, say) does not report into this one's bar
        model.report_fit(lambda _stage: None, lambda: None)
    on_step(total, total)


@dataclass(frozen=True)
class ModelRun:
    """One model's lists for the evaluated users and their metrics at each k."""

    name: str
    topk: TopK  # row r: the list of split.evaluated_users[r]
    metrics: Mapping[int, MetricResult]
    fit_seconds: float
    recommend_seconds: float


@dataclass(frozen=True)
class Evaluation:
    split: Split
    users: npt.NDArray[np.int32]  # evaluated users, the row order of every array here
    slice_labels: npt.NDArray[np.str_]
    runs: Mapping[str, ModelRun]
    ks: tuple[int, ...]

    def summary(self, name: str, k: int) -> dict[str, float]:
        """The metrics of model `name` at cutoff k (both among those evaluated)."""
        if name not in self.runs:
            raise KeyError(f"no model {name!r} was evaluated; models: {list(self.runs)}")
        if k not in self.ks:
            raise KeyError(f"k={k} was not evaluated; evaluated: {list(self.ks)}")
        result = self.runs[name].metrics[k]
        out = result.summary()
        out[f"longtail_hit_share@{k}"] = longtail_hit_share(result)
        return out


def catalog_stats(split: Split) -> CatalogStats:
    """Train popularity, train users and (when items have any) categories for the metrics."""
    categories, names = split.train.item_categories()
    return CatalogStats(
        item_popularity=split.train.item_popularity,
        n_train_users=int(np.count_nonzero(split.train.user_history_lengths)),
        n_items=split.train.n_items,
        item_categories=categories if len(names) else None,
    )


def truth_matrix(split: Split, users: npt.NDArray[np.int32]) -> sp.csr_array:
    """Binary test matrix with one row per user in `users`."""
    return sp.csr_array(split.test.user_item_matrix("binary")[users])


def recommend_for_split(
    model: Model,
    split: Split,
    users: npt.NDArray[np.int32],
    k: int,
    on_progress: Callable[[int, int], None] | None = None,
) -> TopK:
    """Top-k over the full catalog, excluding train items, at each user's reference time."""
    items = np.full((users.size, k), PAD_IDX, dtype=np.int32)
    scores = np.full((users.size, k), -np.inf, dtype=np.float32)
    for lo in range(0, users.size, _USERS_PER_CALL):
        block = users[lo : lo + _USERS_PER_CALL]
        top = model.recommend(block, k, exclude_seen=True, at=split.reference_time[block])
        items[lo : lo + block.size], scores[lo : lo + block.size] = top.items, top.scores
        if on_progress is not None:
            on_progress(min(lo + block.size, users.size), users.size)
    return TopK(items, scores)


def evaluate(
    split: Split,
    models: Mapping[str, Model],
    ks: Sequence[int] = (10,),
    progress: Progress | None = None,
) -> Evaluation:
    """Fit each model on split.train and measure it on split.test at every k."""
    if not ks:
        raise ValueError("ks is empty: give the cutoffs to measure, e.g. (10,)")
    ks = [check_k(k) for k in ks]  # whole numbers >= 1
    users = split.evaluated_users
    stats = catalog_stats(split)
    truth = truth_matrix(split, users)
    history = split.train.user_item_matrix("binary")[users]
    runs: dict[str, ModelRun] = {}
    for name, model in models.items():

        def fitting(done: int, total: int, name: str = name) -> None:
            if progress:
                progress(name, "fit", done, total)

        def report(done: int, total: int, name: str = name) -> None:
            if progress:
                progress(name, "recommend", done, total)

        start = time.perf_counter()
        fit_counting(model, split.train, fitting)
        fitted = time.perf_counter()

        topk = recommend_for_split(model, split, users, max(ks), report)
        ranked = time.perf_counter()
        metrics = {k: compute_metrics(topk.items, truth, k, stats, history=history) for k in ks}
        runs[name] = ModelRun(name, topk, metrics, fitted - start, ranked - fitted)
    labels = history_slice_labels(split.train.user_history_lengths[users])
    return Evaluation(split, users, labels, runs, tuple(sorted(set(ks))))


def to_results_json(evaluation: Evaluation, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The results.json document: model name -> metrics, slices, per-user values and meta."""
    user_ids = [str(u) for u in evaluation.split.train.users.to_ids(evaluation.users)]
    out: dict[str, Any] = {}
    for name, run in evaluation.runs.items():
        entry: dict[str, Any] = {}
        slices: dict[str, dict[str, float]] = {}
        per_user: dict[str, Any] = {"user_id": user_ids, "slice": evaluation.slice_labels.tolist()}
        for k, result in run.metrics.items():
            entry.update(evaluation.summary(name, k))
            for slice_name, values in sliced_summary(result, evaluation.slice_labels).items():
                slices.setdefault(slice_name, {}).update(values)
            per_user.update({f"{m}@{k}": v.tolist() for m, v in result.per_user().items()})
        entry["slices"] = slices
        entry["per_user"] = per_user
        entry["meta"] = {
            **meta,
            "model": name,
            "n_users": int(evaluation.users.size),
            "fit_seconds": round(run.fit_seconds, 4),
            "recommend_seconds": round(run.recommend_seconds, 4),
        }
        out[name] = entry
    return out

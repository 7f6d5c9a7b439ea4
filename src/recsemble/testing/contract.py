"""The contract every candidate generator must pass, as plain functions over a factory.

A check raises AssertionError when the contract is broken and `NotApplicable` when it does not
concern the member (e.g. the fold-in relevance check for a popularity model).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from recsemble.data.dataset import Dataset
from recsemble.errors import NotFittedError, RecsembleError
from recsemble.generators.base import CandidateGenerator
from recsemble.generators.config import RecencyConfig
from recsemble.generators.history import Histories
from recsemble.testing.data import (
    ACTION_ITEMS,
    DAY,
    DRAMA_ITEMS,
    T0,
    empty_dataset,
    single_item_dataset,
    tiny_dataset,
)
from recsemble.types import PAD_IDX, TopK

Factory = Callable[[], CandidateGenerator]
Check = Callable[[Factory], None]


class NotApplicable(Exception):
    """The check does not concern this generator (test runners report it as skipped)."""


# ---------------------------------------------------------------------------- helpers
def _idx(data: Dataset, ids: Sequence[str]) -> list[int]:
    return [data.items.idx_of(i) for i in ids]


def assert_valid_topk(top: TopK, n_rows: int, k: int, n_items: int, where: str = "") -> None:
    """Shape, dtypes, padding only at the end, valid idx, no duplicates, scores non-increasing."""
    at = f" ({where})" if where else ""
    assert isinstance(top, TopK), f"recommend must return a TopK{at}, got {type(top)}"
    items, scores = top.items, top.scores
    assert items.shape == (n_rows, k), f"items shape {items.shape} != {(n_rows, k)}{at}"
    assert scores.shape == (n_rows, k), f"scores shape {scores.shape} != {(n_rows, k)}{at}"
    assert items.dtype == np.int32, f"items dtype {items.dtype} != int32{at}"
    assert scores.dtype == np.float32, f"scores dtype {scores.dtype} != float32{at}"
    pad = items == PAD_IDX
    assert not np.any(pad[:, :-1] & ~pad[:, 1:]), f"padding (-1) before an item{at}"
    real = items[~pad]
    assert np.all((real >= 0) & (real < n_items)), f"item idx outside 0..{n_items - 1}{at}"
    assert np.all(np.isneginf(scores[pad])), f"padding must score -inf{at}"
    assert not np.any(np.isnan(scores)), f"NaN scores{at}"
    assert not np.any(np.isneginf(scores[~pad])), f"a recommended item scores -inf{at}"
    ordered = np.sort(np.where(pad, -1 - np.arange(k), items), axis=1)
    assert not np.any(ordered[:, 1:] == ordered[:, :-1]), f"an item twice in one row{at}"
    both = ~pad[:, 1:]
    assert np.all(scores[:, 1:][both] <= scores[:, :-1][both]), f"scores rise along a row{at}"


def _fit(factory: Factory, data: Dataset) -> CandidateGenerator:
    model = factory()
    fitted = model.fit(data)
    assert fitted is model, "fit must return self"
    return model


def _all_users(data: Dataset) -> npt.NDArray[np.int32]:
    return np.arange(data.n_users, dtype=np.int32)


def _same_answers(a: CandidateGenerator, b: CandidateGenerator, data: Dataset, what: str) -> None:
    users = _all_users(data)
    top_a, top_b = a.recommend(users, 5), b.recommend(users, 5)
    np.testing.assert_array_equal(top_a.items, top_b.items, err_msg=f"{what}: lists differ")
    np.testing.assert_allclose(
        top_a.scores, top_b.scores, rtol=1e-5, atol=1e-6, err_msg=f"{what}: scores differ"
    )


# ---------------------------------------------------------------------------- checks
def check_fit_returns_self(factory: Factory) -> None:
    _fit(factory, tiny_dataset())


def check_not_fitted(factory: Factory) -> None:
    """Using a model before fit raises NotFittedError."""
    try:
        factory().recommend([0], 3)
    except NotFittedError:
        return
    raise AssertionError("recommend before fit must raise NotFittedError")


def check_recommend_shape(factory: Factory) -> None:
    """(n_users x k) int32 / float32, padded with -1 at the end only, valid idx, no NaN."""
    data = tiny_dataset()
    model = _fit(factory, data)
    for k in (1, 4):
        top = model.recommend(_all_users(data), k)
        assert_valid_topk(top, data.n_users, k, data.n_items, f"k={k}")
    top = model.recommend(_all_users(data), 4, exclude_seen=False)
    assert_valid_topk(top, data.n_users, 4, data.n_items, "exclude_seen=False")
    one = model.recommend(np.int32(0), 3)
    assert_valid_topk(one, 1, 3, data.n_items, "a scalar user")


def check_exclude_seen(factory: Factory) -> None:
    """exclude_seen=True never returns an item of the user's fitted history."""
    data = tiny_dataset()
    model = _fit(factory, data)
    users = _all_users(data)
    top = model.recommend(users, data.n_items)
    seen = data.user_item_matrix("binary").toarray() > 0
    rows, cols = np.nonzero(top.items != PAD_IDX)
    hits = seen[users[rows], top.items[rows, cols]]
    assert not hits.any(), f"{int(hits.sum())} seen items recommended"


def check_determinism(factory: Factory) -> None:
    """Two fits with the same config give identical lists."""
    data = tiny_dataset()
    _same_answers(_fit(factory, data), _fit(factory, data), data, "two fits")


def check_save_load(factory: Factory) -> None:
    """save -> CandidateGenerator.load gives identical scores and lists."""
    data = tiny_dataset()
    model = _fit(factory, data)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        loaded = CandidateGenerator.load(tmp)
    assert type(loaded) is type(model), f"loaded a {type(loaded).__name__}"
    assert loaded.config == model.config, "config changed through save/load"
    users = np.arange(-1, data.n_users + 2, dtype=np.int32)
    all_items = np.arange(data.n_items)
    np.testing.assert_array_equal(
        model.score(users, all_items), loaded.score(users, all_items), err_msg="scores differ"
    )
    _same_answers(model, loaded, data, "save/load")


def check_score_matches_recommend(factory: Factory) -> None:
    """recommend's scores equal score() for those items, and nothing unseen scores higher."""
    data = tiny_dataset()
    model = _fit(factory, data)
    users = _all_users(data)
    k = 3
    top = model.recommend(users, k)
    full = model.score(users, np.arange(data.n_items))
    assert full.shape == (users.size, data.n_items), f"score shape {full.shape}"
    assert full.dtype == np.float32, f"score dtype {full.dtype}"
    assert not np.isnan(full).any(), "score() returned NaN"
    real = top.items != PAD_IDX
    picked = np.take_along_axis(full, np.where(real, top.items, 0), axis=1)
    np.testing.assert_allclose(
        top.scores[real], picked[real], rtol=1e-5, atol=1e-6, err_msg="score != recommend"
    )
    rest = full.copy()
    rest[data.user_item_matrix("binary").toarray() > 0] = -np.inf
    np.put_along_axis(rest, np.where(real, top.items, 0), -np.inf, axis=1)
    # A full row's k-th score bounds the rest; a padded row leaves only -inf items out.
    kth = np.where(real.all(axis=1), top.scores[:, -1], -np.inf)
    tolerance = np.where(np.isfinite(kth), 1e-6 * np.abs(kth), 0.0)
    left_out = rest.max(axis=1) > kth + tolerance
    assert not left_out.any(), f"rows {np.flatnonzero(left_out)}: a better item was left out"


def check_alone_matches_batch(factory: Factory) -> None:
    """A request scored alone gets the scores it gets inside a large batch: the paths a
    member takes for one request (serving) and for many (evaluation, batch jobs) agree."""
    data = tiny_dataset()
    model = _fit(factory, data)
    batch = np.resize(_all_users(data), 40)  # above every small-request threshold
    together = model.score_catalog(batch)
    for row, user in enumerate(batch[: data.n_users]):
        alone = model.score_catalog(np.array([user], dtype=np.int32))[0]
        np.testing.assert_array_equal(
            np.isinf(alone), np.isinf(together[row]), err_msg=f"user {user}: -inf differs"
        )
        finite = np.isfinite(alone)
        np.testing.assert_allclose(
            alone[finite],
            together[row][finite],
            rtol=1e-5,
            atol=1e-6,
            err_msg=f"user {user}: scores alone differ from the batch's",
        )


def check_unknown_users(factory: Factory) -> None:
    """Users never seen (idx >= n_users, -1) get an answer, not an exception."""
    data = tiny_dataset()
    model = _fit(factory, data)
    users = np.array([data.n_users, data.n_users + 5, -1, 0], dtype=np.int32)
    top = model.recommend(users, 4)
    assert_valid_topk(top, users.size, 4, data.n_items, "unknown users")
    scores = model.score(users, np.arange(data.n_items))
    assert not np.isnan(scores).any(), "score() of unknown users returned NaN"


def _fold_in_histories(data: Dataset) -> tuple[Histories, list[list[int]]]:
    a, b, c = _idx(data, ["i900", "i901", "i906"])
    rows = [[a, b], [c], [], [a, b, c]]
    stamps = [[T0, T0], [T0], [], [T0, T0 + DAY, T0 + DAY]]  # ties: simultaneous events
    return Histories.from_lists(rows, data.n_items, timestamps=stamps), rows


def check_histories_accepted(factory: Factory) -> None:
    """histories= passed at request time (fold-in) work, an EMPTY history too."""
    data = tiny_dataset()
    model = _fit(factory, data)
    histories, rows = _fold_in_histories(data)
    users = np.array([0, data.n_users, data.n_users + 1, -1], dtype=np.int32)
    top = model.recommend(users, 5, histories=histories)
    assert_valid_topk(top, users.size, 5, data.n_items, "histories=")
    for r, row in enumerate(rows):
        assert not set(row) & set(top.items[r].tolist()), f"row {r}: a passed item came back"
    scores = model.score(users, np.arange(data.n_items), histories=histories)
    assert not np.isnan(scores).any(), "score() with histories= returned NaN"
    empty = Histories.from_lists([[]], data.n_items)
    assert_valid_topk(model.recommend([0], 3, histories=empty), 1, 3, data.n_items, "empty")


def _history_based(model: CandidateGenerator) -> bool:
    return isinstance(model.config, RecencyConfig)


def check_fold_in_changes_answer(factory: Factory) -> None:
    """History-based members score from the passed history: an unseen user with a history
    gets other scores than with an empty one."""
    data = tiny_dataset()
    model = _fit(factory, data)
    if not _history_based(model):
        raise NotApplicable("the config is not a RecencyConfig: not a history-based member")
    histories = Histories.from_lists([_idx(data, ["i900", "i901"]), []], data.n_items)
    unknown = np.array([data.n_users, data.n_users], dtype=np.int32)
    scores = model.score(unknown, np.arange(data.n_items), histories=histories)
    assert not np.array_equal(scores[0], scores[1]), "the passed history is ignored"


def check_fold_in_relevance(factory: Factory) -> None:
    """Known answer: a history inside one taste cluster brings mostly that cluster's items."""
    data = tiny_dataset()
    model = _fit(factory, data)
    if not _history_based(model):
        raise NotApplicable("the config is not a RecencyConfig: not a history-based member")
    action, drama = _idx(data, ACTION_ITEMS), _idx(data, DRAMA_ITEMS)
    histories = Histories.from_lists([action[:2], drama[:2]], data.n_items)
    top = model.recommend([data.n_users, data.n_users], 3, histories=histories)
    for r, cluster in enumerate((action, drama)):
        inside = np.isin(top.items[r], cluster).sum()
        assert inside >= 2, f"row {r}: {inside} of 3 items from the history's cluster"


def _check_fits_empty(factory: Factory, data: Dataset, what: str) -> None:
    try:
        model = factory().fit(data)
    except RecsembleError:
        return  # a clear, documented refusal is fine
    users = np.array([0, 1, data.n_users, -1], dtype=np.int32)
    assert_valid_topk(model.recommend(users, 3), users.size, 3, data.n_items, what)
    history = Histories.from_lists([[0] if data.n_items else []], data.n_items)
    top = model.recommend([0], 3, histories=history)
    assert_valid_topk(top, 1, 3, data.n_items, f"{what}, histories=")


def check_empty_dataset(factory: Factory) -> None:
    """Known users and items but 0 interactions: fit works and answers (empty or fallback
    lists), or fit raises a clear RecsembleError (not a random numpy error)."""
    _check_fits_empty(factory, empty_dataset(with_catalog=True), "no interactions")


def check_empty_catalog(factory: Factory) -> None:
    """No users, no items, no interactions: the same rule as check_empty_dataset."""
    _check_fits_empty(factory, empty_dataset(with_catalog=False), "no users, no items")


def check_single_item(factory: Factory) -> None:
    """A catalog of one item works."""
    data = single_item_dataset()
    model = _fit(factory, data)
    users = np.array([0, 1, 2, data.n_users], dtype=np.int32)
    top = model.recommend(users, 3)
    assert_valid_topk(top, users.size, 3, 1, "exclude_seen")
    assert np.all(top.items[:3] == PAD_IDX), "the only item is seen by every known user"
    assert_valid_topk(model.recommend(users, 3, exclude_seen=False), users.size, 3, 1, "all")


def check_k_beyond_catalog(factory: Factory) -> None:
    """k larger than the catalog pads the rows."""
    data = tiny_dataset()
    model = _fit(factory, data)
    k = data.n_items + 3
    for exclude in (True, False):
        top = model.recommend(_all_users(data), k, exclude_seen=exclude)
        assert_valid_topk(top, data.n_users, k, data.n_items, f"k={k}")
        assert np.all(top.items[:, data.n_items :] == PAD_IDX), "more items than the catalog"


def check_similar_items(factory: Factory) -> None:
    """similar_items works (no self, k columns, valid rows) or raises NotImplementedError."""
    data = tiny_dataset()
    model = _fit(factory, data)
    items = np.arange(data.n_items, dtype=np.int32)
    try:
        top = model.similar_items(items, 3)
    except NotImplementedError as exc:
        raise NotApplicable(f"no item-item similarity: {exc}") from None
    assert_valid_topk(top, items.size, 3, data.n_items, "similar_items")
    assert not np.any(top.items == items[:, None]), "an item is similar to itself"
    wide = model.similar_items(items[:2], data.n_items + 2)
    assert_valid_topk(wide, 2, data.n_items + 2, data.n_items, "similar_items, large k")


def check_bad_arguments(factory: Factory) -> None:
    """Ids where idx belong, idx outside the catalog and a bad k are refused by name."""
    data = tiny_dataset()
    model = _fit(factory, data)
    users, n = _all_users(data), data.n_items
    for call, error in (
        (lambda: model.recommend(data.users.ids[:2], 3), TypeError),  # external ids
        (lambda: model.recommend(users, 2.5), TypeError),  # type: ignore[arg-type]
        (lambda: model.score(users, [n]), IndexError),
        (lambda: model.score(users, [-1]), IndexError),  # not the last item
        (lambda: model.similar_items([-1], 3), (IndexError, NotImplementedError)),
        (lambda: model.similar_items([0], 0), (ValueError, NotImplementedError)),
    ):
        try:
            call()
        except error:
            continue
        raise AssertionError(f"bad arguments were not refused with {error}")
    wrapped = model.recommend(np.array([2**32], dtype=np.int64), 3)  # int32 would wrap to 0
    assert np.array_equal(wrapped.items, model.recommend([-1], 3).items), "user 2**32 wrapped"


def check_config_rejects_unknown_keys(factory: Factory) -> None:
    """Config is frozen pydantic with extra='forbid': a misspelled key is a ValidationError."""
    cls = type(factory())
    unknown: dict[str, Any] = {"no_such_option": 1}
    for attempt in (lambda: cls(**unknown), lambda: cls.Config.model_validate(unknown)):
        try:
            attempt()
        except ValidationError:
            continue
        raise AssertionError(f"{cls.__name__} accepted an unknown config key")


#: Every contract check by name, in a sensible reporting order.
CONTRACT_CHECKS: dict[str, Check] = {
    "fit_returns_self": check_fit_returns_self,
    "not_fitted": check_not_fitted,
    "recommend_shape": check_recommend_shape,
    "exclude_seen": check_exclude_seen,
    "determinism": check_determinism,
    "save_load": check_save_load,
    "score_matches_recommend": check_score_matches_recommend,
    "alone_matches_batch": check_alone_matches_batch,
    "unknown_users": check_unknown_users,
    "histories_accepted": check_histories_accepted,
    "fold_in_changes_answer": check_fold_in_changes_answer,
    "fold_in_relevance": check_fold_in_relevance,
    "empty_dataset": check_empty_dataset,
    "empty_catalog": check_empty_catalog,
    "single_item": check_single_item,
    "k_beyond_catalog": check_k_beyond_catalog,
    "similar_items": check_similar_items,
    "bad_arguments": check_bad_arguments,
    "config_rejects_unknown_keys": check_config_rejects_unknown_keys,
}


def check_generator(factory: Factory, *, skip: Sequence[str] = ()) -> list[str]:
    """Run every contract check; raises AssertionError naming each failed one.

    Returns the names of the checks that did not apply (NotApplicable).
    """
    failures: list[str] = []
    not_applicable: list[str] = []
    for name, check in CONTRACT_CHECKS.items():
        if name in skip:
            continue
        try:
            check(factory)
        except NotApplicable:
            not_applicable.append(name)
        except Exception as exc:  # collect them all: one report per generator
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    if failures:
        raise AssertionError("contract checks failed:\n  " + "\n  ".join(failures))
    return not_applicable

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsemble.data.dataset import Dataset
from recsemble.generators.ann import InnerProductIndex
from recsemble.generators.base import CandidateGenerator
from recsemble.generators.mf import BPR, IALS
from recsemble.generators.topk import topk_rows
from recsemble.types import PAD_IDX


def _random(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(
        len(set(f[f != PAD_IDX]) & set(e[e != PAD_IDX])) for f, e in zip(found, exact, strict=True)
    )
    return hits / max(1, int((exact != PAD_IDX).sum()))


def _random_exclusions(n_rows: int, n_items: int, per_row: int, seed: int) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    cols = np.concatenate([rng.choice(n_items, per_row, replace=False) for _ in range(n_rows)])
    indptr = np.arange(0, n_rows * per_row + 1, per_row)
    return sp.csr_array(
        (np.ones(cols.size), np.sort(cols.reshape(n_rows, -1)).ravel(), indptr),
        shape=(n_rows, n_items),
    )


def test_exact_mode_equals_numpy_topk() -> None:
    items, queries = _random(500, 16, 0), _random(40, 16, 1)
    index = InnerProductIndex(items, hnsw_threshold=None)
    assert not index.approximate
    found, scores = index.search(queries, 10)
    want, want_scores = topk_rows((queries @ items.T).astype(np.float32), 10)
    np.testing.assert_array_equal(found, want)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_hnsw_recall_at_10_against_exact() -> None:
    items, queries = _random(4000, 32, 2), _random(300, 32, 3)
    index = InnerProductIndex(items, hnsw_threshold=1000, ef_search=128)
    assert index.approximate
    found, _ = index.search(queries, 10)
    exact, _ = index.exact(queries, 10, None)
    assert _recall(found, exact) >= 0.95


@pytest.mark.parametrize("threshold", [None, 1])
def test_excluded_items_are_never_returned(threshold: int | None) -> None:
    items, queries = _random(2000, 16, 4), _random(100, 16, 5)
    exact_index = InnerProductIndex(items, hnsw_threshold=None)
    best, _ = exact_index.search(queries, 50)
    # Exclude each row's 40 best items plus 30 random ones: the graph must dig past them.
    extra = _random_exclusions(100, 2000, 30, 6)
    rows = np.repeat(np.arange(100), 40)
    best_part = sp.csr_array((np.ones(rows.size), (rows, best[:, :40].ravel())), shape=extra.shape)
    exclude = sp.csr_array((extra + best_part) > 0).astype(np.float32)
    found, _ = InnerProductIndex(items, hnsw_threshold=threshold).search(queries, 10, exclude)
    assert (found != PAD_IDX).all()
    for r in range(100):
        assert not set(found[r]) & set(exclude[[r]].indices)
    want, _ = exact_index.exact(queries, 10, exclude)
    assert _recall(found, want) >= 0.95


def test_rows_left_short_fall_back_to_exact() -> None:
    """All but 3 items excluded: whatever the graph finds, exactly those 3 come back."""
    items, queries = _random(1500, 8, 7), _random(5, 8, 8)
    allowed = np.array([10, 700, 1400])
    banned = np.setdiff1d(np.arange(1500), allowed)
    exclude = sp.csr_array(
        (np.ones(5 * banned.size), np.tile(banned, 5), np.arange(6) * banned.size),
        shape=(5, 1500),
    )
    found, scores = InnerProductIndex(items, hnsw_threshold=1).search(queries, 5, exclude)
    assert (np.sort(found[:, :3], axis=1) == allowed).all()
    assert (found[:, 3:] == PAD_IDX).all() and np.isinf(scores[:, 3:]).all()


def _synthetic_interactions(n_users: int = 300, n_items: int = 2000, seed: int = 9) -> Dataset:
    """Users drawn to one of 20 item groups, 15 events each, mostly inside their group."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        group = rng.integers(20)
        in_group = rng.integers(0, n_items // 20, size=12) + group * (n_items // 20)
        picks = np.concatenate([in_group, rng.integers(0, n_items, size=3)])
        rows.extend((f"u{u}", f"i{i}", 1_000 + t) for t, i in enumerate(picks))
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(frame.unique(["user_id", "item_id"]))


@pytest.fixture(scope="module")
def interactions() -> Dataset:
    return _synthetic_interactions()


@pytest.mark.parametrize("model", [IALS, BPR])
def test_mf_member_with_ann_matches_exact(
    model: type[CandidateGenerator], interactions: Dataset, tmp_path: Path
) -> None:
    fitted = model(factors=16, iterations=5, ann_threshold=1).fit(interactions)
    users = np.arange(interactions.n_users)
    got = fitted.recommend(users, 10)
    exact = topk_rows(fitted.score_catalog(users), 10)[0]  # score_catalog stays exact
    assert _recall(got.items, exact) >= 0.95
    seen = fitted.histories_.rows(users).seen_matrix()
    for r in users:
        assert not set(got.items[r]) & set(seen[[r]].indices)
    # Loading rebuilds the index from the saved factors: the same answers.
    loaded = CandidateGenerator.load(fitted.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.recommend(users, 10).items, got.items)


def test_mf_similar_items_with_ann_matches_exact(interactions: Dataset) -> None:
    approx = IALS(factors=16, iterations=5, ann_threshold=1).fit(interactions)
    items = np.arange(0, interactions.n_items, 7)
    got = approx.similar_items(items, 10).items
    assert not (got == items[:, None]).any()
    factors = approx.item_factors_
    unit = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    sims = (unit[items] @ unit.T).astype(np.float32)
    sims[np.arange(items.size), items] = -np.inf
    assert _recall(got, topk_rows(sims, 10)[0]) >= 0.95

"""topk_rows against a plain full sort: same items, scores and padding, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from recsemble.generators.topk import topk_rows
from recsemble.types import PAD_IDX


def _by_sorting(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row sorted by (score desc, column asc); infinite scores become padding."""
    n_rows, n_cols = scores.shape
    items = np.full((n_rows, k), PAD_IDX, dtype=np.int32)
    vals = np.full((n_rows, k), -np.inf, dtype=np.float32)
    for r in range(n_rows):
        order = np.lexsort((np.arange(n_cols), -scores[r]))[:k]
        items[r, : order.size] = order
        vals[r, : order.size] = scores[r, order]
    padding = ~np.isfinite(vals)
    items[padding] = PAD_IDX
    vals[padding] = -np.inf
    return items, vals


def _scores(rng: np.random.Generator, kind: str, shape: tuple[int, int]) -> np.ndarray:
    if kind == "normal":
        out = rng.standard_normal(shape)
    elif kind == "few values":  # ties everywhere, also at the k-th place
        out = rng.integers(0, 4, shape).astype(float)
    elif kind == "mostly -inf":  # rows with fewer than k finite scores
        out = np.where(rng.random(shape) < 0.8, -np.inf, rng.integers(0, 3, shape))
    else:  # "+inf": padding ahead of finite scores
        out = np.where(rng.random(shape) < 0.05, np.inf, rng.standard_normal(shape))
    return out.astype(np.float32)


@pytest.mark.parametrize("kind", ["normal", "few values", "mostly -inf", "+inf"])
@pytest.mark.parametrize(("n_cols", "k"), [(7, 3), (40, 40), (50, 80), (3000, 10), (5000, 25)])
def test_topk_rows_matches_a_full_sort(kind: str, n_cols: int, k: int) -> None:
    rng = np.random.default_rng(n_cols * 31 + k)
    scores = _scores(rng, kind, (9, n_cols))
    scores[0] = 0.0  # one value throughout: the lowest columns win
    scores[1] = -np.inf  # nothing to recommend
    items, vals = topk_rows(scores.copy(), k)
    want_items, want_vals = _by_sorting(scores, k)
    np.testing.assert_array_equal(items, want_items)
    np.testing.assert_array_equal(vals, want_vals)


def test_topk_rows_on_wide_rows_whose_best_share_a_column_group() -> None:
    # Wide rows bound their k-th best by the smallest maximum of k column groups: put all the
    # best scores in one group (and a tie of the best in another) to check nothing is lost.
    scores = np.zeros((2, 4000), dtype=np.float32)
    scores[:, :300] = np.linspace(1.0, 2.0, 300, dtype=np.float32)
    scores[1, 3999] = 2.0  # tied with the best, in the last group
    items, vals = topk_rows(scores.copy(), 5)
    want_items, want_vals = _by_sorting(scores, 5)
    np.testing.assert_array_equal(items, want_items)
    np.testing.assert_array_equal(vals, want_vals)
    assert items[1, :2].tolist() == [299, 3999]  # equal scores: the lower column first


def test_topk_rows_empty_inputs() -> None:
    items, vals = topk_rows(np.zeros((0, 5), dtype=np.float32), 3)
    assert items.shape == (0, 3) and vals.shape == (0, 3)
    items, vals = topk_rows(np.zeros((2, 0), dtype=np.float32), 3)
    assert (items == PAD_IDX).all() and np.isneginf(vals).all()

"""User-kNN with per-item neighbourhoods (rater_lists.py): each item sums the similarities of
its k most similar raters, checked against a brute-force loop; the member passes the contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsemble.generators.knn import UserKNN
from recsemble.generators.rater_lists import RaterLists
from recsemble.testing.contract import CONTRACT_CHECKS, NotApplicable


def _brute_force(matrix: np.ndarray, sims: np.ndarray, k: int) -> np.ndarray:
    out = np.full((sims.shape[0], matrix.shape[1]), -np.inf, dtype=np.float32)
    for r in range(sims.shape[0]):
        for item in range(matrix.shape[1]):
            raters = np.flatnonzero(matrix[:, item])
            best = np.sort(np.maximum(sims[r, raters], 0))[::-1][:k]
            if best.sum() > 0:
                out[r, item] = best.sum()
    return out


@pytest.mark.parametrize("k", [1, 3, 50])
def test_scores_sum_each_items_k_most_similar_raters(k: int) -> None:
    rng = np.random.default_rng(k)
    matrix = (rng.random((40, 25)) < 0.3).astype(np.float32)
    matrix[:, 3] = 1.0  # an item every user has: always "wide"
    matrix[:, 7] = 0.0  # an item nobody has: no evidence
    sims = rng.standard_normal((6, 40)).astype(np.float32)
    got = RaterLists.build(sp.csr_array(matrix), k).scores(sims)
    np.testing.assert_allclose(got, _brute_force(matrix, sims, k), rtol=1e-5)
    assert np.isneginf(got[:, 7]).all()


def test_row_blocks_do_not_change_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import recsemble.generators.rater_lists as module

    rng = np.random.default_rng(0)
    matrix = sp.csr_array((rng.random((30, 12)) < 0.5).astype(np.float32))
    sims = rng.random((9, 30)).astype(np.float32)
    lists = RaterLists.build(matrix, 4)
    whole = lists.scores(sims)
    monkeypatch.setattr(module, "_GATHER_CELLS", 1)  # one row at a time
    np.testing.assert_array_equal(lists.scores(sims), whole)


@pytest.mark.parametrize("check", list(CONTRACT_CHECKS))
def test_item_neighbourhoods_pass_the_contract(check: str) -> None:
    try:
        CONTRACT_CHECKS[check](lambda: UserKNN(neighbourhood="item", neighbors=2))
    except NotApplicable as exc:
        pytest.skip(str(exc))

"""Diversity-aware top-k: the greedy re-ranking against known answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsemble.evaluation.metrics import CatalogStats, compute_metrics
from recsemble.ranking.candidates import Candidates
from recsemble.ranking.diversity import bit_jaccard, diversified_top_per_row, pack_bits
from recsemble.ranking.ensemble import _top_per_row
from recsemble.types import PAD_IDX


def _cands(
    rows: list[int], items: list[int], proposed: list[list[bool]], n_rows: int
) -> Candidates:
    ranks = np.where(np.array(proposed), 1.0, np.nan).astype(np.float32)
    members = tuple(f"m{j}" for j in range(ranks.shape[1]))
    return Candidates(
        np.array(rows, np.int64), np.array(items, np.int32), ranks, ranks, ranks, members, n_rows
    )


def _random_cands(seed: int, n_rows: int = 40, n_items: int = 60) -> tuple[Candidates, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, n_rows * n_items, size=n_rows * 25))
    keys = keys[keys // n_items != 3]  # row 3 has no candidates at all
    rows, items = keys // n_items, keys % n_items
    proposed = rng.random((keys.size, 5)) < 0.4
    proposed[np.arange(keys.size), rng.integers(0, 5, keys.size)] = True
    cands = _cands(rows.tolist(), items.tolist(), proposed.tolist(), n_rows)
    scores = np.round(rng.random(keys.size), 1).astype(np.float32)  # many ties
    return cands, scores


def _categories(n_items: int, seed: int) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    return sp.csr_array((rng.random((n_items, 6)) < 0.3).astype(np.float32))


def _as_matrix(out: tuple[np.ndarray, ...], n_rows: int, k: int) -> np.ndarray:
    rows, slots, items, _ = out
    recs = np.full((n_rows, k), PAD_IDX, dtype=np.int64)
    recs[rows, slots] = items
    return recs


@pytest.mark.parametrize("similarity", ["category", "members", "both"])
def test_zero_strength_is_the_plain_top_k(similarity: str) -> None:
    cands, scores = _random_cands(0)
    plain = _top_per_row(cands, scores, 10)
    out = diversified_top_per_row(
        cands,
        scores,
        10,
        0.0,
        item_categories=_categories(60, 1),
        similarity=similarity,  # type: ignore[arg-type]
    )
    for got, want in zip(out, plain, strict=True):
        np.testing.assert_array_equal(got, want)


def test_large_strength_raises_ild_on_a_hand_made_list() -> None:
    # items 0, 1, 2 are dramas (best scores), 3 and 4 comedies, 5 a documentary
    cats = sp.csr_array(
        np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])
    )
    cands = _cands([0] * 6, list(range(6)), [[True]] * 6, 1)
    scores = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5], np.float32)
    stats = CatalogStats(np.ones(6, np.int64), 1, 6, cats)
    truth = sp.csr_array(np.ones((1, 6)))

    def ild(strength: float) -> tuple[list[int], float]:
        out = diversified_top_per_row(
            cands, scores, 3, strength, item_categories=cats, similarity="category"
        )
        recs = _as_matrix(out, 1, 3)
        return recs[0].tolist(), float(compute_metrics(recs, truth, 3, stats).ild[0])

    assert ild(0.0) == ([0, 1, 2], 0.0)
    items, value = ild(2.0)
    assert items == [0, 3, 5]
    assert value == pytest.approx(1.0)


def test_member_overlap_penalises_candidates_of_the_same_members() -> None:
    # 0 and 1 are proposed by members {a, b}; 2 by {c} alone and scored lower
    cands = _cands([0, 0, 0], [0, 1, 2], [[True, True, False]] * 2 + [[False, False, True]], 1)
    scores = np.array([1.0, 0.9, 0.5], np.float32)
    plain = diversified_top_per_row(cands, scores, 2, 0.0, similarity="members")
    diverse = diversified_top_per_row(cands, scores, 2, 1.0, similarity="members")
    assert plain[2].tolist() == [0, 1]
    assert diverse[2].tolist() == [0, 2]
    np.testing.assert_array_equal(diverse[3], np.array([1.0, 0.5], np.float32))  # ranker scores


def test_mean_redundancy_forgives_one_similar_item_that_max_does_not() -> None:
    # 0 {A} and 1 {B} are picked first; then 2 {A} (like 0, unlike 1) against 3 {C}
    cats = sp.csr_array(np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]]))
    cands = _cands([0] * 4, [0, 1, 2, 3], [[True]] * 4, 1)
    scores = np.array([1.0, 0.9, 0.8, 0.0], np.float32)  # already min-max normalised

    def picks(how: str) -> list[int]:
        out = diversified_top_per_row(
            cands,
            scores,
            3,
            1.0,
            item_categories=cats,
            similarity="category",
            redundancy=how,  # type: ignore[arg-type]
        )
        return [int(item) for item in out[2]]

    assert picks("max") == [0, 1, 3]  # 0.8 - 1.0 * max(1, 0) < 0
    assert picks("mean") == [0, 1, 2]  # 0.8 - 1.0 * mean(1, 0) > 0


def test_rows_are_independent_of_each_other() -> None:
    cands, scores = _random_cands(2)
    cats = _categories(60, 3)
    together = _as_matrix(
        diversified_top_per_row(cands, scores, 8, 0.3, item_categories=cats), cands.n_rows, 8
    )
    for row in (0, 5, 17):
        mask = cands.rows == row
        alone = cands.take(mask)
        alone = Candidates(
            np.zeros(int(mask.sum()), np.int64),
            alone.items,
            alone.scores,
            alone.ranks,
            alone.zscores,
            alone.members,
            1,
        )
        out = diversified_top_per_row(alone, scores[mask], 8, 0.3, item_categories=cats)
        np.testing.assert_array_equal(_as_matrix(out, 1, 8)[0], together[row])


def test_short_and_empty_rows_are_padded() -> None:
    cands, scores = _random_cands(4)
    recs = _as_matrix(
        diversified_top_per_row(cands, scores, 10, 0.5, similarity="members"), cands.n_rows, 10
    )
    assert (recs[3] == PAD_IDX).all()
    counts = np.bincount(cands.rows, minlength=cands.n_rows)
    np.testing.assert_array_equal((recs != PAD_IDX).sum(axis=1), np.minimum(counts, 10))
    for row in recs:
        listed = row[row != PAD_IDX]
        assert np.unique(listed).size == listed.size


def test_bit_jaccard_across_words() -> None:
    sets = np.zeros((3, 130), dtype=bool)
    sets[0, [0, 64, 129]] = True
    sets[1, [0, 129]] = True
    words = pack_bits(sets)
    assert words.shape == (3, 3)
    assert bit_jaccard(words[0], words[1]) == pytest.approx(2 / 3)
    assert bit_jaccard(words[2], words[2]) == 0.0  # two empty sets


def test_category_similarity_needs_categories() -> None:
    cands, scores = _random_cands(5)
    with pytest.raises(ValueError, match="categories"):
        diversified_top_per_row(cands, scores, 5, 0.1, similarity="category")
    with pytest.raises(ValueError, match="strength"):
        diversified_top_per_row(cands, scores, 5, -1.0)

"""The set search of benchmarks/diversity_frontier.py on lists with known answers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import diversity_frontier as frontier

K = frontier.K


def _objective(rel: np.ndarray, dist: np.ndarray, beta: float, chosen: np.ndarray) -> float:
    ordered = np.sort(rel[chosen])[::-1]
    pairs = dist[np.ix_(chosen, chosen)].sum() / 2
    return float((ordered * frontier.DISCOUNT[: len(chosen)]).sum() + beta * pairs / 45)


def _two_genre_pool(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """The best half of the pool in genre A, the rest in genre B; relevance falls slowly."""
    genres = np.zeros((n, 2), dtype=np.bool_)
    genres[: n // 2, 0] = True
    genres[n // 2 :, 1] = True
    rel = np.linspace(1.0, 0.5, n)
    return rel, frontier.jaccard_distances(genres)


def test_jaccard_distances_of_known_sets() -> None:
    sets = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]], dtype=np.bool_)
    dist = frontier.jaccard_distances(sets)
    assert dist[0, 1] == 0.5  # {a, b} vs {a}: 1 shared of 2
    assert dist[0, 2] == 1.0 and dist[1, 1] == 0.0
    assert dist[3, 3] == 1.0  # no categories: nothing shared, as the ILD metric counts it


def test_no_diversity_weight_keeps_the_relevance_order() -> None:
    rel, dist = _two_genre_pool()
    assert frontier.set_search(rel, dist, 0.0).tolist() == list(range(K))


def test_a_large_weight_mixes_both_genres_and_keeps_the_best_item_first() -> None:
    rel, dist = _two_genre_pool()
    chosen = frontier.set_search(rel, dist, 50.0)
    assert len(set(chosen.tolist())) == K
    assert chosen[0] == 0
    assert (np.diff(rel[chosen]) <= 0).all()  # placed by relevance
    genre_b = int((chosen >= 20).sum())
    assert genre_b == K // 2  # an even split maximises the pairs across genres


def test_swaps_never_lose_to_the_greedy_start() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        rel = np.sort(rng.random(60))[::-1]
        dist = frontier.jaccard_distances(rng.random((60, 6)) < 0.3)
        beta = float(rng.uniform(0.1, 3.0))
        greedy = np.array(frontier._greedy(rel, dist, beta / 45, K))
        searched = frontier.set_search(rel, dist, beta)
        assert _objective(rel, dist, beta, searched) >= _objective(rel, dist, beta, greedy) - 1e-12


def test_a_pool_no_longer_than_k_is_returned_by_relevance() -> None:
    rel = np.array([0.2, 0.9, 0.5])
    dist = np.ones((3, 3)) - np.eye(3)
    assert frontier.set_search(rel, dist, 1.0).tolist() == [1, 2, 0]

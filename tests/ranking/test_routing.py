"""Direct routes need evidence: a member takes a slice from the ranker only when its paired
validation gain is larger than min_gain_se standard errors."""

from __future__ import annotations

import numpy as np

from recsemble.ranking.routing import RANKER, SliceBoard, direct_routes, slice_board


def _board(gain: float, se: float, users: int = 50) -> SliceBoard:
    ndcg = {"cold": {RANKER: 0.50, "pop": 0.50 + gain, "ease": 0.40}}
    return SliceBoard(ndcg, {"cold": users}, {"cold": {"pop": se, "ease": 0.01}})


def test_a_gain_within_its_noise_does_not_route() -> None:
    assert direct_routes(_board(0.006, 0.005), 20, 1.96) == {}
    assert direct_routes(_board(0.006, 0.005), 20, 1.0) == {"cold": "pop"}
    assert direct_routes(_board(0.006, 0.005), 20, 0.0) == {"cold": "pop"}


def test_a_clear_gain_routes_and_small_slices_never_do() -> None:
    assert direct_routes(_board(0.05, 0.01), 20, 1.96) == {"cold": "pop"}
    assert direct_routes(_board(0.05, 0.01, users=10), 20, 1.96) == {}
    assert direct_routes(_board(-0.01, 0.001), 20, 0.0) == {}


def test_the_board_measures_the_paired_standard_error() -> None:
    # Four requests of the cold slice, one candidate each; the member finds two targets the
    # ranker misses and misses one the ranker finds.
    rows = np.array([0, 1, 2, 3], dtype=np.int64)
    labels = np.array([1, 1, 1, 1], dtype=np.int8)
    targets = np.array([1, 1, 1, 1], dtype=np.int64)
    ranker = np.array([1.0, np.nan, np.nan, 1.0])  # NaN: left out of the ranker's list
    member_ranks = np.array([[1.0], [1.0], [1.0], [np.nan]], dtype=np.float32)
    board = slice_board(rows, labels, targets, np.zeros(4, np.int64), ranker, member_ranks, ["m"])
    diff = np.array([0.0, 1.0, 1.0, -1.0])
    assert board.ndcg["cold"][RANKER] == 0.5 and board.ndcg["cold"]["m"] == 0.75
    np.testing.assert_allclose(board.gain_se["cold"]["m"], diff.std(ddof=1) / 2)

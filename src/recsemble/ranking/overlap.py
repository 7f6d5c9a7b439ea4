"""How alike ensemble members are and what each one reaches, from their test-time candidates.

Overlap of the members' top-k lists (Jaccard@k, rank-biased overlap), Spearman correlation of
their scores over the candidate union, hits only one member finds and candidate recall.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.stats import rankdata

from recsemble.evaluation.metrics import CatalogStats, compute_metrics
from recsemble.ranking.candidates import Candidates
from recsemble.ranking.selection import RankingPool
from recsemble.types import PAD_IDX

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]


# -- overlap of top-k lists --------------------------------------------------------------------
def _matches(a: I32, b: I32) -> npt.NDArray[np.bool_]:
    """matches[u, i, j]: a[u, i] and b[u, j] are the same item (padding matches nothing)."""
    out: npt.NDArray[np.bool_] = (a[:, :, None] == b[:, None, :]) & (a[:, :, None] != PAD_IDX)
    return out


def jaccard_at_k(a: I32, b: I32) -> F64:
    """Per row |A & B| / |A | B| of two (users, k) item lists; NaN where both are empty."""
    inter = _matches(a, b).sum(axis=(1, 2)).astype(np.float64)
    union = (a != PAD_IDX).sum(axis=1) + (b != PAD_IDX).sum(axis=1) - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), np.nan)


def rank_biased_overlap(a: I32, b: I32, p: float = 0.9) -> F64:
    """Extrapolated rank-biased overlap (Webber, Moffat & Zobel 2010, eq. 32) per row.

    RBO_ext@s = X_s/s * p^s + (1-p)/p * sum_{d=1..s} X_d/d * p^d, with X_d the items shared
    by both depth-d prefixes: 1 for identical lists, 0 for disjoint ones. It assumes that the
    agreement seen at depth s goes on below it (the truncated sum alone would cap identical
    top-10 lists at 1 - p^10 = 0.65). s is the depth both lists reach (a member may propose
    fewer than k items); NaN where either list is empty. Lists hold distinct items, PAD_IDX
    padded at the end.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    n, k = a.shape
    depth = np.maximum.outer(np.arange(k), np.arange(k))  # a match at (i, j) counts from here on
    first_counted = _matches(a, b).reshape(n, k * k) @ np.eye(k)[depth.ravel()]
    overlap = np.cumsum(first_counted, axis=1)  # X_d for d = 1..k
    d = np.arange(1, k + 1, dtype=np.float64)
    agreement = overlap / d
    prefix_sums = np.cumsum(agreement * p**d, axis=1)
    s = np.minimum((a != PAD_IDX).sum(axis=1), (b != PAD_IDX).sum(axis=1))
    at = np.maximum(s - 1, 0)
    rows = np.arange(n)
    value = agreement[rows, at] * p ** d[at] + (1.0 - p) / p * prefix_sums[rows, at]
    return np.where(s > 0, value, np.nan)


def member_top_lists(cands: Candidates, k: int) -> I32:
    """(members, rows, k): each member's own top-k per row, read from its proposal ranks."""
    out = np.full((len(cands.members), cands.n_rows, k), PAD_IDX, dtype=np.int32)
    with np.errstate(invalid="ignore"):
        pair, member = np.nonzero(cands.ranks <= k)
    slot = cands.ranks[pair, member].astype(np.int64) - 1
    out[member, cands.rows[pair], slot] = cands.items[pair]
    return out


def overlap_matrix(lists: I32, measure: Callable[[I32, I32], F64]) -> F64:
    """(members, members) mean over rows of measure(list_a, list_b), NaN rows left out."""
    n = lists.shape[0]
    out = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(i, n):
            values = measure(lists[i], lists[j])
            if np.isfinite(values).any():
                out[i, j] = out[j, i] = float(np.nanmean(values))
    return out


def score_correlation(scores: F32, max_pairs: int = 200_000, seed: int = 0) -> F64:
    """Spearman correlation of member score columns over candidate pairs, NaN excluded
    pairwise; at most `max_pairs` random pairs are read (an estimate with error ~1/sqrt(n))."""
    if scores.shape[0] > max_pairs:
        pick = np.random.default_rng(seed).choice(scores.shape[0], max_pairs, replace=False)
        scores = scores[np.sort(pick)]
    n = scores.shape[1]
    out = np.eye(n)
    finite = np.isfinite(scores)
    for i in range(n):
        for j in range(i + 1, n):
            both = finite[:, i] & finite[:, j]
            out[i, j] = out[j, i] = _spearman(scores[both, i], scores[both, j])
    return out


def _spearman(x: F32, y: F32) -> float:
    if x.size < 3:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


# -- what each member reaches ------------------------------------------------------------------
@dataclass(frozen=True)
class MemberReach:
    """A member on its own: its top-k quality, hits, hits no other member's top-k has, and the
    share of test targets its top-N candidates reach."""

    member: str
    ndcg: float
    hits: int
    unique_hits: int
    candidate_recall: float


def member_reach(
    pool: RankingPool, lists: I32, truth: sp.csr_array, k: int, stats: CatalogStats
) -> tuple[list[MemberReach], float]:
    """Per member reach, and the candidate recall of the whole union."""
    cands = pool.candidates
    n_targets = max(1, int(truth.nnz))
    with np.errstate(invalid="ignore"):
        in_top = cands.ranks <= k
    hit = pool.labels > 0
    finders = in_top[hit].sum(axis=1)
    out = []
    for m, member in enumerate(cands.members):
        metrics = compute_metrics(lists[m], truth, k, stats)
        out.append(
            MemberReach(
                member,
                float(metrics.ndcg.mean()),
                int(in_top[hit, m].sum()),
                int((in_top[hit, m] & (finders == 1)).sum()),
                float(np.isfinite(cands.ranks[hit, m]).sum() / n_targets),
            )
        )
    return out, float(hit.sum() / n_targets)


@dataclass(frozen=True)
class MemberOverlap:
    """How alike the members' test-time proposals are, (members x members) matrices in the
    candidates' member order, and what each member reaches."""

    jaccard: F64
    rbo: F64
    correlation: F64
    reach: list[MemberReach]
    union_recall: float


def measure_overlap(
    pool: RankingPool, truth: sp.csr_array, k: int, rbo_p: float, stats: CatalogStats
) -> MemberOverlap:
    """Every overlap measure of the members' top-k lists and scores over `pool`'s requests."""
    lists = member_top_lists(pool.candidates, k)
    reach, union_recall = member_reach(pool, lists, truth, k, stats)
    return MemberOverlap(
        jaccard=overlap_matrix(lists, jaccard_at_k),
        rbo=overlap_matrix(lists, lambda a, b: rank_biased_overlap(a, b, rbo_p)),
        correlation=score_correlation(pool.candidates.scores),
        reach=reach,
        union_recall=union_recall,
    )

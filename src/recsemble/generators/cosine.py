"""Shrunk cosine over sparse rows, shared by the neighbourhood members (knn.py).

sim = dot / (norm_a * norm_b + shrink) after an optional BM25 / TF-IDF weighting of the rows
(documents) by their columns (terms); plus the float32 sparse / dense helpers both kNNs use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.system import usable_cpus

#: Dense similarity blocks are kept under this many cells (float32: 64 MB).
BLOCK_CELLS = 16_000_000
#: Similarity denominators are floored here (only reachable with shrink = 0).
MIN_DENOMINATOR = 1e-12
Weighting = Literal["none", "bm25", "tfidf"]
F32 = npt.NDArray[np.float32]


class WeightingSettings(Protocol):
    """The weighting keys of a kNN config."""

    @property
    def weighting(self) -> Weighting: ...
    @property
    def bm25_k1(self) -> float: ...
    @property
    def bm25_b(self) -> float: ...


# -- weighting ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TermStats:
    """What BM25 / TF-IDF learn from the fitted documents: idf per term, mean document length."""

    idf: npt.NDArray[np.float64]
    avg_len: float


def term_stats(docs: sp.csr_array, weighting: Weighting) -> TermStats:
    n_docs = max(int(np.count_nonzero(np.diff(docs.indptr))), 1)
    df = np.bincount(docs.indices, minlength=docs.shape[1]).astype(np.float64)
    if weighting == "bm25":
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    elif weighting == "tfidf":
        idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0  # smoothed: never 0 or negative
    else:
        idf = np.ones(docs.shape[1])
    lengths = np.asarray(docs.sum(axis=1)).ravel()
    avg_len = float(lengths[lengths > 0].mean()) if np.any(lengths > 0) else 1.0
    return TermStats(idf, avg_len)


def weigh(docs: sp.csr_array, stats: TermStats, config: WeightingSettings) -> sp.csr_array:
    """docs x terms matrix with its values replaced by BM25 / TF-IDF weights."""
    out = csr32(docs)
    if config.weighting == "none":
        return out
    tf = out.data.astype(np.float64)
    if config.weighting == "bm25":
        lengths = np.asarray(docs.sum(axis=1), dtype=np.float64).ravel()
        norm = 1.0 - config.bm25_b + config.bm25_b * lengths / stats.avg_len
        doc_norm = np.repeat(norm, np.diff(out.indptr))
        tf = tf * (config.bm25_k1 + 1.0) / (tf + config.bm25_k1 * doc_norm)
    else:
        tf = np.sqrt(tf)
    out.data = (tf * stats.idf[out.indices]).astype(np.float32)
    return out


def row_sq_norms(mat: sp.csr_array) -> npt.NDArray[np.float64]:
    rows = np.repeat(np.arange(mat.shape[0]), np.diff(mat.indptr))
    squares = mat.data.astype(np.float64) ** 2
    out: npt.NDArray[np.float64] = np.bincount(rows, squares, minlength=mat.shape[0]).astype(
        np.float64
    )
    return out


# -- dense / sparse helpers -----------------------------------------------------------------
def dense_top_per_row(block: npt.NDArray[np.float32], k: int) -> sp.csr_array:
    """Sparse copy of `block` keeping each row's k largest positive entries."""
    n_rows, n_cols = block.shape
    if k < n_cols:
        cols = np.argpartition(-block, k - 1, axis=1)[:, :k]
    else:
        cols = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    vals = np.take_along_axis(block, cols, axis=1)
    keep = vals > 0
    indptr = np.concatenate(([0], np.cumsum(keep.sum(axis=1)))).astype(np.int64)
    # Row-major order of the mask: rows ascend, each row's entries in argpartition order (as
    # a COO -> CSR conversion would leave them), built directly at a fraction of its cost.
    kept = sp.csr_array((vals[keep], cols[keep], indptr), shape=block.shape)
    return csr32(kept)


def divide_shrunk(
    dots: F32, row_den: npt.NDArray[Any], col_den: npt.NDArray[Any], shrink: float
) -> None:
    """dots[r, c] /= row_den[r] * col_den[c] + shrink, in place (float32: the hot loop)."""
    den = np.multiply.outer(row_den.astype(np.float32), col_den.astype(np.float32))
    den += np.float32(shrink)
    np.maximum(den, np.float32(MIN_DENOMINATOR), out=den)
    dots /= den


def dense_scores(scores: sp.csr_array, out: F32 | None = None) -> F32:
    """Dense copy of sparse scores (into `out` when given); items with no stored score cannot be
    recommended (-inf)."""
    if out is None:
        out = np.empty(scores.shape, dtype=np.float32)
    out.fill(-np.inf)
    rows = np.repeat(np.arange(scores.shape[0]), np.diff(scores.indptr))
    out[rows, scores.indices] = scores.data
    return out


def blocks(n: int, width: int, cells: int = BLOCK_CELLS) -> list[tuple[int, int]]:
    step = max(1, cells // max(1, width))
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def thread_count() -> int:
    return min(4, usable_cpus())


def csr32(mat: Any) -> sp.csr_array:
    """A float32 CSR copy of a sparse matrix (its own data: callers may edit it in place)."""
    out: sp.csr_array = sp.csr_array(mat).astype(np.float32, copy=True)
    return out


def as_csr(mat: Any) -> sp.csr_array:
    out: sp.csr_array = sp.csr_array(mat)  # no copy when it is one already
    return out


def stack_rows(parts: list[sp.csr_array], n_cols: int) -> sp.csr_array:
    if not parts:
        return csr32(sp.csr_array((0, n_cols), dtype=np.float32))
    return csr32(sp.vstack(parts, format="csr"))


def binary(mat: sp.csr_array) -> sp.csr_array:
    out = csr32(mat)
    out.data[:] = 1.0
    return out

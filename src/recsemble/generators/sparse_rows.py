"""Sparse row kernels for the neighbourhood members: a float32 product and a per-row top-k.

Both scale with the stored entries rather than rows x columns: item-kNN's similarity matrix and
its scores are built from them (see knn.py).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp


def _private_matmat() -> Any:
    """scipy's own kernel behind `a @ b`, or None where this scipy lacks it (it is private)."""
    try:
        module = importlib.import_module("scipy.sparse._sparsetools")
    except ImportError:  # pragma: no cover - the public product is used instead
        return None
    return getattr(module, "csr_matmat", None)


#: Called without the symbolic pass that scipy runs first to count the product's entries.
_CSR_MATMAT: Any = _private_matmat()
F32 = npt.NDArray[np.float32]
Positions = npt.NDArray[np.intp]


def sparse_product(a: sp.csr_array, b: sp.csr_array) -> sp.csr_array:
    """a @ b for float32 CSR operands: the same entries, values and order as scipy's product.

    scipy first runs a symbolic pass to count the product's entries (about a third of the time
    here); instead each row is bounded by min(columns, entries of the rows of b it reaches),
    one cheap matrix-vector product. The result's arrays may be views of those larger buffers:
    meant for products that are used and dropped.
    """
    if _CSR_MATMAT is None:
        product: sp.csr_array = sp.csr_array(a @ b)
        return product
    n_rows, n_cols = a.shape[0], b.shape[1]
    reach = sp.csr_array((np.ones(a.nnz), a.indices, a.indptr), shape=a.shape) @ np.diff(b.indptr)
    bound = int(np.minimum(reach, n_cols).sum())
    wide = max(bound, a.nnz, b.nnz, n_rows + 1, n_cols) >= np.iinfo(np.int32).max
    idx = np.int64 if wide else np.int32
    indptr = np.empty(n_rows + 1, dtype=idx)
    indices = np.empty(bound, dtype=idx)
    data = np.empty(bound, dtype=np.float32)
    _CSR_MATMAT(
        n_rows,
        n_cols,
        a.indptr.astype(idx, copy=False),
        a.indices.astype(idx, copy=False),
        a.data.astype(np.float32, copy=False),
        b.indptr.astype(idx, copy=False),
        b.indices.astype(idx, copy=False),
        b.data.astype(np.float32, copy=False),
        indptr,
        indices,
        data,
    )
    nnz = int(indptr[-1])
    return sp.csr_array((data[:nnz], indices[:nnz], indptr), shape=(n_rows, n_cols))


def top_per_row(
    mat: sp.csr_array, k: int, column_ids: npt.NDArray[np.intp] | None = None
) -> sp.csr_array:
    """`mat` keeping each row's k largest positive stored entries; ties go to the lower column
    (the lower of `column_ids[column]` when given: the columns' idx before a reordering).

    Each long row's k-th largest value comes from a partition of its own stored entries;
    entries above it are kept, and of those equal to it the lowest columns fill the row.
    """
    data, indptr = mat.data, mat.indptr
    lengths = np.diff(indptr)
    row_kth, n_above = _kth_largest(data, indptr, k)
    # Candidates: entries at or above their row's k-th value (few of each long row).
    candidates = np.flatnonzero(data >= np.repeat(row_kth, lengths))
    rows = _row_of(indptr, candidates)
    threshold = row_kth[rows]
    keep = data[candidates] > threshold
    tied = np.flatnonzero(~keep & (threshold > 0))  # a k-th value of 0 keeps every positive
    if tied.size:
        columns: npt.NDArray[Any] = mat.indices[candidates[tied]]
        if column_ids is not None:
            columns = column_ids[columns]
        keep[_fill_with_ties(tied, rows[tied], columns, k - n_above)] = True
    kept = candidates[keep]
    counts = np.bincount(rows[keep], minlength=lengths.size)
    new_indptr = np.concatenate(([0], np.cumsum(counts))).astype(indptr.dtype)
    return sp.csr_array((data[kept], mat.indices[kept], new_indptr), shape=mat.shape)


def _kth_largest(data: F32, indptr: npt.NDArray[Any], k: int) -> tuple[F32, npt.NDArray[np.intp]]:
    """Per row, its k-th largest stored value (0 for rows with k or fewer: keep every positive)
    and how many of its entries are larger."""
    lengths = np.diff(indptr)
    kth = np.zeros(lengths.size, dtype=np.float32)
    # One partition per row, in place on a copy: cheaper than padding rows of unequal length
    # into dense blocks. Each long row then ends with its k largest, the k-th first.
    scratch = data.copy()
    long_rows = np.flatnonzero(lengths > k)
    ends = indptr[long_rows + 1]
    for start, end in zip(indptr[long_rows].tolist(), ends.tolist(), strict=True):
        scratch[start:end].partition(end - start - k)
    kth[long_rows] = scratch[ends - k]
    top = scratch[(ends - k)[:, None] + np.arange(1, k)]
    n_above = np.zeros(lengths.size, dtype=np.intp)
    n_above[long_rows] = np.count_nonzero(top > kth[long_rows, None], axis=1)
    return np.maximum(kth, np.float32(0)), n_above


def _row_of(indptr: npt.NDArray[Any], positions: Positions) -> Positions:
    return np.searchsorted(indptr, positions, side="right") - 1


def _fill_with_ties(
    tied: Positions, rows: Positions, columns: npt.NDArray[Any], room: Positions
) -> Positions:
    """Of the entries equal to their row's k-th value (`tied`, in row order), the lowest
    columns that fill the room left in their row."""
    n_tied = np.bincount(rows, minlength=room.size)
    # Columns are unsorted within rows: sort (row, column) only where some ties stay out.
    partial = room[rows] < n_tied[rows]
    pos, pos_rows, pos_columns = tied[partial], rows[partial], columns[partial]
    width = int(pos_columns.max()) + 1 if pos.size else 1
    order = np.argsort(pos_rows.astype(np.int64) * width + pos_columns)  # by (row, column)
    pos, pos_rows = pos[order], pos_rows[order]
    rank = np.arange(pos.size) - np.searchsorted(pos_rows, pos_rows)
    return np.concatenate([tied[~partial], pos[rank < room[pos_rows]]])

"""The sparse kernels behind item-kNN against scipy's product and a plain per-row sort."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsemble.generators import sparse_rows
from recsemble.generators.sparse_rows import sparse_product, top_per_row


def _random_csr(rng: np.random.Generator, shape: tuple[int, int], density: float) -> sp.csr_array:
    mat = sp.random_array(shape, density=density, format="csr", rng=rng, dtype=np.float32)
    mat.data = rng.integers(1, 4, mat.nnz).astype(np.float32)  # few values: equal sums happen
    return sp.csr_array(mat)


@pytest.mark.parametrize("private", [True, False])
@pytest.mark.parametrize(("shape", "density"), [((30, 40), 0.1), ((50, 20), 0.5), ((5, 8), 0.0)])
def test_sparse_product_is_scipys_product(
    monkeypatch: pytest.MonkeyPatch, private: bool, shape: tuple[int, int], density: float
) -> None:
    if not private:  # the fallback where scipy's kernel is not available
        monkeypatch.setattr(sparse_rows, "_CSR_MATMAT", None)
    rng = np.random.default_rng(7)
    a = _random_csr(rng, shape, density)
    b = _random_csr(rng, (shape[1], 25), 0.3)
    a.data[a.indptr[0] : a.indptr[1]] = 0  # an empty row
    a.eliminate_zeros()
    got, want = sparse_product(a, b), sp.csr_array(a @ b)
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)  # same (unsorted) order
    np.testing.assert_array_equal(got.data, want.data)
    assert got.shape == want.shape and got.dtype == np.float32


def _top_by_sorting(dense: np.ndarray, stored: np.ndarray, k: int) -> np.ndarray:
    """Each row's k largest positive stored values, ties to the lower column, as a dense array."""
    out = np.zeros_like(dense)
    for r in range(dense.shape[0]):
        cols = np.flatnonzero(stored[r] & (dense[r] > 0))
        best = cols[np.lexsort((cols, -dense[r, cols]))][:k]
        out[r, best] = dense[r, best]
    return out


@pytest.mark.parametrize("k", [1, 3, 6, 50])
def test_top_per_row_keeps_the_k_largest_ties_to_the_lower_column(k: int) -> None:
    rng = np.random.default_rng(k)
    mat = _random_csr(rng, (40, 60), 0.3)
    mat.data[rng.random(mat.nnz) < 0.1] = 0.0  # stored zeros are never kept
    mat.data[rng.random(mat.nnz) < 0.05] = -1.0  # nor negative entries
    # Shuffle each row's entries: product rows come with their columns unsorted.
    for r in range(mat.shape[0]):
        lo, hi = mat.indptr[r], mat.indptr[r + 1]
        perm = lo + rng.permutation(hi - lo)
        mat.indices[lo:hi], mat.data[lo:hi] = mat.indices[perm], mat.data[perm]
    stored = sp.csr_array((np.ones(mat.nnz, bool), mat.indices, mat.indptr), mat.shape).toarray()
    got = top_per_row(mat, k)
    np.testing.assert_array_equal(got.toarray(), _top_by_sorting(mat.toarray(), stored, k))
    assert got.dtype == np.float32

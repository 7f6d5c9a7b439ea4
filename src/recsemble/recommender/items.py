"""The live catalog: what serving knows about items now, beyond what the model was fitted with.

The model's items keep their idx; their titles, categories, availability and the attribute
table the re-ranking stages read (price, expiry, ...) follow upserts, and a removed item is
blocked everywhere at once (one shared mask every answer is filtered with). Items the model
never saw (upserted after training) live beside them by external id: they can be found by
content similarity to their title, text and categories, and be offered in exploration slots,
until a retrain gives them an idx.

Readers never lock: every structure a request reads is replaced whole (copy on write) under
the writers' lock, so a reader sees the old or the new state, never half of an update.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from recsemble.data.idmap import IdMap
from recsemble.store.base import Record

Bool = npt.NDArray[np.bool_]
I32 = npt.NDArray[np.int32]
F32 = npt.NDArray[np.float32]
log = logging.getLogger(__name__)


def item_document(title: Any, text: Any, categories: Iterable[str]) -> str:
    """One item's text for TF-IDF: title, text and its categories as single terms."""
    cats = " ".join("cat_" + re.sub(r"\W+", "_", str(c).lower()) for c in categories)
    parts = [str(part) for part in (title, text, cats) if part]
    return ". ".join(parts)


def flat_record(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """An item record's standard fields and its free `attributes` as columns of one row."""
    extra = attributes.get("attributes")
    flat = {k: v for k, v in attributes.items() if k != "attributes"}
    return {**(extra if isinstance(extra, Mapping) else {}), **flat}


def with_rows(frame: pl.DataFrame, rows: Mapping[int, Mapping[str, Any]]) -> pl.DataFrame:
    """A copy of the attribute table with the rows at these idx replaced whole (a PUT replaces
    the record: a column it lacks is null there). A value that does not fit its column's type
    is null (logged), so the columns keep their types and the stages reading them still fit;
    an attribute no item had before becomes a new column."""
    if not rows:
        return frame
    replaced = typed_rows(list(rows.values()), frame.schema)
    added = [c for c in replaced.columns if c not in frame.columns]
    frame = frame.with_columns(pl.lit(None, dtype=replaced[c].dtype).alias(c) for c in added)
    position = pl.Series("__row", list(rows), dtype=pl.UInt32)
    kept = frame.with_row_index("__row").filter(~pl.col("__row").is_in(position.implode()))
    merged = pl.concat([kept, replaced.insert_column(0, position)]).sort("__row")
    return merged.drop("__row")


def typed_rows(
    rows: Sequence[Mapping[str, Any]], schema: Mapping[str, pl.DataType]
) -> pl.DataFrame:
    """Records as a frame with the table's columns in the table's types (null where a record
    lacks the column or its value does not fit), then the attributes the table lacks."""
    update = pl.DataFrame(list(rows), infer_schema_length=None, strict=False)
    known = [_fitted(update, name, dtype, len(rows)) for name, dtype in schema.items()]
    return pl.DataFrame([*known, *(update[c] for c in update.columns if c not in schema)])


def _fitted(update: pl.DataFrame, name: str, dtype: pl.DataType, n: int) -> pl.Series:
    """The update's column `name` in the table's type (null where a value does not fit)."""
    new = update[name] if name in update.columns else pl.Series(name, [None] * n)
    try:
        cast = _temporal(new, dtype) if dtype.is_temporal() else new.cast(dtype, strict=False)
    except (pl.exceptions.PolarsError, TypeError, ValueError):
        cast = pl.Series(name, [None] * n, dtype=dtype)
    if cast.dtype != dtype:  # a lenient cast that kept the type (a struct): nothing fits
        cast = pl.Series(name, [None] * n, dtype=dtype)
    if cast.null_count() > new.null_count():
        wrong = new.filter(cast.is_null() & new.is_not_null()).to_list()[:3]
        log.warning("item attribute %r: %s do not fit its type %s: null", name, wrong, dtype)
    return cast.alias(name)


def _temporal(values: pl.Series, dtype: pl.DataType) -> pl.Series:
    """Values for a date or datetime column: numbers are epoch seconds (the API's times; a
    plain cast would read them as microseconds, 1970), text is ISO-8601."""
    text = values.dtype == pl.String  # text when the batch mixed numbers and text
    if not (text or values.dtype.is_numeric()):
        return pl.Series(values.name, [None] * len(values), dtype=dtype)
    seconds = values.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
    found = pl.from_epoch(seconds, time_unit="s")
    rest = values.zip_with(seconds.is_null(), pl.Series([None] * len(values), dtype=values.dtype))
    if text and rest.null_count() < len(rest):
        # The format is inferred from the first value: one it cannot read fails them all.
        with contextlib.suppress(pl.exceptions.ComputeError):
            found = found.fill_null(rest.str.to_datetime(strict=False, time_unit="us"))
    return found.cast(dtype, strict=False)


def _categories(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(str(c) for c in value)


class ContentIndex:
    """TF-IDF vectors of the model's items; new items are projected on the same vocabulary."""

    def __init__(self, documents: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer: Any = TfidfVectorizer(sublinear_tf=True, dtype=np.float32)
        try:
            matrix = self.vectorizer.fit_transform(list(documents))
        except ValueError:  # no document has a single term: nothing to compare by
            self.vectorizer = None
            matrix = sp.csr_array((len(documents), 0), dtype=np.float32)
        self.vectors = sp.csr_array(matrix, dtype=np.float32)  # rows L2-normalised
        self.transposed = sp.csr_array(self.vectors.T)

    def vector(self, document: str) -> sp.csr_array:
        """A (1, terms) unit row for a new document (zero when it shares no term)."""
        if self.vectorizer is None:
            return sp.csr_array(np.zeros((1, 0), dtype=np.float32))
        row: sp.csr_array = sp.csr_array(self.vectorizer.transform([document]), dtype=np.float32)
        return row

    def similarities(self, row: sp.csr_array) -> F32:
        """Cosine of `row` with every model item (dense, n_items)."""
        if row.shape[1] == 0:
            return np.zeros(self.vectors.shape[0], dtype=np.float32)
        return np.asarray((row @ self.transposed).toarray(), dtype=np.float32).ravel()


@dataclass(frozen=True)
class NewItem:
    """An item upserted after training: not in the model, known by its attributes only."""

    item_id: str
    title: str | None
    categories: frozenset[str]
    vector: sp.csr_array  # content vector on the model items' vocabulary
    available: bool = True
    attributes: Mapping[str, Any] = field(default_factory=dict)  # the record as one flat row


class ItemState:
    """Titles, categories, blocked (removed or unavailable) items and new items, live."""

    def __init__(self, ids: IdMap, attributes: pl.DataFrame) -> None:
        self.ids = ids
        self.n_model = len(ids)
        self.attributes = attributes  # aligned with idx, ITEM_SCHEMA columns at least
        self.titles: list[str | None] = [
            None if t is None else str(t) for t in attributes["title"].to_list()
        ]
        self.item_categories: list[frozenset[str]] = [
            _categories(c) for c in attributes["categories"].to_list()
        ]
        available = attributes["available"].fill_null(True).to_numpy().astype(np.bool_)
        self.removed: Bool = np.zeros(self.n_model, dtype=np.bool_)
        self.unavailable: Bool = ~available
        self.blocked: Bool = self.unavailable.copy()
        self.changed: Bool = np.zeros(self.n_model, dtype=np.bool_)  # upserted since the load
        self.category_items: dict[str, Bool] = self._category_masks()
        self.new_items: dict[str, NewItem] = {}
        self._content: ContentIndex | None = None
        self._new_cache: tuple[dict[str, NewItem], Any] | None = None
        self._lock = threading.Lock()

    def _category_masks(self) -> dict[str, Bool]:
        masks: dict[str, Bool] = {}
        for idx, cats in enumerate(self.item_categories):
            for cat in cats:
                masks.setdefault(cat, np.zeros(self.n_model, dtype=np.bool_))[idx] = True
        return masks

    # -- reading ---------------------------------------------------------------------------
    def idx(self, item_id: str) -> int | None:
        """The model idx of an item id (None: not a model item)."""
        try:
            return self.ids.idx_of(str(item_id))
        except KeyError:
            return None

    def category_mask(self, categories: Sequence[str]) -> Bool:
        """Model items having at least one of the categories."""
        mask = np.zeros(self.n_model, dtype=np.bool_)
        for cat in categories:
            found = self.category_items.get(cat)
            if found is not None:
                mask |= found
        return mask

    def title(self, item_id: str) -> str | None:
        idx = self.idx(item_id)
        if idx is not None:
            return self.titles[idx]
        new = self.new_items.get(item_id)
        return None if new is None else new.title

    def to_idx(self, item_ids: Iterable[str]) -> I32:
        """Model idx of the ids that are model items (others dropped)."""
        found = [self.idx(i) for i in item_ids]
        return np.array([i for i in found if i is not None], dtype=np.int32)

    def new_item_matrix(self) -> tuple[list[NewItem], sp.csr_array] | None:
        """The new items that may be shown and their stacked content vectors (None: none)."""
        items = self.new_items
        cached = self._new_cache
        if cached is not None and cached[0] is items:
            hit: tuple[list[NewItem], sp.csr_array] | None = cached[1]
            return hit
        shown = [item for item in items.values() if item.available and item.vector.shape[1]]
        found = (shown, sp.csr_array(sp.vstack([i.vector for i in shown]))) if shown else None
        self._new_cache = (items, found)
        return found

    def content(self) -> ContentIndex:
        """The content index (built on first use: a TF-IDF fit over the catalog)."""
        if self._content is None:
            with self._lock:
                if self._content is None:
                    attrs = self.attributes
                    docs = [
                        item_document(title, text, cats)
                        for title, text, cats in zip(
                            self.titles,
                            attrs["text"].to_list(),
                            self.item_categories,
                            strict=True,
                        )
                    ]
                    self._content = ContentIndex(docs)
        return self._content

    # -- writing ---------------------------------------------------------------------------
    def upsert(self, records: Sequence[Record]) -> None:
        """New attributes for model items; items the model never saw become new items."""
        content = self.content() if any(self.idx(r.id) is None for r in records) else None
        with self._lock:
            removed, unavailable = self.removed.copy(), self.unavailable.copy()
            masks = dict(self.category_items)  # copied masks are edited, then published
            rows: dict[int, dict[str, Any]] = {}  # the attribute table's rows to replace
            for record in records:
                if record.deleted:
                    self._remove_locked(record.id, removed)
                    continue
                attrs: Mapping[str, Any] = record.attributes
                idx = self.idx(record.id)
                if idx is None:
                    assert content is not None
                    self.new_items = {**self.new_items, record.id: _new_item(record, content)}
                    continue
                removed[idx] = False  # an upsert brings a removed item back
                rows[idx] = flat_record(attrs)
                rows[idx]["categories"] = sorted(_categories(attrs.get("categories")))
                if "title" in attrs:
                    self.titles[idx] = None if attrs["title"] is None else str(attrs["title"])
                if "available" in attrs:
                    unavailable[idx] = attrs["available"] is False
                if "categories" in attrs:
                    self._recategorise(idx, _categories(attrs["categories"]), masks)
            self.category_items = masks
            self.attributes = with_rows(self.attributes, rows)  # what re-ranking stages read
            changed = self.changed.copy()
            changed[list(rows)] = True
            self.changed = changed
            self._publish(removed, unavailable)

    def _recategorise(self, idx: int, categories: frozenset[str], masks: dict[str, Bool]) -> None:
        """Move one item between category masks (copies of the ones it leaves or joins)."""
        before = self.item_categories[idx]
        for cat, member in [(c, False) for c in before - categories] + [
            (c, True) for c in categories - before
        ]:
            mask = masks.get(cat, np.zeros(self.n_model, dtype=np.bool_)).copy()
            mask[idx] = member
            masks[cat] = mask
        self.item_categories[idx] = categories

    def remove(self, item_id: str) -> bool:
        """Block the item everywhere; False when it is not known at all."""
        with self._lock:
            removed = self.removed.copy()
            found = self._remove_locked(item_id, removed)
            self._publish(removed, self.unavailable)
        return found

    def _remove_locked(self, item_id: str, removed: Bool) -> bool:
        idx = self.idx(item_id)
        if idx is not None:
            removed[idx] = True
            return True
        if item_id in self.new_items:
            self.new_items = {k: v for k, v in self.new_items.items() if k != item_id}
            return True
        return False

    def _publish(self, removed: Bool, unavailable: Bool) -> None:
        self.removed, self.unavailable = removed, unavailable
        self.blocked = removed | unavailable

    def counts(self) -> dict[str, int]:
        return {
            "model_items": self.n_model,
            "removed_items": int(self.removed.sum()),
            "unavailable_items": int(self.unavailable.sum()),
            "new_items": len(self.new_items),
        }


def _new_item(record: Record, content: ContentIndex) -> NewItem:
    attrs = record.attributes
    title = attrs.get("title")
    cats = _categories(attrs.get("categories"))
    document = item_document(title, attrs.get("text"), sorted(cats))
    return NewItem(
        item_id=record.id,
        title=None if title is None else str(title),
        categories=cats,
        vector=content.vector(document),
        available=attrs.get("available") is not False,
        attributes={**flat_record(attrs), "categories": sorted(cats)},
    )


def item_attributes(ids: IdMap, table: pl.DataFrame | None, titles: Any) -> pl.DataFrame:
    """The item attribute table aligned with the model's idx, with every standard column."""
    from recsemble.data.dataset import ITEM_SCHEMA

    if table is None:  # a folder saved before the attribute tables: titles at most
        names = list(titles) if titles is not None else [None] * len(ids)
        frame = pl.DataFrame({"title": pl.Series(names, dtype=pl.String)})
    else:
        frame = table.drop(table.columns[0])
    for col, dtype in ITEM_SCHEMA.items():
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(col))
    return frame.with_columns(pl.col("available").fill_null(True))

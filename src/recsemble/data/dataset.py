"""Dataset: an immutable snapshot of interactions, id maps and attributes.

Orientation rule: every matrix a Dataset hands out is users x items and says so in its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from recsemble.data.columns import (
    DEFAULT_EVENT,
    as_frame,
    check_id_text,
    check_no_nulls,
    epoch_seconds,
    events_and_weights,
    explicit_values,
    require_column,
)
from recsemble.data.idmap import IdMap
from recsemble.data.tables import split_categories
from recsemble.errors import DataError
from recsemble.types import idx_array

__all__ = ["DEFAULT_EVENT", "INTERACTION_SCHEMA", "ITEM_SCHEMA", "Dataset", "MatrixValues"]

#: Columns of Dataset.interactions, in order, with their dtypes.
INTERACTION_SCHEMA: dict[str, pl.DataType] = {
    "user_idx": pl.Int32(),
    "item_idx": pl.Int32(),
    "timestamp": pl.Int64(),  # seconds since the Unix epoch, UTC
    "event": pl.String(),
    "weight": pl.Float32(),
    "value": pl.Float32(),  # explicit value such as a rating; null when absent
}

#: Item attribute columns every Dataset has (null where unknown), aligned with the item IdMap.
ITEM_SCHEMA: dict[str, pl.DataType] = {
    "title": pl.String(),
    "text": pl.String(),
    "categories": pl.List(pl.String()),
    "created_at": pl.Int64(),
    "available": pl.Boolean(),
}

MatrixValues = Literal["weight", "binary", "count"]


def _id_map(ids: pl.Series, table: pl.DataFrame | None, kind: str) -> IdMap:
    """Ids seen in the interactions plus those only in the users / items table."""
    if table is None:
        return IdMap.from_unsorted(ids)
    return IdMap.from_unsorted(pl.concat([ids, _as_id_series(table, f"{kind}_id", kind)]))


def _attribute_table(frame: Any, key: str, what: str) -> pl.DataFrame | None:
    """The items / users frame as polars, with its id column present and never null."""
    if frame is None:
        return None
    table = as_frame(frame, what)
    require_column(table, key, what)
    check_no_nulls(table, [key], what)
    return table


def _as_id_series(frame: pl.DataFrame, col: str, what: str) -> pl.Series:
    series = frame[col]
    if series.dtype.is_float():
        raise DataError(f"{what} ids must be strings or integers, not {series.dtype}", column=col)
    return check_id_text(series.cast(pl.String), col, what)


class Dataset:
    """Users, items and their interactions, frozen.

    Build one with `Dataset.from_frames` (validates everything); derive new snapshots with
    `with_interactions` / `restrict`. Nothing mutates a Dataset after construction.
    """

    def __init__(
        self,
        *,
        users: IdMap,
        items: IdMap,
        interactions: pl.DataFrame,
        item_attributes: pl.DataFrame,
        user_attributes: pl.DataFrame,
        event_weights: Mapping[str, float],
        name: str = "",
    ) -> None:
        # Internal constructor: callers outside this module use from_frames.
        if item_attributes.height != len(items) or user_attributes.height != len(users):
            raise ValueError("attribute tables must align with the id maps")
        self.users = users
        self.items = items
        self.interactions = interactions.select(
            [pl.col(c).cast(t) for c, t in INTERACTION_SCHEMA.items()]
        )
        self.item_attributes = item_attributes
        self.user_attributes = user_attributes
        self.event_weights: Mapping[str, float] = MappingProxyType(dict(event_weights))
        self.name = name

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frames(
        cls,
        interactions: pl.DataFrame,
        items: pl.DataFrame | None = None,
        users: pl.DataFrame | None = None,
        *,
        event_weights: Mapping[str, float] | None = None,
        name: str = "",
    ) -> Dataset:
        """Validate and build a Dataset from polars frames (pandas frames are converted).

        interactions: columns user_id, item_id, timestamp (epoch seconds, or ms/us/ns told apart
            by magnitude as in data files, or datetimes), and optionally event, value, weight.
        items: item_id plus any of title, text, categories (list of str), created_at, available,
            and extra attribute columns. users: user_id plus attribute columns.
        event_weights: weight of each event type (e.g. view=1, cart=3, purchase=5); an event type
            in the data but not in the map is an error. A `weight` column overrides it.
        """
        interactions = as_frame(interactions, "interactions")
        for col in ("user_id", "item_id", "timestamp"):
            require_column(interactions, col, "interactions")
        check_no_nulls(interactions, ["user_id", "item_id", "timestamp"], "interactions")
        user_ids = _as_id_series(interactions, "user_id", "user")
        item_ids = _as_id_series(interactions, "item_id", "item")
        events, weights = events_and_weights(interactions, event_weights)
        items = _attribute_table(items, "item_id", "items")
        users = _attribute_table(users, "user_id", "users")
        item_map = _id_map(item_ids, items, "item")
        user_map = _id_map(user_ids, users, "user")
        frame = pl.DataFrame(
            {
                "user_idx": user_map.to_idx(user_ids),
                "item_idx": item_map.to_idx(item_ids),
                "timestamp": epoch_seconds(interactions["timestamp"], "timestamp"),
                "event": events,
                "weight": weights,
                "value": explicit_values(interactions),
            }
        )
        return cls(
            users=user_map,
            items=item_map,
            interactions=frame,
            item_attributes=_align_items(item_map, items),
            user_attributes=_align_attributes(user_map, users, "user_id"),
            event_weights=dict(event_weights or {}),
            name=name,
        )

    def with_interactions(self, interactions: pl.DataFrame) -> Dataset:
        """Same users, items and attributes; other interactions (already in idx form)."""
        missing = [c for c in INTERACTION_SCHEMA if c not in interactions.columns]
        if missing:
            raise DataError(
                f"interactions in idx form need the columns {missing} "
                "(external ids are read by Dataset.from_frames)"
            )
        return Dataset(
            users=self.users,
            items=self.items,
            interactions=interactions,
            item_attributes=self.item_attributes,
            user_attributes=self.user_attributes,
            event_weights=self.event_weights,
            name=self.name,
        )

    def restrict(self, user_idx: npt.ArrayLike, item_idx: npt.ArrayLike) -> Dataset:
        """A snapshot over the given users and items only, renumbered in the given order.

        Interactions touching any other user or item are dropped.
        """
        u = idx_array(user_idx, "user_idx", self.n_users)  # -1 would be the last user
        i = idx_array(item_idx, "item_idx", self.n_items)
        for name, idx in (("user_idx", u), ("item_idx", i)):
            if np.unique(idx).size != idx.size:
                raise ValueError(f"{name} must not repeat an idx")
        new_u = np.full(self.n_users, -1, dtype=np.int32)
        new_u[u] = np.arange(u.size, dtype=np.int32)
        new_i = np.full(self.n_items, -1, dtype=np.int32)
        new_i[i] = np.arange(i.size, dtype=np.int32)
        inter = self.interactions
        mapped_u = new_u[inter["user_idx"].to_numpy()]
        mapped_i = new_i[inter["item_idx"].to_numpy()]
        keep = (mapped_u >= 0) & (mapped_i >= 0)
        frame = inter.with_columns(
            pl.Series("user_idx", mapped_u), pl.Series("item_idx", mapped_i)
        ).filter(pl.Series(keep))
        return Dataset(
            users=self.users.subset(u),
            items=self.items.subset(i),
            interactions=frame,
            item_attributes=self.item_attributes[i.tolist()],
            user_attributes=self.user_attributes[u.tolist()],
            event_weights=self.event_weights,
            name=self.name,
        )

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return self.interactions.height

    def column(self, name: str) -> npt.NDArray[Any]:
        """One interaction column as a read-only numpy array."""
        arr = self.interactions[name].to_numpy()
        arr.flags.writeable = False
        return arr

    def user_item_matrix(self, values: MatrixValues = "weight") -> sp.csr_array:
        """users x items CSR. values: summed event weights, 1 per pair, or event counts."""
        if values not in ("weight", "binary", "count"):  # anything else gave the counts
            raise ValueError(f"values must be 'weight', 'binary' or 'count', not {values!r}")
        return self._matrix_cache(values)

    def _matrix_cache(self, values: MatrixValues) -> sp.csr_array:
        cache = self.__dict__.setdefault("_matrices", {})
        if values not in cache:
            rows = self.column("user_idx")
            cols = self.column("item_idx")
            data = (
                self.column("weight").astype(np.float32)
                if values == "weight"
                else np.ones(rows.size, dtype=np.float32)
            )
            shape = (self.n_users, self.n_items)
            mat = sp.coo_array((data, (rows, cols)), shape=shape).tocsr()
            mat.sum_duplicates()
            if values == "binary":
                mat.data[:] = 1.0
            mat.data.flags.writeable = False
            cache[values] = mat
        return cache[values]  # type: ignore[no-any-return]

    @cached_property
    def item_popularity(self) -> npt.NDArray[np.int64]:
        """Distinct users per item idx."""
        pairs = self.user_item_matrix("binary")
        return np.bincount(pairs.indices, minlength=self.n_items).astype(np.int64)

    @cached_property
    def user_history_lengths(self) -> npt.NDArray[np.int64]:
        """Distinct items per user idx."""
        return np.diff(self.user_item_matrix("binary").indptr).astype(np.int64)

    def item_categories(self) -> tuple[sp.csr_array, IdMap]:
        """Binary items x categories matrix and the category IdMap (empty when unknown)."""
        exploded = (
            self.item_attributes.select(pl.col("categories"))
            .with_row_index("item_idx")
            .explode("categories")
            .drop_nulls()
        )
        cats = IdMap.from_unsorted(exploded["categories"])
        rows = exploded["item_idx"].to_numpy()
        cols = cats.to_idx(exploded["categories"]) if len(cats) else np.zeros(0, np.int32)
        mat = sp.csr_array(
            (np.ones(rows.size, np.float32), (rows, cols)), shape=(self.n_items, len(cats))
        )
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return mat, cats

    def external_interactions(self) -> pl.DataFrame:
        """Interactions with external ids (user_id, item_id, timestamp, event, weight, value)."""
        inter = self.interactions
        return pl.DataFrame(
            {
                "user_id": pl.Series(
                    self.users.to_ids(inter["user_idx"].to_numpy()), dtype=pl.String
                ),
                "item_id": pl.Series(
                    self.items.to_ids(inter["item_idx"].to_numpy()), dtype=pl.String
                ),
            }
        ).hstack(inter.select("timestamp", "event", "weight", "value"))

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name or 'unnamed'}: {self.n_users} users, {self.n_items} items, "
            f"{self.n_interactions} interactions)"
        )


def _align_attributes(idmap: IdMap, frame: pl.DataFrame | None, key: str) -> pl.DataFrame:
    """Attribute rows reordered to idx order (null rows for ids the frame lacks), key dropped."""
    base = pl.DataFrame({key: idmap.as_series()})
    if frame is None:
        return base.drop(key)
    ids = frame[key].cast(pl.String)
    dupes = ids.is_duplicated()
    if dupes.any():
        row = int(dupes.arg_true()[0])
        raise DataError(f"duplicate id {ids[row]!r} in row {row}", column=key)
    frame = frame.with_columns(ids.alias(key))
    return base.join(frame, on=key, how="left", maintain_order="left").drop(key)


def _align_items(items: IdMap, frame: pl.DataFrame | None) -> pl.DataFrame:
    aligned = _align_attributes(items, frame, "item_id")
    for col, dtype in ITEM_SCHEMA.items():
        if col not in aligned.columns:
            aligned = aligned.with_columns(pl.lit(None, dtype=dtype).alias(col))
        else:
            moment = aligned[col].dtype in (pl.Datetime, pl.Date) or aligned[col].dtype.is_integer()
            if col == "created_at" and moment:
                # epoch seconds like the interactions' timestamps (ms/us/ns and datetimes too)
                aligned = aligned.with_columns(epoch_seconds(aligned[col], col))
            if col == "categories" and aligned[col].dtype == pl.String:  # as files are read
                aligned = aligned.with_columns(split_categories(aligned[col]))
            try:
                aligned = aligned.with_columns(pl.col(col).cast(dtype))
            except pl.exceptions.PolarsError as exc:
                raise DataError(
                    f"item attribute cannot be read as {dtype}: {exc}", column=col
                ) from exc
    # Items are available unless said otherwise.
    aligned = aligned.with_columns(pl.col("available").fill_null(True))
    extra = [c for c in aligned.columns if c not in ITEM_SCHEMA]
    return aligned.select([*ITEM_SCHEMA, *extra])

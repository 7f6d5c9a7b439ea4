"""Ids at the boundary of a saved model: external user / item ids in, external item ids out.

A saved model answers for internal idx; its folder also holds the catalog (the user and item
IdMaps and the item titles) as `ids.json`, a plain JSON file (no pickle), so that a loaded model
can be asked for the ids the data came with. Users the model never saw get the model's cold
answer (the same as for an empty history), never an exception.

The item and user attribute tables (categories, texts, availability, user segments...) go
beside it as `items.parquet` and `users.parquet`, one row per idx with the external id first:
serving needs them for re-ranking stages, category filters and content similarity. Folders
saved before they existed still load (the tables are then None).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl

from recsemble.data.dataset import Dataset
from recsemble.data.idmap import IdMap
from recsemble.errors import DataError
from recsemble.types import PAD_IDX, TopK

CATALOG_FILE = "ids.json"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
CATALOG_FORMAT = "recsemble.ids"
CATALOG_VERSION = 1
#: Idx given to users the model never saw: every member treats it as "no history".
UNKNOWN_USER_IDX = -1


class Recommender(Protocol):
    """What recommend_ids needs of a model: a fitted generator or ensemble."""

    def recommend(self, users: npt.ArrayLike, k: int, *, exclude_seen: bool = True) -> TopK: ...


@dataclass(frozen=True)
class Catalog:
    """The external ids a model was fitted with, and item titles where the data had them.

    item_attributes / user_attributes: the data's attribute tables aligned with the idx order,
    the external id as first column ("item_id" / "user_id"); None when not saved.
    event_weights: the weight of each event type the model was trained with (may be empty).
    """

    users: IdMap
    items: IdMap
    titles: tuple[str | None, ...] | None = None  # aligned with items; None: no titles at all
    item_attributes: pl.DataFrame | None = field(default=None, compare=False, repr=False)
    user_attributes: pl.DataFrame | None = field(default=None, compare=False, repr=False)
    event_weights: Mapping[str, float] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> Catalog:
        titles = dataset.item_attributes["title"].to_list()
        has_titles = any(title is not None for title in titles)
        return cls(
            dataset.users,
            dataset.items,
            tuple(titles) if has_titles else None,
            _with_ids("item_id", dataset.items, dataset.item_attributes),
            _with_ids("user_id", dataset.users, dataset.user_attributes),
            dict(dataset.event_weights),
        )

    def write(self, folder: Path, *, n_users: int, n_items: int) -> Path:
        """Write `folder/ids.json` (and the attribute tables when present); returns its path.

        n_users, n_items: the model's; a catalog of other data is refused (it would not load)."""
        _check_sizes(self.users, self.items, n_users, n_items, None)
        path = folder / CATALOG_FILE
        payload = {
            "format": CATALOG_FORMAT,
            "version": CATALOG_VERSION,
            "users": [str(x) for x in self.users.ids],
            "items": [str(x) for x in self.items.ids],
            "titles": list(self.titles) if self.titles is not None else None,
            "event_weights": dict(self.event_weights),
        }
        path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
        for name, table in ((ITEMS_FILE, self.item_attributes), (USERS_FILE, self.user_attributes)):
            if table is not None:
                table.write_parquet(folder / name)
        return path

    @classmethod
    def read(cls, folder: Path, *, n_users: int, n_items: int) -> Catalog:
        """Read `folder/ids.json`, checking it covers the model's n_users and n_items."""
        path = folder / CATALOG_FILE
        payload = read_json_object(path)
        if payload.get("format") != CATALOG_FORMAT or payload.get("version") != CATALOG_VERSION:
            raise DataError(
                f"unsupported format {payload.get('format')!r} v{payload.get('version')}",
                source=str(path),
            )
        try:
            users, items = IdMap(payload["users"]), IdMap(payload["items"])
            titles = payload["titles"]
            weights = {str(k): float(v) for k, v in (payload.get("event_weights") or {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"malformed id lists ({exc})", source=str(path)) from None
        _check_sizes(users, items, n_users, n_items, str(path))
        if titles is not None and len(titles) != n_items:
            raise DataError(f"{len(titles)} titles for {n_items} items", source=str(path))
        return cls(
            users,
            items,
            tuple(titles) if titles is not None else None,
            _read_attributes(folder / ITEMS_FILE, "item_id", items),
            _read_attributes(folder / USERS_FILE, "user_id", users),
            weights,
        )


def _with_ids(key: str, ids: IdMap, attributes: pl.DataFrame) -> pl.DataFrame:
    """A new table: the external ids as first column, then the attributes (not modified)."""
    return pl.DataFrame({key: ids.as_series()}).hstack(attributes)


def _read_attributes(path: Path, key: str, ids: IdMap) -> pl.DataFrame | None:
    """An attribute table written by Catalog.write, checked against the ids (None: absent)."""
    if not path.exists():
        return None
    try:
        table = pl.read_parquet(path, glob=False)  # a "[x]" in a path is a name, not a pattern
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read Parquet ({exc})", source=str(path)) from None
    if table.columns[:1] != [key]:
        raise DataError(f"first column must be {key!r}, got {table.columns[:1]}", source=str(path))
    if not table[key].cast(pl.String).equals(ids.as_series(), check_names=False):
        raise DataError(
            f"rows do not follow the {len(ids)} ids of {CATALOG_FILE}", source=str(path)
        )
    return table


@dataclass(frozen=True)
class IdRecommendation:
    """One user's top-k in external ids, best first."""

    user_id: str
    known: bool  # False: the model never saw this user and gave its cold answer
    item_ids: tuple[str, ...]
    scores: tuple[float, ...]
    titles: tuple[str | None, ...] | None


def _check_sizes(users: IdMap, items: IdMap, n_users: int, n_items: int, where: str | None) -> None:
    if len(users) != n_users or len(items) != n_items:
        raise DataError(
            f"the catalog holds {len(users)} users and {len(items)} items; the model has "
            f"{n_users} and {n_items} (Catalog.from_dataset of the data it was fitted on)",
            source=where,
        )


def user_idx(catalog: Catalog, user_ids: Sequence[str]) -> npt.NDArray[np.int32]:
    """Idx of each external user id; UNKNOWN_USER_IDX for ids the model never saw."""
    if isinstance(user_ids, str):  # its characters would be read as one user id each
        raise TypeError(f"user_ids must be a sequence of ids, got the single id {user_ids!r}")
    if not user_ids:
        return np.zeros(0, np.int32)
    idx = catalog.users.to_idx([str(u) for u in user_ids], missing="ignore")
    return np.where(idx >= 0, idx, UNKNOWN_USER_IDX).astype(np.int32)


def recommend_for_ids(
    model: Recommender,
    catalog: Catalog,
    user_ids: Sequence[str],
    k: int,
    *,
    exclude_seen: bool = True,
) -> list[IdRecommendation]:
    """The model's top-k for each external user id, as external item ids with scores."""
    idx = user_idx(catalog, user_ids)
    if idx.size == 0:
        return []
    top = model.recommend(idx, k, exclude_seen=exclude_seen)
    out = []
    for row, user_id in enumerate(user_ids):
        keep = top.items[row] != PAD_IDX
        items = top.items[row][keep]
        titles = (
            tuple(catalog.titles[int(i)] for i in items) if catalog.titles is not None else None
        )
        out.append(
            IdRecommendation(
                user_id=str(user_id),
                known=bool(idx[row] != UNKNOWN_USER_IDX),
                item_ids=tuple(str(x) for x in catalog.items.to_ids(items)),
                scores=tuple(float(s) for s in top.scores[row][keep]),
                titles=titles,
            )
        )
    return out


def saved_event_weights(folder: Path) -> dict[str, float]:
    """The event weight table in a saved model's ids.json (empty when it has none)."""
    path = folder / CATALOG_FILE
    if not path.is_file():
        return {}
    table = read_json_object(path).get("event_weights") or {}
    try:
        return {str(k): float(v) for k, v in table.items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise DataError(f"malformed event_weights ({exc})", source=str(path)) from None


def read_json_object(path: Path, missing: str = "file is missing") -> dict[str, Any]:
    """A JSON object from `path`; a missing, malformed or non-object file is a DataError."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(missing, source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc})", source=str(path)) from None
    except UnicodeDecodeError:  # e.g. a data file where a model's manifest should be
        raise DataError("not a JSON file (not UTF-8 text)", source=str(path)) from None
    except OSError as exc:  # a folder, or a file where a folder should be
        raise DataError(f"cannot read it ({exc.strerror or exc})", source=str(path)) from None
    if not isinstance(payload, dict):
        raise DataError("expected a JSON object", source=str(path))
    return payload

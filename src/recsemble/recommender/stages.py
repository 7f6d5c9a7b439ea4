"""Re-ranking stages for serving, fitted on a Dataset rebuilt from the saved model folder.

The folder holds the histories the model answers from and, since items.parquet / users.parquet
exist, the attribute tables: enough for every stage. Event types are not saved with the
histories, so fitted events count as the generic type. A stage that cannot be fitted on what
the folder holds (e.g. a quality filter without its attribute column) is skipped with a logged
warning, never a failed load; asking for it by name in a request is then a clear error.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from recsemble.data.dataset import DEFAULT_EVENT, Dataset
from recsemble.data.idmap import IdMap
from recsemble.errors import ConfigError
from recsemble.generators.history import Histories
from recsemble.recommender.items import ItemState, NewItem, with_rows
from recsemble.rerank import Query, RerankConfig, Reranker, build_stages
from recsemble.rerank.config import check_stage_names
from recsemble.rerank.exploration import Exploration
from recsemble.rerank.filters import AvailabilityFilter, QualityFilter, RuleFilter
from recsemble.store.base import Event
from recsemble.types import ItemList

log = logging.getLogger(__name__)
#: The stages that also judge the items added after training: they drop items by attributes.
NEW_ITEM_FILTERS = (AvailabilityFilter, RuleFilter, QualityFilter)


def serving_dataset(
    histories: Histories,
    users: IdMap,
    items: IdMap,
    item_attributes: pl.DataFrame,
    user_attributes: pl.DataFrame | None,
    event_weights: Mapping[str, float],
) -> Dataset:
    """The fitted interactions (from the histories) with the catalog's attribute tables.

    Every item is available here: availability is live (the request filter drops what
    ItemState blocks now), so an item PUT available again is not kept out by the `available`
    stage reading the catalog the model was saved with; that stage still checks expiry."""
    interactions = pl.DataFrame(
        {
            "user_idx": histories.row_of_event.astype(np.int32),
            "item_idx": histories.items,
            "timestamp": histories.timestamps,
            "event": pl.Series([DEFAULT_EVENT] * histories.items.size, dtype=pl.String),
            "weight": histories.weights,
            "value": pl.Series([None] * histories.items.size, dtype=pl.Float32),
        }
    )
    if user_attributes is None:
        user_frame = pl.DataFrame({"user_id": users.as_series()}).drop("user_id")
    else:
        user_frame = user_attributes.drop(user_attributes.columns[0])
    return Dataset(
        users=users,
        items=items,
        interactions=interactions,
        item_attributes=_always_available(item_attributes),
        user_attributes=user_frame,
        event_weights=dict(event_weights),
    )


def _always_available(item_attributes: pl.DataFrame) -> pl.DataFrame:
    return item_attributes.with_columns(pl.lit(True).alias("available"))


class Stages:
    """Fitted stages by name: the configured defaults at load, others on first request."""

    def __init__(self, config: RerankConfig, dataset: Dataset) -> None:
        self.config = config
        self.dataset = dataset
        self.fitted: dict[str, Reranker] = {}
        self.unusable: dict[str, str] = {}  # stage name -> why it could not be fitted
        self._lock = threading.Lock()
        # The new items, the filters and their fits on them (rejected_new).
        self._new_filters: tuple[list[NewItem], list[Reranker], list[Reranker]] | None = None
        self._catalog: pl.DataFrame | None = None  # the attribute table last refitted to
        for name in config.stages:
            self._fit(name)
        self._set_default()

    def _set_default(self) -> None:
        """The configured stages that could be fitted, and their signature: what a plain
        request is re-ranked with, as text (a precomputed list is served only when the batch
        that computed it had the same: serving/precomputed.py)."""
        self.default = tuple(name for name in self.config.stages if name in self.fitted)
        chain = [[self.fitted[name].name, self.fitted[name].config.model_dump(mode="json")]
                 for name in self.default]  # fmt: skip
        self.signature = json.dumps({"pool": self.config.pool, "stages": chain}, sort_keys=True)

    def _fit(self, name: str) -> Reranker | None:
        if name in self.fitted:
            return self.fitted[name]
        if name in self.unusable:
            return None
        with self._lock:
            if name not in self.fitted and name not in self.unusable:
                stage = build_stages(self.config, [name])[0]
                try:
                    self.fitted[name] = stage.fit(self.dataset)
                except (ConfigError, ValueError, KeyError) as exc:
                    self.unusable[name] = str(exc)
                    log.warning("re-ranking stage %r skipped: %s", name, exc)
        return self.fitted.get(name)

    def catalog_changed(self, item_attributes: pl.DataFrame) -> None:
        """Item attributes changed (a PUT): the stages reading them are refitted, so business
        rules, caps, freshness and expiry apply to the catalog as it is now, not as loaded.
        Stages are replaced whole: a request in flight finishes with the ones it started with.
        A stage that could not be fitted is tried again: the PUT may hold what it lacked (the
        first item with a price, for a rule on prices), and a configured one joins the chain."""
        old = self.dataset
        with self._lock:
            if item_attributes is self._catalog:  # only items outside the model changed
                return
            self._catalog = item_attributes
            self.dataset = Dataset(
                users=old.users,
                items=old.items,
                interactions=old.interactions,
                item_attributes=_always_available(item_attributes),
                user_attributes=old.user_attributes,
                event_weights=old.event_weights,
            )
            fitted = {}
            for name, stage in self.fitted.items():
                try:
                    fitted[name] = stage.refit_catalog(self.dataset)
                except (ConfigError, ValueError, KeyError) as exc:  # keeps its last good fit
                    fitted[name] = stage
                    log.error("re-ranking stage %r not refitted to the catalog: %s", name, exc)
            unusable = {}
            for name in self.unusable:
                try:
                    fitted[name] = build_stages(self.config, [name])[0].fit(self.dataset)
                except (ConfigError, ValueError, KeyError) as exc:
                    unusable[name] = str(exc)
            self.fitted, self.unusable = fitted, unusable
            self._set_default()

    def observe(self, events: Sequence[Event], to_idx: Callable[[str], int | None]) -> None:
        """Live events reach the stages that learn from them (exploration's click counts)."""
        learners = [s for s in self.fitted.values() if isinstance(s, Exploration)]
        if not learners or not events:
            return
        found = [to_idx(event.item_id) for event in events]
        items = np.array([-1 if idx is None else idx for idx in found], dtype=np.intp)
        for stage in learners:
            stage.observe(items, [event.type for event in events])

    def rejected_new(self, chain: Sequence[Reranker], state: ItemState, at: int) -> frozenset[str]:
        """The items added after training (not in the model) that the chain's filters drop
        at moment `at`: an expiry past, a rule or a quality threshold not met. Those filters
        are fitted on the new items' attributes, once per set of new items."""
        filters: list[Reranker] = [
            stage  # a quality scorer is a function of model idx: it cannot score these
            for stage in catalog_filters(chain)
            if getattr(stage, "scorer", None) is None
        ]
        found = state.new_item_matrix()
        if not filters or found is None:
            return frozenset()
        new = found[0]
        cached = self._new_filters
        if cached is None or cached[0] is not new or not _same(cached[1], filters):
            dataset = _new_item_dataset(new, self.dataset)
            fitted: list[Reranker] = [copy.copy(stage).fit(dataset) for stage in filters]
            cached = self._new_filters = (new, filters, fitted)
        kept = ItemList(np.arange(len(new), dtype=np.int32), np.zeros(len(new), np.float32))
        kept = apply(cached[2], Query(at=at), kept, len(new))
        return frozenset(new[i].item_id for i in set(range(len(new))) - set(kept.items.tolist()))

    def default_filters(self) -> list[Reranker]:
        """The default chain's catalog filters (available, rules, quality): what any list of
        items shown must pass, also one that is about an item, not a user (/similar)."""
        return catalog_filters(self.chain(None))

    def default_expired(self, items: npt.NDArray[np.int64], at: int) -> bool:
        """Whether the default `available` stage drops any of the items at moment `at` (an
        expiry passed): a list computed earlier, e.g. a precomputed one, may hold them."""
        stages = [self.fitted[name] for name in self.default]
        return any(
            bool((stage.expires_[items] <= at).any())
            for stage in stages
            if isinstance(stage, AvailabilityFilter)
        )

    def default_reads_catalog(self) -> bool:
        """Whether the default stages' answers depend on item attributes."""
        fitted = self.fitted
        return any(fitted[name].reads_catalog() for name in self.default)

    def chain(self, names: Sequence[str] | None) -> list[Reranker]:
        """The fitted stages for a request (None: the defaults); unknown or unusable: error."""
        if names is None:
            return [self.fitted[name] for name in self.default]
        out = []
        for name in check_stage_names(list(names)):
            stage = self._fit(name)
            if stage is None:
                raise ConfigError(
                    f"re-ranking stage {name!r} is not available for this model: "
                    f"{self.unusable[name]}"
                )
            out.append(stage)
        return out


def catalog_filters(chain: Sequence[Reranker]) -> list[Reranker]:
    """The stages of `chain` that drop items by their attributes (expiry, rules, quality)."""
    return [stage for stage in chain if isinstance(stage, NEW_ITEM_FILTERS)]


def _same(these: Sequence[Reranker], those: Sequence[Reranker]) -> bool:
    return len(these) == len(those) and all(a is b for a, b in zip(these, those, strict=True))


def _new_item_dataset(new: Sequence[NewItem], served: Dataset) -> Dataset:
    """The new items alone as a catalog, their attributes in the served catalog's types."""
    rows = {i: item.attributes for i, item in enumerate(new)}
    attributes = with_rows(served.item_attributes.clear(len(new)), rows)
    return Dataset(
        users=IdMap([]),
        items=IdMap([item.item_id for item in new]),
        interactions=served.interactions.clear(),
        item_attributes=attributes,
        user_attributes=served.user_attributes.clear(),
        event_weights=served.event_weights,
    )


def apply(stages: Sequence[Reranker], query: Query, items: ItemList, k: int) -> ItemList:
    """Each stage in turn, the last cutting to k (as `Reranked` runs them)."""
    for position, stage in enumerate(stages):
        if len(items) == 0:
            break
        last = position == len(stages) - 1
        items = stage.rerank(query, items, k if last else max(len(items), 1))
    return items.top(k)

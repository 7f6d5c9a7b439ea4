"""Exploration: reserved slots where new or uncertain items get a chance to be seen.

A ranker trained on logged clicks only learns about the items it already shows. `Exploration`
reserves a few positions of every list (`slots`, 0-based); at each one the policy shows either
the item the ranking would put there (exploit) or an eligible item from the input not placed
yet (explore). Everything else keeps the input's order; items bumped by an explored slot shift
down one place. Two policies:

- epsilon-greedy: explore with probability epsilon, then uniformly among the eligible items.
- Thompson sampling: draw each contender's click-rate from its Beta posterior
  Beta(prior_alpha + clicks, prior_beta + max(impressions - clicks, 0)), the exploit item being
  a contender too, and show the highest draw.

Propensities, for off-policy evaluation. The returned list carries a float32 feature column
"propensity": at position p, the probability that the policy shows this item at p *given the
items already placed at positions 0..p-1*. Outside the reserved slots that is 1.0 (the first
remaining item in input order is placed deterministically). At a reserved slot with eligible
set E and exploit item x it is exact for epsilon-greedy, (1 - eps) [i = x] + eps / |E| [i in E],
and a Monte Carlo estimate for Thompson: the share of `propensity_samples` extra posterior
draws the shown item wins, floored at 1 / (samples + 1) so a shown item never gets 0. The
probability of a whole list is the product over its positions, which is what inverse-propensity
estimators divide by. With `log_path` set, each request appends one JSON line per shown item
{user, at, position, item_idx, propensity, policy, explored}; `rerank_with_records` hands the
same records to a caller that logs elsewhere.

Randomness comes from a generator seeded with (seed, user, request moment): the same query
always gets the same list, while users and moments explore differently.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, TypedDict

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from recsemble.data.dataset import Dataset
from recsemble.files import file_above
from recsemble.rerank.base import Query, Reranker, RerankerConfig
from recsemble.rerank.catalog import (
    age_days,
    check_event_types,
    first_interactions,
    item_birth,
)
from recsemble.types import ItemList

Bool = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]
Int = npt.NDArray[np.intp]
_SEED_MODULUS = 2**64  # numpy seeds must be non-negative


class ExploreConfig(RerankerConfig):
    """slots: reserved 0-based positions (those >= the returned length are ignored).

    eligible: which input items may take a reserved slot. "new": born at most `new_days` before
    the request; "uncertain": fewer than `max_impressions` impressions; "any": every item.
    click_events: event types counted as clicks (None: every type but `impression_event`).
    max_contenders: only the best-placed eligible items not yet shown compete for a reserved
    slot: exploration stays among candidates the ranker found plausible, and the cost stays
    bounded. propensity_samples: Thompson's Monte Carlo draws per reserved slot; the cost is
    linear in samples x contenders (about 1 ms a slot for 30 contenders at 256 samples).
    """

    method: Literal["epsilon", "thompson"] = "thompson"
    slots: list[int] = Field(default_factory=lambda: [9])
    epsilon: float = Field(0.1, ge=0.0, le=1.0)
    eligible: Literal["new", "uncertain", "any"] = "uncertain"
    new_days: float = Field(30.0, ge=0.0)
    max_impressions: int = Field(100, ge=1)
    impression_event: str = "impression"
    click_events: list[str] | None = Field(default=None, min_length=1)
    prior_alpha: float = Field(1.0, gt=0.0)
    prior_beta: float = Field(1.0, gt=0.0)
    max_contenders: int = Field(30, ge=1)
    propensity_samples: int = Field(256, ge=1)
    seed: int = Field(0, ge=0)
    log_path: str | None = None

    @field_validator("log_path")
    @classmethod
    def _writable_log(cls, log_path: str | None) -> str | None:
        """Checked with the config, not at the first request that appends to it."""
        if log_path is None:
            return None
        path = Path(log_path)
        if path.is_dir():
            raise ValueError(f"{log_path} is a folder; give the path of a JSON-lines file")
        above = file_above(path)
        if above is not None:
            raise ValueError(f"{above} is a file, not a folder to put {path.name} in")
        return log_path

    @field_validator("slots")
    @classmethod
    def _distinct_positions(cls, slots: list[int]) -> list[int]:
        if any(slot < 0 for slot in slots):
            raise ValueError(f"slots are 0-based positions, got {slots}")
        return sorted(set(slots))


class ExposureRecord(TypedDict):
    """One shown item, as logged for off-policy evaluation."""

    user: int
    at: int
    position: int
    item_idx: int
    propensity: float
    policy: str
    explored: bool


@dataclass(eq=False)
class ItemStats:
    """Per-item impression and click counts (float64, indexed by item idx); mutable on purpose.

    A server passes its live events to `Exploration.observe` (and a caller may `update` with
    impressions it logs), so "uncertain" and the Thompson posteriors follow live feedback
    without a refit.
    """

    impressions: F64
    clicks: F64

    @classmethod
    def from_dataset(
        cls, dataset: Dataset, impression_event: str, click_events: list[str] | None
    ) -> ItemStats:
        """Counts from the dataset's events.

        Without any `impression_event` in the data, impressions = clicks: Thompson sampling
        then only has interaction counts to go on (every posterior leans towards a click rate
        of 1, tighter for items with more interactions) and "uncertain" means few interactions.
        """
        events = dataset.interactions["event"]
        items = dataset.column("item_idx")
        is_impression = (events == impression_event).to_numpy()
        if click_events is None:
            is_click = ~is_impression
        else:
            check_event_types(dataset, click_events, "explore.click_events")
            is_click = events.is_in(click_events).to_numpy()
        n = dataset.n_items
        clicks = np.bincount(items[is_click], minlength=n).astype(np.float64)
        if is_impression.any():
            impressions = np.bincount(items[is_impression], minlength=n).astype(np.float64)
        else:
            impressions = clicks.copy()
        return cls(impressions, clicks)

    def update(self, items: npt.ArrayLike, clicked: npt.ArrayLike) -> None:
        """Record one impression per entry of `items`, and a click where `clicked` is true."""
        shown = np.asarray(items, dtype=np.intp).ravel()
        hit = np.asarray(clicked, dtype=np.bool_).ravel()
        if hit.shape != shown.shape:
            raise ValueError(f"{shown.size} items but {hit.size} clicked flags")
        if shown.size and (shown.min() < 0 or shown.max() >= self.impressions.size):
            raise ValueError(f"item idx out of range 0..{self.impressions.size - 1}")
        np.add.at(self.impressions, shown, 1.0)
        np.add.at(self.clicks, shown[hit], 1.0)

    def posterior(self, items: Int, alpha: float, beta: float) -> tuple[F64, F64]:
        """Beta posterior parameters of each item's click rate."""
        clicks = self.clicks[items]
        misses = np.maximum(self.impressions[items] - clicks, 0.0)
        return alpha + clicks, beta + misses


class Exploration(Reranker):
    """Reserved exploration slots with epsilon-greedy or Thompson sampling (see module doc)."""

    name: ClassVar[str] = "explore"
    Config: ClassVar[type[RerankerConfig]] = ExploreConfig
    config: ExploreConfig

    def _fit(self, dataset: Dataset) -> None:
        config = self.config
        self.stats_ = ItemStats.from_dataset(dataset, config.impression_event, config.click_events)
        self.first_: F64 = first_interactions(dataset)
        self.born_: F64 = item_birth(dataset, self.first_)
        # Without impression events in the data, impressions are the clicks (see from_dataset).
        self.impressions_logged_ = bool(
            (dataset.interactions["event"] == config.impression_event).any()
        )

    def refit_catalog(self, dataset: Dataset) -> Reranker:
        """Only the items' ages read the catalog: the click counts, live ones included, stay
        (shared with this stage, so events observed meanwhile are not lost)."""
        fresh = copy.copy(self)
        fresh.born_ = item_birth(dataset, self.first_)
        return fresh

    def observe(self, items: npt.NDArray[np.intp], types: Sequence[str]) -> None:
        """Live events (item idx, -1 for an item the stage does not know; event types) counted
        as `fit` counts the data's, so the posteriors follow feedback without a refit."""
        kinds = np.asarray(types, dtype=object)
        shown = kinds == self.config.impression_event
        clicks = self.config.click_events
        clicked = ~shown if clicks is None else np.isin(kinds, clicks)
        known = (items >= 0) & (items < self.stats_.clicks.size)
        np.add.at(self.stats_.clicks, items[clicked & known], 1.0)
        seen = shown if self.impressions_logged_ else clicked
        np.add.at(self.stats_.impressions, items[seen & known], 1.0)

    def eligible_mask(self, query: Query, items: ItemList) -> Bool:
        """Which entries of `items` may take a reserved slot at this request."""
        rule = self.config.eligible
        if rule == "new":
            ages = age_days(self.born_, items.items, self.moment(query))
            new: Bool = ages <= self.config.new_days
            return new
        if rule == "uncertain":
            uncertain: Bool = self.stats_.impressions[items.items] < self.config.max_impressions
            return uncertain
        return np.ones(len(items), dtype=np.bool_)

    def _rerank(self, query: Query, items: ItemList, k: int) -> ItemList:
        moment = self.moment(query)
        seed = [self.config.seed, (query.user + 1) % _SEED_MODULUS, moment % _SEED_MODULUS]
        rng = np.random.default_rng(seed)
        order, propensity = self._place(rng, items, self.eligible_mask(query, items), k)
        picked = items.take(order)
        features = {**picked.features, "propensity": propensity.astype(np.float32)}
        shown = ItemList(picked.items, picked.scores, features)
        if self.config.log_path is not None:
            _append_log(self.config.log_path, self.records(query, items, shown))
        return shown

    def _place(
        self, rng: np.random.Generator, items: ItemList, eligible: Bool, k: int
    ) -> tuple[Int, F64]:
        """Input positions in shown order, and the propensity of each placement."""
        n = min(k, len(items))
        reserved = {slot for slot in self.config.slots if slot < n}
        remaining = np.ones(len(items), dtype=np.bool_)
        order = np.zeros(n, dtype=np.intp)
        propensity = np.ones(n, dtype=np.float64)
        for position in range(n):
            exploit = int(np.argmax(remaining))  # first entry not placed yet
            chosen = exploit
            if position in reserved:
                contenders = np.flatnonzero(remaining & eligible)[: self.config.max_contenders]
                if contenders.size:
                    chosen, propensity[position] = self._choose(rng, items, exploit, contenders)
            remaining[chosen] = False
            order[position] = chosen
        return order, propensity

    def _choose(
        self, rng: np.random.Generator, items: ItemList, exploit: int, eligible: Int
    ) -> tuple[int, float]:
        if self.config.method == "epsilon":
            return self._epsilon_greedy(rng, exploit, eligible)
        return self._thompson(rng, items, exploit, eligible)

    def _epsilon_greedy(
        self, rng: np.random.Generator, exploit: int, eligible: Int
    ) -> tuple[int, float]:
        epsilon = self.config.epsilon
        chosen = int(rng.choice(eligible)) if rng.random() < epsilon else exploit
        propensity = (1.0 - epsilon) * (chosen == exploit)
        propensity += epsilon / eligible.size * bool(np.isin(chosen, eligible))
        return chosen, propensity

    def _thompson(
        self, rng: np.random.Generator, items: ItemList, exploit: int, eligible: Int
    ) -> tuple[int, float]:
        arms = eligible if np.isin(exploit, eligible) else np.append(exploit, eligible)
        if arms.size == 1:
            return int(arms[0]), 1.0
        config = self.config
        alpha, beta = self.stats_.posterior(
            items.items[arms].astype(np.intp), config.prior_alpha, config.prior_beta
        )
        winner = int(np.argmax(rng.beta(alpha, beta)))
        samples = config.propensity_samples
        draws = rng.beta(alpha, beta, size=(samples, arms.size))
        wins = float(np.mean(np.argmax(draws, axis=1) == winner))
        return int(arms[winner]), max(wins, 1.0 / (samples + 1))

    def records(self, query: Query, items: ItemList, shown: ItemList) -> list[ExposureRecord]:
        """One record per entry of `shown` (this stage's answer to `items`).

        explored: the item differs from the one the ranking would have put at that position,
        i.e. the first input item not placed before it.
        """
        placed: set[int] = set()
        ranking = iter(items.items.tolist())
        exploit = next(ranking, None)
        out: list[ExposureRecord] = []
        propensity = shown.features["propensity"]
        for position, item in enumerate(shown.items.tolist()):
            while exploit is not None and exploit in placed:
                exploit = next(ranking, None)
            out.append(
                ExposureRecord(
                    user=int(query.user),
                    at=self.moment(query),
                    position=position,
                    item_idx=int(item),
                    propensity=float(propensity[position]),
                    policy=self.config.method,
                    explored=item != exploit,
                )
            )
            placed.add(item)
        return out

    def rerank_with_records(
        self, query: Query, items: ItemList, k: int
    ) -> tuple[ItemList, list[ExposureRecord]]:
        """`rerank`, plus the exposure records for a caller that logs them itself."""
        shown = self.rerank(query, items, k)
        return shown, self.records(query, items, shown)


def _append_log(log_path: str, records: list[ExposureRecord]) -> None:
    """One JSON line per record, appended (a log is never rewritten)."""
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        log.writelines(json.dumps(record) + "\n" for record in records)

"""The offline evaluation protocol (../shared/benchmark-protocol.md): data preparation and splits.

Every quality figure in the project is measured on splits made here. Sorting keys use external
ids compared as strings, exactly as the protocol text says, so that an independent
implementation reproduces the same split row for row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
import polars as pl

from recsemble.data.dataset import Dataset
from recsemble.errors import ConfigError, DataError

ProtocolName = Literal["temporal-user", "temporal-global"]
PROTOCOLS: tuple[str, ...] = get_args(ProtocolName)


@dataclass(frozen=True)
class Split:
    """Train and test snapshots over the same users, items and attributes.

    reference_time[u] is the moment user u's recommendation is made (epoch s): for temporal-user
    their last train interaction, for temporal-global the cutoff. Anything causal counts only
    interactions at or before it. Users without train interactions have the cutoff (global) or,
    under temporal-user (only with protocol.min_user_interactions < 2), the second before
    their first test interaction; -1 if they have no interaction at all.
    """

    train: Dataset
    test: Dataset
    protocol: ProtocolName
    reference_time: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        if self.train.users != self.test.users or self.train.items != self.test.items:
            raise ValueError("train and test must share their id maps")

    @property
    def evaluated_users(self) -> npt.NDArray[np.int32]:
        """Idx of users with at least one test interaction, ascending."""
        return np.flatnonzero(self.test.user_history_lengths > 0).astype(np.int32)

    @property
    def cold_users(self) -> npt.NDArray[np.int32]:
        """Evaluated users with no train interaction."""
        evaluated = self.evaluated_users
        cold: npt.NDArray[np.int32] = evaluated[self.train.user_history_lengths[evaluated] == 0]
        return cold

    @property
    def fingerprint(self) -> str:
        """sha256 of the split: its ids, then its train and test rows in id order (whatever idx
        the ids got). Two runs with the same fingerprint scored the same users on the same
        held-out items, so their per-user figures can be paired (`compare a.json b.json`)."""
        digest = hashlib.sha256()
        ranks = []
        for id_map in (self.train.users, self.train.items):
            ids = id_map.ids.astype(str)
            order = np.argsort(ids, kind="stable")
            digest.update("\x1f".join(ids[order]).encode() + b"\x1e")
            rank = np.empty(order.size, dtype=np.int64)
            rank[order] = np.arange(order.size)
            ranks.append(rank)
        for part in (self.train, self.test):
            rows = part.interactions
            idx = (rows["user_idx"].to_numpy(), rows["item_idx"].to_numpy())
            columns = [ranks[0][idx[0]], ranks[1][idx[1]]]
            columns.append(rows["timestamp"].to_numpy().astype(np.int64))
            order = np.lexsort(columns[::-1])
            for column in columns:
                digest.update(column[order].tobytes() + b"\x1e")
        return digest.hexdigest()

    @property
    def boundary_tie_share(self) -> float:
        """Share of test interactions at exactly their user's reference time: ties with train
        events, which the protocol splits by item id. A model that learns from validation
        targets can pick up that order (e.g. through the item popularity it shapes), so
        figures on data with many ties may not carry to production."""
        test = self.test.interactions
        if test.height == 0:
            return 0.0
        users = test["user_idx"].to_numpy()
        at = self.reference_time[users]
        return float(np.mean(test["timestamp"].to_numpy() == at))


def prepare(
    dataset: Dataset,
    *,
    min_user_interactions: int = 5,
    min_value: float | None = None,
    keep_catalog: bool = False,
) -> Dataset:
    """Protocol data preparation.

    1. optionally keep interactions with value >= min_value (the protocol's default is none);
    2. collapse duplicate (user, item) pairs to one interaction with the EARLIEST timestamp
       (that row's event and value; the pair's largest weight);
    3. drop users with fewer than `min_user_interactions` interactions (one pass);
    4. the catalog is every item left (items only in the test part included).

    keep_catalog: keep every user and item of `dataset` (ids and attributes) in place of
    step 4, those without interactions included: what a model trained for serving needs.
    """
    inter = dataset.interactions
    if min_value is not None:
        _check_has_values(dataset, min_value)
        inter = inter.filter(pl.col("value") >= min_value)
    collapsed = (
        inter.with_row_index("_row")
        .sort("user_idx", "item_idx", "timestamp", "_row")
        .group_by("user_idx", "item_idx", maintain_order=True)
        .agg(
            pl.col("timestamp").first(),
            pl.col("event").first(),
            pl.col("value").first(),
            pl.col("weight").max(),
            pl.col("_row").first(),
        )
        .sort("_row")
        .drop("_row")
    )
    counts = collapsed.group_by("user_idx").len()
    kept_users = counts.filter(pl.col("len") >= min_user_interactions)["user_idx"]
    collapsed = collapsed.filter(pl.col("user_idx").is_in(kept_users.implode()))
    if keep_catalog:
        return dataset.with_interactions(collapsed)
    user_idx = np.sort(kept_users.to_numpy())
    item_idx = np.sort(collapsed["item_idx"].unique().to_numpy())
    return dataset.with_interactions(collapsed).restrict(user_idx, item_idx)


def _check_has_values(dataset: Dataset, min_value: float) -> None:
    """min_value filters on explicit values; data without any would silently lose every row."""
    values = dataset.interactions["value"]
    if values.len() and values.null_count() == values.len():
        raise DataError(
            f"{dataset.name or 'the data set'}: data.min_value = {min_value:g} keeps interactions "
            "by their explicit value, but it has none (no rating or value column): unset it"
        )


def _string_rank(ids: pl.Series) -> npt.NDArray[np.int64]:
    """Rank of each id in string order (UTF-8 byte order equals code point order)."""
    return ids.rank("ordinal").to_numpy().astype(np.int64)


def _test_mask_per_user(
    user: npt.NDArray[np.int32],
    timestamp: npt.NDArray[np.int64],
    user_rank: npt.NDArray[np.int64],
    item_rank: npt.NDArray[np.int64],
    n_users: int,
    test_fraction: float,
) -> npt.NDArray[np.bool_]:
    """True for each user's last max(1, floor(f * n_u)) interactions by (timestamp, item id)."""
    order = np.lexsort((item_rank, timestamp, user_rank[user]))
    sorted_users = user[order]
    counts = np.bincount(user, minlength=n_users)
    # Each user's rows are contiguous in `order`; find where each group starts.
    change = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    first_pos = np.zeros(n_users, dtype=np.int64)
    first_pos[sorted_users[change]] = change
    group_start = first_pos[sorted_users]
    position = np.arange(order.size) - group_start
    n_u = counts[sorted_users]
    n_test = np.maximum(1, floor_share(decimal_fraction(test_fraction), counts))[sorted_users]
    mask_sorted = position >= n_u - n_test
    mask = np.empty(order.size, dtype=bool)
    mask[order] = mask_sorted
    return mask


def _split_frames(dataset: Dataset, test_mask: npt.NDArray[np.bool_]) -> tuple[Dataset, Dataset]:
    mask = pl.Series(test_mask)
    inter = dataset.interactions
    return dataset.with_interactions(inter.filter(~mask)), dataset.with_interactions(
        inter.filter(mask)
    )


def temporal_user_split(dataset: Dataset, test_fraction: float = 0.2) -> Split:
    """Per user: the last max(1, floor(f * n_u)) interactions by (timestamp, item id) are test."""
    _check_fraction(test_fraction)
    test_mask = _test_mask_per_user(
        dataset.column("user_idx"),
        dataset.column("timestamp"),
        _string_rank(dataset.users.as_series()),
        _string_rank(dataset.items.as_series())[dataset.column("item_idx")],
        dataset.n_users,
        test_fraction,
    )
    train, test = _split_frames(dataset, test_mask)
    return Split(train, test, "temporal-user", user_reference_times(train, test))


def user_reference_times(train: Dataset, test: Dataset) -> npt.NDArray[np.int64]:
    """temporal-user's moments of recommendation: each user's last train interaction; a user
    with none (a single interaction, all of it test) is served the second before their first
    test interaction, so causal counts see what was known then (not nothing, as at -1)."""
    ref = np.full(train.n_users, -1, dtype=np.int64)
    np.maximum.at(ref, train.column("user_idx"), train.column("timestamp"))
    first = np.full(test.n_users, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, test.column("user_idx"), test.column("timestamp"))
    cold = (train.user_history_lengths == 0) & (test.user_history_lengths > 0)
    ref[cold] = first[cold] - 1
    return ref


def temporal_global_split(dataset: Dataset, test_fraction: float = 0.2) -> Split:
    """All interactions by (timestamp, user id, item id): the first floor((1-f) * N) are train."""
    _check_fraction(test_fraction)
    user_rank = _string_rank(dataset.users.as_series())[dataset.column("user_idx")]
    item_rank = _string_rank(dataset.items.as_series())[dataset.column("item_idx")]
    order = np.lexsort((item_rank, user_rank, dataset.column("timestamp")))
    n_train = int(floor_share(1 - decimal_fraction(test_fraction), np.array([order.size]))[0])
    test_mask = np.ones(order.size, dtype=bool)
    test_mask[order[:n_train]] = False
    train, test = _split_frames(dataset, test_mask)
    train_ts = train.column("timestamp")
    cutoff = int(train_ts.max()) if train_ts.size else -1
    return Split(train, test, "temporal-global", np.full(dataset.n_users, cutoff, dtype=np.int64))


def split(dataset: Dataset, protocol: str, test_fraction: float = 0.2) -> Split:
    """Split by protocol name ('temporal-user' or 'temporal-global')."""
    if dataset.n_interactions == 0:
        raise DataError(f"{dataset.name or 'the data set'}: no interactions to split")
    if protocol == "temporal-user":
        return temporal_user_split(dataset, test_fraction)
    if protocol == "temporal-global":
        return temporal_global_split(dataset, test_fraction)
    raise ConfigError(f"unknown protocol {protocol!r}; choose one of {list(PROTOCOLS)}")


def validation_split(outer: Split, test_fraction: float = 0.2) -> Split:
    """The validation window: the same split rule applied to the TRAIN part only.

    Anything fitted to its validation targets must be refitted on outer.train before the test
    part is scored; the test part never reaches fitting or tuning.
    """
    return split(outer.train, outer.protocol, test_fraction)


def decimal_fraction(fraction: float) -> Fraction:
    """The fraction as the decimal it was written as (0.7, not 0.6999999999999999556)."""
    return Fraction(repr(fraction))


def floor_share(fraction: Fraction, counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """floor(fraction * n) for each count, in exact arithmetic: in floats 0.7 * 90 is
    62.99999999999999, which would put 62 of 90 events in train rather than 63."""
    values, inverse = np.unique(counts, return_inverse=True)
    p, q = fraction.numerator, fraction.denominator
    shares = np.array([int(v) * p // q for v in values.tolist()], dtype=np.int64)
    out: npt.NDArray[np.int64] = shares[inverse.reshape(-1)]
    return out


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")

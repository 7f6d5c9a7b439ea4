"""Top-k metrics, vectorized over users. Spec: benchmark-protocol.md, section "Metrics".

Edge cases the protocol leaves open, decided here:

- `recs` rows hold item idx, padded at the END with PAD_IDX when a user got fewer items. Only the
  first k columns are read; `recs` with fewer than k columns is an error (a short list is spelled
  with padding, so a too-narrow matrix is a caller bug, not a short list).
- A list shorter than k: precision still divides by k; NDCG's ideal and MAP's normaliser depend
  on |T| and k only. Novelty, ARP and ILD average over the items actually in the list.
- An empty list has NaN novelty and ARP; a list with fewer than 2 items has NaN ILD. NaN users are
  left out of those macro-averages (nanmean).
- Jaccard of two empty category sets is 0, so their ILD distance is 1.
- Errors (ValueError): an empty truth row, a duplicate item within a list, padding before an
  item, an idx outside the catalog, a pad value other than PAD_IDX.
- Truth and category entries stored as explicit zeros are not memberships.
- Long tail: the head is the ceil(share * n_items) most popular items by train popularity, ties
  broken by lower item idx first; every other item is long-tail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recsemble.evaluation.distribution import calibration_kl, exposure_gini
from recsemble.types import PAD_IDX

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
# (safe item idx (c, k), valid mask (c, k), pair firsts, pair seconds) -> intersections (c, P)
_PairIntersections = Callable[[I64, BoolArray, I64, I64], I64]

#: Per-user metrics in summary order (ILD last, only with categories).
ACCURACY_METRICS = ("ndcg", "recall", "precision", "map", "mrr", "hit")
LIST_METRICS = ("novelty", "arp")

# Up to this many categories ILD packs each item's categories into 64-bit words; beyond it a
# sparse product is cheaper than scanning mostly-empty words.
_BITSET_MAX_CATEGORIES = 256
# Elements (user x pair x word) per ILD chunk: bounds memory and keeps the chunk cache-resident.
_ILD_CHUNK_ELEMENTS = 1 << 19


def _readonly(array: npt.ArrayLike, dtype: npt.DTypeLike) -> Any:
    out = np.array(array, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


def _binary_csr(matrix: Any) -> sp.csr_array:
    """Canonical CSR copy (sorted, no duplicates, no stored zeros) with all values 1."""
    csr = sp.csr_array(matrix, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.sort_indices()
    csr.data = np.ones(csr.data.shape[0], dtype=np.float64)
    return csr


@dataclass(frozen=True)
class CatalogStats:
    """Train-side context of the beyond-accuracy metrics.

    item_popularity[i] is pop(i), the number of distinct train users who interacted with item i;
    n_train_users is U, the users with at least one train interaction; item_categories is an
    optional binary items x categories matrix (needed for ILD only).
    """

    item_popularity: I64
    n_train_users: int
    n_items: int
    item_categories: sp.csr_array | None = None

    def __post_init__(self) -> None:
        pop = _readonly(self.item_popularity, np.int64)
        if pop.shape != (self.n_items,):
            raise ValueError(f"item_popularity has shape {pop.shape}, expected ({self.n_items},)")
        if self.n_items < 1:
            raise ValueError("the catalog needs at least one item")
        if self.n_train_users < 1:
            raise ValueError("novelty needs n_train_users >= 1")
        # pop counts distinct train users, so it lies in [0, U]; anything else is a wrong input
        # (e.g. interaction counts) that would turn novelty negative.
        if pop.min() < 0 or pop.max() > self.n_train_users:
            raise ValueError(f"item_popularity must lie in [0, n_train_users={self.n_train_users}]")
        object.__setattr__(self, "item_popularity", pop)
        if self.item_categories is not None:
            cats = _binary_csr(self.item_categories)
            if cats.shape[0] != self.n_items:
                raise ValueError(f"item_categories has {cats.shape[0]} rows, not {self.n_items}")
            object.__setattr__(self, "item_categories", cats)

    @classmethod
    def from_train(cls, train: Any, item_categories: Any = None) -> CatalogStats:
        """Stats from a users x items train matrix (nonzero = interaction)."""
        binary = _binary_csr(train)
        return cls(
            item_popularity=np.bincount(binary.indices, minlength=binary.shape[1]),
            n_train_users=int(np.count_nonzero(np.diff(binary.indptr))),
            n_items=int(binary.shape[1]),
            item_categories=item_categories,
        )


def longtail_items(item_popularity: npt.ArrayLike, share: float = 0.2) -> BoolArray:
    """Long-tail mask: all but the ceil(share * n_items) most popular items (ties: lower idx)."""
    pop = np.asarray(item_popularity)
    if pop.ndim != 1:
        raise ValueError("item_popularity must be 1-d")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    n_head = math.ceil(share * pop.shape[0])
    head = np.argsort(-pop.astype(np.int64), kind="stable")[:n_head]
    mask = np.ones(pop.shape[0], dtype=np.bool_)
    mask[head] = False
    return mask


@dataclass(frozen=True)
class MetricResult:
    """Per-user metric arrays (rows aligned with the evaluated users) and their summary."""

    k: int
    n_items: int
    top: I64  # (n_users, k) evaluated lists, PAD_IDX-padded; for coverage
    ndcg: F64
    recall: F64
    precision: F64
    map: F64
    mrr: F64
    hit: F64
    novelty: F64
    arp: F64
    ild: F64 | None
    n_hits: I64
    n_longtail_hits: I64
    calibration_kl: F64 | None = None  # with categories and the users' histories only

    @property
    def n_users(self) -> int:
        return int(self.top.shape[0])

    def per_user(self) -> dict[str, F64]:
        """Every per-user metric by name (ndcg, recall, ..., arp[, ild])."""
        names = ACCURACY_METRICS + LIST_METRICS
        out: dict[str, F64] = {name: getattr(self, name) for name in names}
        if self.ild is not None:
            out["ild"] = self.ild
        if self.calibration_kl is not None:
            out["calibration_kl"] = self.calibration_kl
        return out

    def subset(self, users: npt.ArrayLike) -> MetricResult:
        """The result restricted to some users (a boolean mask or row positions)."""
        sel = np.asarray(users)
        changes = {
            f.name: _readonly(getattr(self, f.name)[sel], getattr(self, f.name).dtype)
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }
        return replace(self, **changes)

    def coverage(self) -> float:
        """Distinct items in all lists / catalog size (NaN for no users)."""
        if self.n_users == 0:
            return math.nan
        seen = np.zeros(self.n_items, dtype=np.bool_)
        seen[self.top[self.top != PAD_IDX]] = True
        return int(seen.sum()) / self.n_items

    def summary(self) -> dict[str, float]:
        """Macro-averages over users (NaN-skipping for novelty, ARP, ILD), plus coverage."""
        k = self.k
        values = self.per_user()
        out = {f"{name}@{k}": _nanmean(values[name]) for name in ACCURACY_METRICS}
        out[f"coverage@{k}"] = self.coverage()
        out[f"gini@{k}"] = exposure_gini(self.top, self.n_items) if self.n_users else math.nan
        out.update({f"{name}@{k}": _nanmean(values[name]) for name in LIST_METRICS})
        for name in ("ild", "calibration_kl"):
            if name in values:
                out[f"{name}@{k}"] = _nanmean(values[name])
        return out


def _nanmean(values: F64) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def compute_metrics(
    recs: npt.ArrayLike,
    truth: Any,
    k: int,
    stats: CatalogStats,
    *,
    longtail_share: float = 0.2,
    history: Any = None,
) -> MetricResult:
    """All protocol metrics at k for `recs` (n_users, K >= k) against binary `truth` (CSR).

    history: users x items train matrix aligned with the rows of recs; with item categories it
    adds each user's calibration KL (category mix of the list vs of the history)."""
    top = _validated_top(recs, k, stats.n_items)
    rel_csr = _validated_truth(truth, top.shape[0], stats.n_items)
    rel = _relevance(top, rel_csr)
    valid = top != PAD_IDX
    safe = np.where(valid, top, 0)
    acc = _accuracy(rel, np.diff(rel_csr.indptr).astype(np.int64), k)
    pop = stats.item_popularity.astype(np.float64)
    novelty_of_item = -np.log2(np.maximum(pop, 1.0) / stats.n_train_users)
    tail = longtail_items(stats.item_popularity, longtail_share)
    cats = stats.item_categories
    return MetricResult(
        k=k,
        n_items=stats.n_items,
        top=_readonly(top, np.int64),
        **{name: _readonly(values, np.float64) for name, values in acc.items()},
        novelty=_readonly(_list_mean(novelty_of_item[safe], valid), np.float64),
        arp=_readonly(_list_mean(pop[safe], valid), np.float64),
        ild=None if cats is None else _readonly(_ild(safe, valid, cats), np.float64),
        n_hits=_readonly(rel.sum(axis=1), np.int64),
        n_longtail_hits=_readonly((rel & tail[safe]).sum(axis=1), np.int64),
        calibration_kl=None
        if cats is None or history is None
        else _readonly(
            calibration_kl(safe, valid, _history(history, top.shape[0]), cats), np.float64
        ),
    )


def _history(history: Any, n_users: int) -> sp.csr_array:
    csr = sp.csr_array(history)
    if csr.shape[0] != n_users:
        raise ValueError(f"history has {csr.shape[0]} rows for {n_users} lists")
    return csr


def _validated_top(recs: npt.ArrayLike, k: int, n_items: int) -> I64:
    arr = np.asarray(recs)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"recs must be a 2-d integer array, got {arr.dtype} {arr.shape}")
    if k < 1 or arr.shape[1] < k:
        raise ValueError(f"k must be in [1, {arr.shape[1]}] (the columns of recs), got {k}")
    top = arr[:, :k].astype(np.int64)
    if ((top < PAD_IDX) | (top >= n_items)).any():
        raise ValueError(f"recs holds idx outside [0, {n_items}) other than PAD_IDX")
    valid = top != PAD_IDX
    if (valid[:, 1:] & ~valid[:, :-1]).any():
        raise ValueError("recs rows must hold their PAD_IDX padding after every item")
    ordered = np.sort(top, axis=1)
    if ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != PAD_IDX)).any():
        raise ValueError("a recs row lists an item twice in its first k columns")
    return top


def _validated_truth(truth: Any, n_users: int, n_items: int) -> sp.csr_array:
    csr = _binary_csr(truth)
    if csr.shape != (n_users, n_items):
        raise ValueError(f"truth has shape {csr.shape}, expected ({n_users}, {n_items})")
    empty = np.flatnonzero(np.diff(csr.indptr) == 0)
    if empty.size:
        raise ValueError(f"{empty.size} users have no relevant items (first: row {empty[0]})")
    return csr


def _relevance(top: I64, truth: sp.csr_array) -> BoolArray:
    """rel[u, i]: top[u, i] is in u's truth; one searchsorted over (row, item) int64 keys."""
    n_users, n_items = truth.shape
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(truth.indptr))
    keys = rows * n_items + truth.indices  # sorted: canonical CSR is row-major, sorted columns
    if keys.size == 0:
        return np.zeros(top.shape, dtype=np.bool_)
    query = np.arange(n_users, dtype=np.int64)[:, None] * n_items + top
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    # A pad's key would alias the previous row's last item, hence the explicit mask.
    rel: BoolArray = (keys[pos] == query) & (top != PAD_IDX)
    return rel


def _accuracy(rel: BoolArray, n_rel: I64, k: int) -> dict[str, F64]:
    relf = rel.astype(np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    n_ideal = np.minimum(n_rel, k)
    hits = relf.sum(axis=1)
    first_hit = rel.argmax(axis=1)
    return {
        "ndcg": (relf @ discount) / np.cumsum(discount)[n_ideal - 1],
        "recall": hits / n_rel,
        "precision": hits / k,
        "map": (np.cumsum(relf, axis=1) / ranks * relf).sum(axis=1) / n_ideal,
        "mrr": np.where(hits > 0, 1.0 / (first_hit + 1.0), 0.0),
        "hit": (hits > 0).astype(np.float64),
    }


def _list_mean(values: F64, valid: BoolArray) -> F64:
    n = valid.sum(axis=1)
    total = np.where(valid, values, 0.0).sum(axis=1)
    return np.where(n > 0, total / np.maximum(n, 1), math.nan)


def _ild(
    safe: I64, valid: BoolArray, cats: sp.csr_array, bitset_max: int = _BITSET_MAX_CATEGORIES
) -> F64:
    """Mean over item pairs of 1 - Jaccard; NaN for lists with fewer than 2 items."""
    n_users, k = safe.shape
    n_list = valid.sum(axis=1)
    n_pairs = n_list * (n_list - 1) // 2
    totals = np.zeros(n_users, dtype=np.float64)
    first, second = (idx.astype(np.int64) for idx in np.triu_indices(k, 1))
    n_words = 1
    if cats.shape[1] <= bitset_max:
        intersect = _bitset_intersections(cats)
        n_words = max(1, -(-cats.shape[1] // 64))
    else:
        intersect = _sparse_intersections(cats)
    sizes = np.diff(cats.indptr).astype(np.int64)
    chunk = max(1, _ILD_CHUNK_ELEMENTS // max(1, first.size * n_words))
    for start in range(0, n_users if first.size else 0, chunk):
        s, v = safe[start : start + chunk], valid[start : start + chunk]
        inter = intersect(s, v, first, second)
        union = sizes[s][:, first] + sizes[s][:, second] - inter
        jaccard = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
        # Padding trails, so a pair is real exactly when its second position is.
        totals[start : start + chunk] = ((1.0 - jaccard) * v[:, second]).sum(axis=1)
    return np.where(n_pairs > 0, totals / np.maximum(n_pairs, 1), math.nan)


def _bitset_intersections(cats: sp.csr_array) -> _PairIntersections:
    """Intersections by popcount of AND over each item's category bitset."""
    n_words = max(1, -(-cats.shape[1] // 64))
    rows = np.repeat(np.arange(cats.shape[0], dtype=np.int64), np.diff(cats.indptr))
    col = cats.indices.astype(np.uint64)
    bits = np.zeros(cats.shape[0] * n_words, dtype=np.uint64)
    # Each (item, category) appears once, so adding the bits equals OR-ing them.
    np.add.at(bits, rows * n_words + (col // 64).astype(np.int64), np.uint64(1) << (col % 64))
    table = bits.reshape(cats.shape[0], n_words)

    def intersect(safe: I64, valid: BoolArray, first: I64, second: I64) -> I64:
        words = table[safe]
        common = np.bitwise_count(words[:, first] & words[:, second])
        counts: I64 = common.sum(axis=-1, dtype=np.int64)
        return counts

    return intersect


def _sparse_intersections(cats: sp.csr_array) -> _PairIntersections:
    """Intersections from a block-diagonal sparse Gram matrix (one block per user)."""
    n_cats = int(cats.shape[1])

    def intersect(safe: I64, valid: BoolArray, first: I64, second: I64) -> I64:
        n, k = safe.shape
        pos = np.flatnonzero(valid.ravel())
        sub = sp.csr_array(cats[safe.ravel()[pos]])
        row = np.repeat(pos, np.diff(sub.indptr))
        # A column per (user, category) keeps users' items from meeting in the product; only the
        # pairs present get a column, so the width is bounded by the entries, not n * n_cats.
        keys, col = np.unique((row // k) * n_cats + sub.indices, return_inverse=True)
        ones = np.ones(row.size, dtype=np.float64)
        member = sp.csr_array((ones, (row, col.ravel())), shape=(n * k, keys.size))
        gram = sp.coo_array(member @ member.T)
        dense = np.zeros((n, k, k), dtype=np.int64)
        dense[gram.row // k, gram.row % k, gram.col % k] = np.rint(gram.data).astype(np.int64)
        return dense[:, first, second]

    return intersect

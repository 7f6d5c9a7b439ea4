"""Co-visitation: "after X, users went to Y", scored from each user's most recent items.

Fit counts, in every user's time-ordered history, the transitions from each event to the events of
the next `window` time steps. Events with one timestamp are one step and unordered (simultaneous),
so no directed transition is read between them; `simultaneous_weight` may count them as an
undirected co-occurrence instead. A transition d steps later weighs 1 / d^power. The counts are
normalised by source and target totals and each item keeps its top `neighbors` successors.
A user's score is their recency-weighted profile (the session signal) times that matrix.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field

from recsemble.data.dataset import Dataset
from recsemble.generators.base import CandidateGenerator
from recsemble.generators.config import GeneratorConfig, RecencyConfig
from recsemble.generators.history import Histories, profile_matrix
from recsemble.generators.topk import topk_rows
from recsemble.types import TopK

Arrays = dict[str, npt.NDArray[Any]]


class CoVisitConfig(RecencyConfig):
    half_life_events: float | None = Field(2.0, gt=0)  # the last few items carry the session
    window: int = Field(20, ge=1, le=1000)  # later time steps that count as "went to"
    power: float = Field(0.5, ge=0)  # a transition d steps later weighs 1 / d^power
    directed: bool = True  # False: Y after X also counts as X after Y (backward_weight)
    backward_weight: float = Field(1.0, ge=0)  # weight of the reverse direction when undirected
    simultaneous_weight: float = Field(0.5, ge=0)  # undirected weight of same-timestamp pairs
    source_norm: float = Field(0.5, ge=0, le=1)  # divide row X by its total ^ this (1: P(Y|X))
    target_norm: float = Field(0.15, ge=0, le=1)  # divide column Y by its total ^ this
    neighbors: int = Field(200, ge=1)  # successors kept per item


def _step_groups(
    histories: Histories,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Time steps (runs of one user's events with one timestamp): start, size and user."""
    rows = histories.row_of_event
    n = rows.size
    new = np.ones(n, dtype=bool)
    new[1:] = (rows[1:] != rows[:-1]) | (histories.timestamps[1:] != histories.timestamps[:-1])
    starts = np.flatnonzero(new).astype(np.int64)
    sizes = np.diff(np.append(starts, n)).astype(np.int64)
    return starts, sizes, rows[starts]


def _cross_pairs(
    src_start: npt.NDArray[np.int64],
    src_size: npt.NDArray[np.int64],
    dst_start: npt.NDArray[np.int64],
    dst_size: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Event positions of every (a, b) with a in a source step and b in its paired step."""
    counts = src_size * dst_size
    total = int(counts.sum())
    pair = np.repeat(np.arange(counts.size), counts)
    offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    width = dst_size[pair]
    return src_start[pair] + offset // width, dst_start[pair] + offset % width


#: Events whose transitions are listed at once (pairs ~ events x window): blocks of users of
#: about this many events are counted one after the other and their sums added up.
BLOCK_EVENTS = 2_000_000


def transition_counts(
    histories: Histories, window: int, power: float, simultaneous_weight: float = 0.0
) -> sp.csr_array:
    """items x items: summed 1 / d^power over transitions X -> Y that are d steps apart.

    A transition never crosses users, so blocks of users are counted separately and added:
    memory holds one block's pairs (and the sums), not every pair of a large log at once.
    """
    total: sp.csr_array | None = None
    for block in _user_blocks(histories, BLOCK_EVENTS):
        counts = _block_counts(block, window, power, simultaneous_weight)
        total = counts if total is None else sp.csr_array(total + counts)
    assert total is not None
    return total


def _user_blocks(histories: Histories, events: int) -> list[Histories]:
    """Consecutive rows of `histories` holding about `events` events each (one at least)."""
    indptr = histories.indptr
    if indptr[-1] <= events:
        return [histories]
    out, lo, n_rows = [], 0, indptr.size - 1
    while lo < n_rows:
        hi = max(lo + 1, int(np.searchsorted(indptr, indptr[lo] + events, side="right")) - 1)
        hi = min(hi, n_rows)
        a, b = indptr[lo], indptr[hi]
        out.append(
            Histories(
                indptr[lo : hi + 1] - a,
                histories.items[a:b],
                histories.timestamps[a:b],
                histories.weights[a:b],
                histories.n_items,
            )
        )
        lo = hi
    return out


def _block_counts(
    histories: Histories, window: int, power: float, simultaneous_weight: float
) -> sp.csr_array:
    """transition_counts of one block of users. Loops only over d = 1..window; each d pairs
    every step with the step d later (same user)."""
    n = histories.n_items
    starts, sizes, users = _step_groups(histories)
    nothing = np.zeros(0, dtype=np.int64)
    srcs, dsts, weights = [nothing], [nothing], [np.zeros(0)]
    for d in range(1, window + 1):
        same_user = np.flatnonzero(users[:-d] == users[d:]) if users.size > d else np.array([], int)
        if same_user.size == 0:
            break  # no user has d + 1 steps, so none has more
        a, b = _cross_pairs(
            starts[same_user], sizes[same_user], starts[same_user + d], sizes[same_user + d]
        )
        srcs.append(a)
        dsts.append(b)
        weights.append(np.full(a.size, 1.0 / d**power))
    if simultaneous_weight > 0:
        multi = np.flatnonzero(sizes > 1)
        a, b = _cross_pairs(starts[multi], sizes[multi], starts[multi], sizes[multi])
        srcs.append(a)
        dsts.append(b)
        weights.append(np.full(a.size, simultaneous_weight))
    src = histories.items[np.concatenate(srcs)]
    dst = histories.items[np.concatenate(dsts)]
    w = np.concatenate(weights)
    keep = src != dst  # revisits of one item say nothing about where users go next
    counts = sp.coo_array((w[keep], (src[keep], dst[keep])), shape=(n, n)).tocsr()
    counts.sum_duplicates()
    return counts


def _scale(values: npt.NDArray[np.float64], exponent: float) -> npt.NDArray[np.float64]:
    """1 / values^exponent, 0 where values is 0."""
    out = np.zeros_like(values)
    pos = values > 0
    out[pos] = values[pos] ** -exponent
    return out


def normalize_counts(counts: sp.csr_array, source_norm: float, target_norm: float) -> sp.csr_array:
    """T[x, y] / (row total x)^source_norm / (column total y)^target_norm."""
    mat = counts.astype(np.float64)  # a copy: the caller's counts stay as they were
    row_scale = _scale(np.asarray(mat.sum(axis=1), dtype=np.float64).ravel(), source_norm)
    col_scale = _scale(np.asarray(mat.sum(axis=0), dtype=np.float64).ravel(), target_norm)
    rows = np.repeat(np.arange(mat.shape[0]), np.diff(mat.indptr))
    mat.data *= row_scale[rows] * col_scale[mat.indices]
    return mat


def keep_top_per_row(mat: sp.csr_array, k: int) -> sp.csr_array:
    """The k largest entries of each row (ties: lower column), as float32 CSR."""
    mat = sp.csr_array(mat, copy=True)
    mat.eliminate_zeros()
    mat.sort_indices()  # the stable sort below then breaks ties by lower column
    rows = np.repeat(np.arange(mat.shape[0]), np.diff(mat.indptr))
    order = np.lexsort((-mat.data, rows))
    rank = np.arange(order.size) - mat.indptr[rows[order]]
    take = np.sort(order[rank < k])  # back in CSR order (rows, then columns)
    out = sp.csr_array(
        (mat.data[take].astype(np.float32), (rows[take], mat.indices[take])), shape=mat.shape
    )
    out.sort_indices()
    return out


class CoVisitation(CandidateGenerator):
    """Items that users went to right after the user's most recent items.

    Only items reached from the user's history are candidates (others score -inf), so a user
    with an empty history gets an empty list.
    """

    name: ClassVar[str] = "covisit"
    Config: ClassVar[type[GeneratorConfig]] = CoVisitConfig
    config: CoVisitConfig
    history_only_scores: ClassVar[bool] = True

    def _fit(self, dataset: Dataset) -> None:
        cfg = self.config
        counts = transition_counts(
            Histories.from_dataset(dataset), cfg.window, cfg.power, cfg.simultaneous_weight
        )
        if not cfg.directed and cfg.backward_weight > 0:
            counts = sp.csr_array(counts + cfg.backward_weight * counts.T)
        normalized = normalize_counts(counts, cfg.source_norm, cfg.target_norm)
        self.transitions_ = keep_top_per_row(normalized, cfg.neighbors)

    def _state(self) -> Arrays:
        t = self.transitions_
        return {"data": t.data, "indices": t.indices, "indptr": t.indptr}

    def _set_state(self, state: Arrays) -> None:
        n = self.n_items_
        self.transitions_ = sp.csr_array(
            (state["data"], state["indices"], state["indptr"]), shape=(n, n)
        )

    def _score_block(
        self, users: npt.NDArray[np.int32], at: npt.NDArray[np.int64], histories: Histories
    ) -> npt.NDArray[np.float32]:
        profile = profile_matrix(histories, self.config, at).astype(np.float32)
        scores: npt.NDArray[np.float32] = (profile @ self.transitions_).toarray()
        scores = scores.astype(np.float32, copy=False)
        scores[scores <= 0] = -np.inf  # not reached from the history: no evidence
        return scores

    def similar_items(self, items: npt.ArrayLike, k: int) -> TopK:
        """The items users went to most after each given item."""
        rows = self.transitions_[self._similar_request(items, k)].toarray()
        rows = rows.astype(np.float32)
        rows[rows <= 0] = -np.inf
        return TopK(*topk_rows(rows, k))

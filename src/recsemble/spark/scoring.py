"""Batch scoring without Spark: the lists the API would answer, for many users at once.

`BatchScorer` wraps the server's own Recommender (recsemble.pipeline) loaded from a saved
model folder, so a batch list is exactly what `GET /users/{id}/recommendations?explain=true`
answers for that user with the same history and the same [rerank] config: members ->
meta-ranker -> re-ranking stages -> explanations. The expensive part, the model's candidate
pool, is computed for a whole block of users in one call (`ServingModel.top`); what is left
per user is the request path's filtering, stages and explanation.

Histories come from the input, not from the model: a user whose input history equals the
fitted one is scored from the fitted state (the warm pool the server holds); a user whose
history differs (newer events) is scored with it folded in, as the server's pool refresh
does. Users the model does not know are left out (the server answers them online).

spark/batch.py runs this per partition of users; the local engine runs it in this process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from recsemble.config import RecsembleConfig
from recsemble.generators.history import Histories
from recsemble.pipeline import Answer, Explanation, Recommender, RequestOptions
from recsemble.recommender.model import Pool
from recsemble.spark.explanations import Request, explain_block

#: The batch table: one row per (user, rank); history_* is the marker of the history the list
#: was computed from (its number of events and latest timestamp), which the server compares
#: with what it holds for the user before it serves the list, as it compares `rerank` (the
#: stages and settings the lists were re-ranked with) with its own.
SCHEMA = pa.schema(
    [
        ("user", pa.string()),
        ("rank", pa.int32()),
        ("item", pa.string()),
        ("score", pa.float64()),
        ("explanation", pa.string()),
        ("history_events", pa.int64()),
        ("history_latest", pa.int64()),
        ("rerank", pa.string()),
    ]
)
#: Users per model call: bounds the memory of one call (as ServingModel.warm's batches do).
BLOCK_USERS = 1_024

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class UserEvents:
    """Some users' events with external ids; user r's are indptr[r]:indptr[r+1]."""

    user_ids: npt.NDArray[np.object_]
    indptr: I64
    item_ids: npt.NDArray[np.object_]
    timestamps: I64
    weights: npt.NDArray[np.float32]

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> UserEvents:
        """From user_id, item_id, timestamp, weight rows (any order), users in id order."""
        ordered = frame.select("user_id", "item_id", "timestamp", "weight").sort(
            "user_id", "timestamp", "item_id"
        )
        users = ordered["user_id"].cast(pl.String)
        runs = users.rle()
        lengths = runs.struct.field("len").to_numpy().astype(np.int64)
        return cls(
            runs.struct.field("value").to_numpy().astype(object),
            np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
            ordered["item_id"].cast(pl.String).to_numpy().astype(object),
            ordered["timestamp"].to_numpy().astype(np.int64),
            ordered["weight"].to_numpy().astype(np.float32),
        )

    def __len__(self) -> int:
        return int(self.user_ids.size)

    def rows(self, lo: int, hi: int) -> UserEvents:
        a, b = int(self.indptr[lo]), int(self.indptr[hi])
        return UserEvents(
            self.user_ids[lo:hi],
            self.indptr[lo : hi + 1] - a,
            self.item_ids[a:b],
            self.timestamps[a:b],
            self.weights[a:b],
        )


@dataclass(frozen=True)
class ScoringHistories:
    """The known users of a block, their histories on model items, and which equal the fitted."""

    rows: I64  # positions in the block (users the model knows)
    users: npt.NDArray[np.int32]  # their model idx
    histories: Histories  # one row per known user
    unchanged: npt.NDArray[np.bool_]  # the row equals the fitted history


class BatchScorer:
    """A saved model and the server's request path, scoring blocks of users (see the module
    docstring). `at`: the moment the re-ranking stages see (epoch seconds), fixed so that every
    partition of a batch sees the same one."""

    def __init__(
        self,
        folder: Path,
        *,
        k: int,
        at: int,
        config: RecsembleConfig | None = None,
        block_users: int = BLOCK_USERS,
        explain: bool = True,
    ) -> None:
        self.recommender = Recommender.load(folder, config=config)
        # Explanations are computed for the whole block afterwards (spark/explanations.py).
        self.options = RequestOptions(k=k, explain=False, at=at)
        self.explain = explain
        self.block_users = block_users

    def score(
        self, events: UserEvents, on_progress: Callable[[int, int], None] | None = None
    ) -> pa.Table:
        """The lists of every known user of `events`, as a SCHEMA table in their order;
        on_progress(users done, users) after each block."""
        parts = []
        for lo in range(0, len(events), self.block_users):
            hi = min(len(events), lo + self.block_users)
            parts.append(self._score_block(events.rows(lo, hi)))
            if on_progress is not None:
                on_progress(hi, len(events))
        return pa.concat_tables(parts) if parts else SCHEMA.empty_table()

    def _score_block(self, events: UserEvents) -> pa.Table:
        found = self.histories(events)
        pools = self._pools(found)
        rec = self.recommender
        requests = []
        for j, row in enumerate(found.rows.tolist()):
            user_id = str(events.user_ids[row])
            rec.refreshed[user_id] = pools[j]  # the pool the request path reads first
            try:
                answer = rec.recommend(user_id, self.options)
            finally:
                rec.refreshed.pop(user_id, None)
            items = [rec.items.ids.idx_of(r.item_id) for r in answer.items]
            requests.append(Request(int(found.users[j]), pools[j], answer, items))
        answers = explain_block(rec, requests) if self.explain else [r.answer for r in requests]
        columns: dict[str, list[object]] = {name: [] for name in SCHEMA.names}
        lengths = found.histories.lengths
        for j, answer in enumerate(answers):
            _append(columns, str(events.user_ids[found.rows[j]]), answer, lengths[j], found, j)
        columns["rerank"] = [rec.stages.signature] * len(columns["user"])
        return pa.table(columns, schema=SCHEMA)

    def histories(self, events: UserEvents) -> ScoringHistories:
        """The block's known users and their input histories on model items, in time order."""
        rec = self.recommender
        user_idx = rec.users.to_idx(events.user_ids, missing="ignore")
        rows = np.flatnonzero(user_idx >= 0).astype(np.int64)
        item_idx = rec.items.ids.to_idx(events.item_ids, missing="ignore")
        owner = np.repeat(np.arange(len(events)), np.diff(events.indptr))
        keep = (item_idx >= 0) & (user_idx[owner] >= 0)
        position = np.full(len(events), -1, np.int64)
        position[rows] = np.arange(rows.size)
        row_of = position[owner[keep]]
        items, times = item_idx[keep], events.timestamps[keep]
        order = np.lexsort((items, times, row_of))
        counts = np.bincount(row_of, minlength=rows.size)
        histories = Histories(
            np.concatenate(([0], np.cumsum(counts))).astype(np.int64),
            items[order],
            times[order],
            events.weights[keep][order],
            rec.serving.n_items,
        )
        users = user_idx[rows].astype(np.int32)
        unchanged = _equal_rows(histories, rec.serving.histories.rows(users))
        return ScoringHistories(rows, users, histories, unchanged)

    def _pools(self, found: ScoringHistories) -> list[Pool]:
        """Each known user's pool: the fitted state's where the history is unchanged (what
        the server warmed), else computed with the input history folded in."""
        serving = self.recommender.serving
        pools: list[Pool | None] = [None] * found.rows.size
        for unchanged in (True, False):
            at = np.flatnonzero(found.unchanged == unchanged)
            if at.size == 0:
                continue
            block = None if unchanged else found.histories.rows(at)
            top = serving.top(found.users[at], block)
            for r, j in enumerate(at.tolist()):
                row = top.row(r)
                own = None if block is None else block.rows([r])
                pools[j] = Pool(row.items, row.scores, 0, own)
        return [pool for pool in pools if pool is not None]


def _equal_rows(a: Histories, b: Histories) -> npt.NDArray[np.bool_]:
    """Per row: the same events (items, timestamps, weights) in both."""
    same: npt.NDArray[np.bool_] = a.lengths == b.lengths
    rows = np.flatnonzero(same)
    if rows.size == 0:
        return same
    left, right = a.rows(rows), b.rows(rows)  # equal lengths: the events line up
    differ = (
        (left.items != right.items)
        | (left.timestamps != right.timestamps)
        | (left.weights != right.weights)
    )
    owner = np.repeat(np.arange(rows.size), left.lengths)
    same[rows] = np.bincount(owner, weights=differ, minlength=rows.size) == 0
    return same


def _append(
    columns: dict[str, list[object]],
    user_id: str,
    answer: Answer,
    n_events: int,
    found: ScoringHistories,
    j: int,
) -> None:
    """The answer's rows, marked with the history (row j of `found`) it was computed from."""
    hi = int(found.histories.indptr[j + 1])
    latest = int(found.histories.timestamps[hi - 1]) if n_events else 0
    for rank, rec in enumerate(answer.items, start=1):
        columns["user"].append(user_id)
        columns["rank"].append(rank)
        columns["item"].append(rec.item_id)
        columns["score"].append(float(rec.score))
        columns["explanation"].append(explanation_json(rec.explanation))
        columns["history_events"].append(int(n_events))
        columns["history_latest"].append(latest)


def explanation_json(explanation: Explanation | None) -> str | None:
    """The API's explanation object (members, because, text) as compact JSON."""
    if explanation is None:
        return None
    return json.dumps(
        {
            "members": {label: float(value) for label, value in explanation.members.items()},
            "because": [[item, float(weight)] for item, weight in explanation.because],
            "text": explanation.text,
        },
        separators=(",", ":"),
    )

"""Read-only views of what a served Recommender knows about its users, for the dashboard: the
users it can answer for, one user's history (fitted and live events) and what each ensemble
member alone would recommend to that user now.

Everything reads the same immutable snapshots the request path reads (the fitted histories,
each user's live snapshot), so these views never lock and never see half an update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from recsemble.generators.history import Histories
from recsemble.recommender.model import ranked
from recsemble.recommender.requests import Recommendation, check_k
from recsemble.recommender.users import LiveUser

if TYPE_CHECKING:
    from recsemble.pipeline import Recommender

I32 = npt.NDArray[np.int32]


@dataclass(frozen=True)
class UserSummary:
    user_id: str
    history_length: int  # fitted events + live events on model items
    live_events: int


@dataclass(frozen=True)
class HistoryEvent:
    item_id: str
    title: str | None
    type: str | None  # None: a fitted event whose weight several event types share
    timestamp: int
    weight: float
    live: bool  # arrived after training (from the store), not part of the fitted history


@dataclass(frozen=True)
class MemberList:
    label: str
    generator: str
    items: list[Recommendation]


def list_users(rec: Recommender, prefix: str, limit: int) -> tuple[int, list[UserSummary]]:
    """(how many users match, the first `limit` of them): the model's users whose id starts
    with `prefix`, in the model's order, then users known only from live events, by id."""
    ids = rec.users.as_series()
    mask = ids.str.starts_with(prefix).to_numpy() if prefix else np.ones(len(ids), np.bool_)
    fitted = np.flatnonzero(mask)
    live_users = dict(rec.live.users)  # one snapshot: observe() may add users meanwhile
    live_only = sorted(u for u in live_users if u.startswith(prefix) and u not in rec.users)
    lengths = rec.serving.histories.lengths
    out = []
    for idx in fitted[:limit].tolist():
        user_id = rec.users.id_of(idx)
        live = _live_count(live_users.get(user_id))
        fitted_length = int(lengths[idx]) if idx < lengths.size else 0
        out.append(UserSummary(user_id, fitted_length + live, live))
    for user_id in live_only[: max(0, limit - len(out))]:
        live = _live_count(live_users.get(user_id))
        out.append(UserSummary(user_id, live, live))
    return int(fitted.size) + len(live_only), out


def _live_count(live: LiveUser | None) -> int:
    return 0 if live is None else int(live.items.size)


def _known_user(rec: Recommender, user_id: str) -> tuple[int, LiveUser | None]:
    """(user idx or -1, live snapshot); KeyError for a user neither fitted nor seen live."""
    user = rec.users.idx_of(user_id) if user_id in rec.users else -1
    live = rec.live.get(user_id)
    if user < 0 and live is None:
        raise KeyError(f"unknown user {user_id!r}")
    return user, live


def fitted_event_types(event_weights: Mapping[str, float]) -> dict[float, str]:
    """Weight -> event type, for the weights exactly one type has: the fitted histories keep
    each event's weight, not its type, so a weight two types share names neither."""
    by_weight: dict[float, list[str]] = {}
    for event_type, weight in event_weights.items():
        by_weight.setdefault(float(np.float32(weight)), []).append(event_type)
    return {weight: types[0] for weight, types in by_weight.items() if len(types) == 1}


def user_history(rec: Recommender, user_id: str, limit: int) -> tuple[int, list[HistoryEvent]]:
    """(how many events the user has, the `limit` latest, newest first). Unknown: KeyError."""
    user, live = _known_user(rec, user_id)
    histories = rec.serving.histories
    lo = hi = 0
    if 0 <= user < histories.n_rows:
        lo, hi = int(histories.indptr[user]), int(histories.indptr[user + 1])
    types = fitted_event_types(rec.stages.dataset.event_weights)
    fitted_weights = histories.weights[lo:hi].astype(np.float32).tolist()
    rows = [
        (int(t), int(i), types.get(w), w, False)
        for i, t, w in zip(
            histories.items[lo:hi].tolist(),
            histories.timestamps[lo:hi].tolist(),
            fitted_weights,
            strict=True,
        )
    ]
    if live is not None:
        rows += [
            (int(t), int(i), kind, float(w), True)
            for i, t, w, kind in zip(
                live.items.tolist(), live.times.tolist(), live.weights.tolist(), live.types,
                strict=True,
            )
        ]  # fmt: skip
    ids, titles = rec.items.ids, rec.items.titles
    shown = [(t, ids.id_of(item), titles[item], kind, w, is_live)
             for t, item, kind, w, is_live in rows]  # fmt: skip
    if live is not None:  # items the model does not know (added after training, or unknown)
        shown += [(t, item_id, rec.items.title(item_id), kind, w, True)
                  for item_id, t, w, kind in live.outside]  # fmt: skip
    # Newest first; at equal times a live event is the later one (it arrived after training).
    shown.sort(key=lambda row: (row[0], row[5]), reverse=True)
    return len(shown), [
        HistoryEvent(item_id, title, kind, t, w, is_live)
        for t, item_id, title, kind, w, is_live in shown[:limit]
    ]


def member_lists(rec: Recommender, user_id: str, k: int) -> list[MemberList]:
    """What each member alone would recommend to the user now: its scores over the catalog
    for the user's current history (fitted + live), with what any answer hides (the user's
    items, removed and unavailable ones) left out. A lone generator is its one member."""
    check_k(k)
    user, live = _known_user(rec, user_id)
    serving = rec.serving
    # As the ensemble does: members read their own fitted view unless live events changed it.
    histories: Histories | None = None
    if user < 0 or (live is not None and live.items.size):
        items, times, weights = _live_arrays(live)
        histories = serving.history(user, items, times, weights)
    hidden = rec.items.blocked.copy()
    hidden[serving.fitted_items(user)] = True
    if live is not None and live.seen.size:
        hidden[live.seen] = True
    users = np.array([user], np.int32)
    out = []
    for label, member in serving.members.items():
        row = member.score_catalog(users, exclude_seen=False, histories=histories)[0]
        row = row.astype(np.float32, copy=True)
        row[hidden[: row.size]] = -np.inf
        best = ranked(row, k)
        items_out = [
            Recommendation(rec.items.ids.id_of(idx), score, rec.items.titles[idx])
            for idx, score in zip(best.items.tolist(), best.scores.tolist(), strict=True)
        ]
        out.append(MemberList(label, member.name, items_out))
    return out


def _live_arrays(
    live: LiveUser | None,
) -> tuple[I32, npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    if live is None:
        return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return live.items, live.times, live.weights


def recommender_stats(rec: Recommender) -> dict[str, Any]:
    """Counters of the live state (users, pools, refreshes, requests, item changes)."""
    pools = rec.serving.pools
    return {
        "model_version": rec.version,
        "users": rec.serving.n_users,
        "warm_users": 0 if pools is None else int(pools.items.shape[0]),
        "live_users": len(rec.live.users),
        "events_observed": rec.live.events_observed,
        "refreshed_pools": len(rec.refreshed),
        "refresh_pending": len(rec.refresh.pending),
        "refresh_done": rec.refresh.done,
        "refresh_failed": rec.refresh.failed,
        "requests": rec.requests,
        "stages": list(rec.stages.default),
        "unusable_stages": dict(rec.stages.unusable),
        **rec.items.counts(),
    }

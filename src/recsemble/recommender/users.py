"""Live users: the events that arrived after training, user attributes, and the refresh queue.

Each user's live state is an immutable snapshot replaced whole under a lock, so a request reads
it without locking. Pools (the cached candidate lists the request path filters) are refreshed
with the new history folded in by one background thread, rate-limited and newest first, so a
burst of events never starves the readers of the CPU.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from recsemble.data.dataset import DEFAULT_EVENT
from recsemble.errors import ConfigError
from recsemble.store.base import Event, Record
from recsemble.types import ItemList

I32 = npt.NDArray[np.int32]
log = logging.getLogger(__name__)

#: Live events kept per user (the oldest drop out; their items stay seen).
MAX_LIVE_EVENTS = 500
#: Event ids remembered per user to ignore a redelivered event.
_REMEMBERED_EVENT_IDS = 1_000


def _empty_items() -> I32:
    return np.zeros(0, dtype=np.int32)


@dataclass(frozen=True)
class LiveUser:
    """A user's events since training (model items only in the arrays), oldest first."""

    items: I32 = field(default_factory=_empty_items)
    times: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    weights: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    types: tuple[str, ...] = ()
    seen: I32 = field(default_factory=_empty_items)  # model items the seen rule counts
    seen_new: frozenset[str] = frozenset()  # items the model does not know (new items)
    event_ids: tuple[str, ...] = ()
    version: int = 0  # number of events folded into this snapshot
    session: ItemList | None = None  # session signal from the latest items, best first
    session_version: int = -1  # the version `session` was computed for
    # Events of items the model does not know (item id, time, weight, type), for the history.
    outside: tuple[tuple[str, int, float, str], ...] = ()

    def with_events(
        self, events: Sequence[tuple[str, int | None, int, float, str, bool]]
    ) -> LiveUser:
        """A new snapshot with (event_id, idx or None, time, weight, type, counts as seen)."""
        known = set(self.event_ids)
        fresh = [e for e in events if e[0] not in known]
        if not fresh:
            return self
        model = [e for e in fresh if e[1] is not None]
        items = np.concatenate([self.items, np.array([e[1] for e in model], np.int32)])
        times = np.concatenate([self.times, np.array([e[2] for e in model], np.int64)])
        weights = np.concatenate([self.weights, np.array([e[3] for e in model], np.float32)])
        types = self.types + tuple(e[4] for e in model)
        order = np.argsort(times, kind="stable")[-MAX_LIVE_EVENTS:]
        seen_now = np.array([e[1] for e in model if e[5]], np.int32)
        return LiveUser(
            items=items[order],
            times=times[order],
            weights=weights[order],
            types=tuple(types[i] for i in order),
            seen=np.union1d(self.seen, seen_now).astype(np.int32),
            seen_new=self.seen_new,
            event_ids=(self.event_ids + tuple(e[0] for e in fresh))[-_REMEMBERED_EVENT_IDS:],
            version=self.version + len(fresh),
            session=self.session,
            session_version=self.session_version,
        )


class LiveUsers:
    """Every user's live snapshot and attributes, keyed by external user id."""

    def __init__(
        self,
        event_weights: Mapping[str, float],
        seen_types: Sequence[str] | None,
        attributes: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.event_weights = dict(event_weights)
        self.seen_types = None if seen_types is None else frozenset(seen_types)
        self.users: dict[str, LiveUser] = {}
        self.attributes: dict[str, Mapping[str, Any]] = dict(attributes or {})
        self.events_observed = 0
        self._lock = threading.Lock()

    def get(self, user_id: str) -> LiveUser | None:
        return self.users.get(user_id)

    def weight(self, event_type: str) -> float:
        """The event type's weight in the model's table (every type weighs 1 without a table)."""
        return float(self.event_weights.get(event_type, 1.0))

    def check_types(self, events: Sequence[Event]) -> None:
        """ConfigError (HTTP 409: valid, but not for this model) naming the event types the
        model's weight table lacks, as training from a file does: a misspelt "purchse" must
        not be stored as an event weighing 1."""
        if not self.event_weights:
            return
        unknown = sorted({e.type for e in events} - {*self.event_weights, DEFAULT_EVENT})
        if unknown:
            known = ", ".join(sorted(self.event_weights))
            raise ConfigError(
                f"event type(s) {unknown} have no weight in the served model's event_weights "
                f"({known}); add them to [data] event_weights and retrain to accept them"
            )

    def observe(self, events: Sequence[Event], to_idx: Callable[[str], int | None]) -> list[str]:
        """Fold the events into their users' snapshots; returns the users that changed."""
        by_user: dict[str, list[Event]] = {}
        for event in events:
            by_user.setdefault(event.user_id, []).append(event)
        changed = []
        now = int(time.time())
        with self._lock:
            for user_id, mine in by_user.items():
                before = self.users.get(user_id, LiveUser())
                after = self._fold(before, mine, to_idx, now)
                if after is not before:
                    self.users[user_id] = after
                    self.events_observed += after.version - before.version
                    changed.append(user_id)
        return changed

    def _fold(
        self, user: LiveUser, events: list[Event], to_idx: Callable[[str], int | None], now: int
    ) -> LiveUser:
        rows = []
        new_seen: set[str] = set()
        outside, known = list(user.outside), set(user.event_ids)
        for e in events:
            idx = to_idx(e.item_id)
            counts = self.seen_types is None or e.type in self.seen_types
            if idx is None and counts:
                new_seen.add(e.item_id)
            weight, when = self.weight(e.type), e.timestamp or now
            rows.append((e.event_id, idx, when, weight, e.type, counts))
            if idx is None and e.event_id not in known:
                outside.append((e.item_id, when, weight, e.type))
                known.add(e.event_id)
        after = user.with_events(rows)
        if after is user:
            return user
        outside.sort(key=lambda event: event[1])
        kept = tuple(outside[-MAX_LIVE_EVENTS:])
        return _replace(after, seen_new=user.seen_new | frozenset(new_seen), outside=kept)

    def set_session(self, user_id: str, version: int, session: ItemList | None) -> None:
        """Attach the session signal computed for snapshot `version` (dropped if outdated)."""
        with self._lock:
            user = self.users.get(user_id)
            if user is not None and user.version == version:
                self.users[user_id] = _replace(user, session=session, session_version=version)

    def upsert(self, records: Sequence[Record]) -> None:
        """New attributes per user; a deleted user has none, also none of those the model was
        trained with (an empty mapping, not a missing one, which would fall back to them)."""
        with self._lock:
            for record in records:
                self.attributes[record.id] = {} if record.deleted else dict(record.attributes)


def _replace(user: LiveUser, **changes: Any) -> LiveUser:
    values = {name: getattr(user, name) for name in LiveUser.__dataclass_fields__}
    return LiveUser(**{**values, **changes})


class RefreshQueue:
    """One worker thread recomputing users' pools, at most `rate`/s: newest request and
    oldest waiting in turn, so under a stream of writes beyond `rate` the latest activity is
    fresh quickly and no user waits longer than about twice the queue's length.

    `compute(user_id)` does the work; a user queued again before being served is served once.
    A bound method is held weakly: when its owner (a Recommender replaced by a hot swap) is
    dropped without close(), the worker notices within a second and stops.
    """

    def __init__(self, compute: Callable[[str], None], rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"refresh rate must be > 0 per second, got {rate}")
        self._compute: Callable[[], Callable[[str], None] | None] = (
            weakref.WeakMethod(compute) if inspect.ismethod(compute) else lambda: compute
        )
        self.interval = 1.0 / rate
        self.pending: OrderedDict[str, None] = OrderedDict()
        self.done = 0
        self.failed = 0
        self._wake = threading.Condition()
        self._closed = False
        self._newest = False  # which end the next pick takes (flipped before each pick)
        self._thread: threading.Thread | None = None

    def push(self, user_ids: Sequence[str]) -> None:
        with self._wake:
            if self._closed:
                return
            for user_id in user_ids:
                self.pending.pop(user_id, None)
                self.pending[user_id] = None  # newest at the end
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="recsemble-refresh", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _next(self) -> str | None:
        with self._wake:
            while not self.pending and not self._closed:
                if not self._wake.wait(timeout=1.0) and self._compute() is None:
                    return None  # the owner is gone: nothing left to refresh for
            if self._closed:
                return None
            self._newest = not self._newest  # newest first only: old users starved
            user_id, _ = self.pending.popitem(last=self._newest)
            return user_id

    def _run(self) -> None:
        while (user_id := self._next()) is not None:
            compute = self._compute()
            if compute is None:
                return
            start = time.monotonic()
            try:
                compute(user_id)
                self.done += 1
            except Exception:  # a failed refresh keeps the old pool; the server goes on
                self.failed += 1
                log.exception("refreshing the pool of user %r failed", user_id)
            del compute  # no strong reference to the owner while waiting
            rest = self.interval - (time.monotonic() - start)
            if rest > 0:
                with self._wake:
                    self._wake.wait_for(lambda: self._closed, timeout=rest)

    def close(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

"""What a running server holds: the store, the registry, the Recommender being served.

The served Recommender is replaced by assigning one attribute, so a request in flight keeps
the object it started with and the next one gets the new version: hot swaps fail no request.
A new version is loaded, verified and warmed before anything points at it; if that fails the
previous version keeps serving and the error is reported (and shown by /health/ready).

Every event is stored first (durable), then replayed into the Recommender from the store's own
log (`events_since(cursor)`), so what the model observes is exactly what was committed, once,
in commit order, whoever wrote it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsemble.config import RecsembleConfig
from recsemble.data.dataset import DEFAULT_EVENT
from recsemble.errors import RecsembleError
from recsemble.pipeline import Recommender
from recsemble.registry import ModelRegistry
from recsemble.serving.precomputed import PrecomputedLists
from recsemble.store import open_store
from recsemble.store.base import AppendResult, Event, Record, Store

log = logging.getLogger("recsemble.serving")
_PAGE = 10_000

Loader = Callable[[Path, str, "RecsembleConfig | None"], Recommender]
WARM_CACHE = "warm-cache"  # beside the registry's versions: derived data, safe to delete


def load_recommender(folder: Path, version: str, config: RecsembleConfig | None) -> Recommender:
    # ServingState.swap verifies the version's every file just before: no second hashing.
    recommender = Recommender.load(folder, version=version, config=config, verified=True)
    # Versions are immutable, so their warm-up is too: cached beside the registry.
    recommender.warm(folder.parent.parent / WARM_CACHE / f"{version}.npz")
    return recommender


@dataclass
class ServeSettings:
    store_url: str = "sqlite:///out/serve/store.db"
    registry_dir: Path = Path("out/registry")
    model_dir: Path | None = None  # added to the registry (and published) at start if new
    api_key: str | None = None
    admin_key: str | None = None
    max_body_bytes: int = 1_000_000
    train_args: list[str] = field(default_factory=list)  # extra `recsemble train` arguments
    retrain_every_s: float | None = None
    config: RecsembleConfig | None = None  # [rerank] stages and settings; None: defaults
    model_metrics: dict[str, Any] | None = None  # stored with model_dir's version (--results)
    report_path: Path | None = None  # the HTML report served at GET /report (--report)
    follow_every_s: float = 1.0  # how often the store is read for what other writers committed


class ServingState:
    def __init__(self, settings: ServeSettings, loader: Loader = load_recommender) -> None:
        self.settings = settings
        self.loader = loader
        self.store: Store = open_store(settings.store_url)
        self.registry = ModelRegistry(settings.registry_dir)
        self.recommender: Recommender | None = None
        self.cursor = 0  # last store seq the served Recommender has observed
        self.item_cursor = 0
        self.user_cursor = 0
        self.last_error: str | None = None
        self.pointer: str | None = None  # the registry's current, as last read here
        self._observe_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self.precomputed = PrecomputedLists(self.store)

    # -- start-up ---------------------------------------------------------------------------
    def start(self) -> None:
        """Serve the registry's current version; a --model the registry does not hold yet is
        added and published first (one it holds, e.g. on a restart, is not copied again, and a
        version published since, e.g. a retrained one, keeps serving)."""
        self.pointer = self.registry.current()
        model_dir = self.settings.model_dir
        if model_dir is not None:
            known = self.registry.find(model_dir)
            version = known or self.registry.add(model_dir, metrics=self.settings.model_metrics)
            current = self.registry.current()
            if known is None or current is None:
                self.publish(version)  # loaded first: a version that cannot serve is not current
                return
            if version != current:
                log.warning(
                    "--model %s is version %s, registered before; serving the current version "
                    "%s (publish %s to serve it)", model_dir, version, current, version
                )  # fmt: skip
        current = self.registry.current()
        if current is None:
            raise RecsembleError("no model to serve: pass --model or publish a version")
        self.swap(current)

    def close(self) -> None:
        if self.recommender is not None:
            self.recommender.close()
        self.store.close()

    # -- versions ---------------------------------------------------------------------------
    def swap(self, version: str) -> Recommender:
        """Verify, load, warm and catch up `version`, then serve it. Raises on failure (the
        version being served stays)."""
        with self._swap_lock:
            try:
                self.registry.verify(version)
                fresh = self.loader(self.registry.path(version), version, self.settings.config)
                start = self.start_cursor(version)
                with self._observe_lock:
                    item_cursor, user_cursor = self._catch_up_records(fresh, 0, 0)
                    cursor = self._catch_up_events(fresh, start)
                    # Last: a swap failing before must leave the served version's types.
                    self.store.set_event_types(_accepted_types(fresh))
                    old, self.recommender = self.recommender, fresh
                    self.cursor, self.item_cursor, self.user_cursor = (
                        cursor,
                        item_cursor,
                        user_cursor,
                    )
            except Exception as exc:
                self.last_error = f"version {version}: {exc}"
                log.error("cannot serve %s: %s", version, exc)
                raise
            self.last_error = None
            log.info("serving model version %s", version)
            if old is not None:  # its refresh worker stops; requests holding it still finish
                threading.Thread(target=old.close, name="close-old-model", daemon=True).start()
            return fresh

    def start_cursor(self, version: str) -> int:
        """Where `version` takes up this store's log (observing, and exporting to retrain):
        after the events it was trained on, or from the start when it was trained on another
        store's (a new or migrated store) or this store no longer holds the event it was
        trained to at that seq (restored from an older copy: the seqs after the copy's were
        given to new events, which starting at the cursor would ignore for good)."""
        start = self.registry.store_cursor(version, self.store.store_id())
        if start != self.registry.store_cursor(version):
            log.warning("version %s was trained on another store's events: it observes this "
                        "store's from the first", version)  # fmt: skip
        elif start and not self._holds(start, self.registry.store_event(version)):
            log.warning("version %s was trained to event seq %d, which this store holds no more "
                        "(restored from an older copy?): it observes this store's events from "
                        "the first (those it was trained on are not counted again)", version,
                        start)  # fmt: skip
            return 0
        return start

    def _holds(self, seq: int, event_id: str | None) -> bool:
        """Whether the store's event at `seq` is `event_id` (None: not recorded, trusted)."""
        if event_id is None:
            return True
        page = self.store.events_since(seq - 1, 1)
        return bool(page) and page[0].seq == seq and page[0].event.event_id == event_id

    def publish(self, version: str) -> None:
        self.swap(version)  # first: a version that cannot be served is never made current
        self.registry.publish(version)

    def rollback(self) -> str:
        previous = self.registry.previous()
        if previous is None:
            raise RecsembleError(
                "nothing to roll back to: no version was published before the current one "
                "(rolled back already? publish a version by name: POST /admin/models/{v}/publish)"
            )
        self.swap(previous)
        return self.registry.rollback()

    def follow_registry(self) -> None:
        """Serve the version another server sharing the registry published or rolled back to,
        so the servers behind one load balancer answer from one version. Acts when the pointer
        changed since last read and names another version than the one served, so this
        server's own publish (swapped first, pointer moved after) is never undone; a version
        that cannot serve is tried once per change (swap reports why), not every second."""
        current = self.registry.current()
        if current is None or current == self.pointer:
            return
        self.pointer = current
        served = self.recommender.version if self.recommender is not None else None
        if current != served:
            log.info("version %s was made current by another server: serving it", current)
            self.swap(current)

    # -- data ---------------------------------------------------------------------------------
    def ingest(self, events: Sequence[Event]) -> AppendResult:
        """Store the events (durable), then let the served model observe what was stored;
        events the served model cannot weigh are refused before anything is stored."""
        if self.recommender is not None:
            self.recommender.live.check_types(events)
        result = self.store.append_events(events)
        self.follow()
        return result

    def follow(self) -> None:
        """Replay into the served Recommender whatever the store committed since last time."""
        recommender = self.recommender
        if recommender is None:
            return
        with self._observe_lock:
            if recommender is not self.recommender:
                return  # swapped meanwhile: the new one caught up by itself
            self.cursor = self._catch_up_events(recommender, self.cursor)

    def follow_store(self) -> Callable[[], None]:
        """Follow, every `follow_every_s`, what other writers commit to the store (another
        server on the same database, an ingest job) and publish to the registry: their events,
        items and users reach the served model now, and their published version serves, not
        at this server's next write or restart. Returns the stop call."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.settings.follow_every_s):
                try:
                    self.follow()
                    self._follow_records()
                except Exception as exc:  # the store is down for a moment: try again later
                    log.warning("following the store: %s", exc)
                try:
                    self.follow_registry()
                except Exception as exc:  # swap logged why; the served version stays
                    log.warning("following the registry: %s", exc)

        thread = threading.Thread(target=loop, name="follow-store", daemon=True)
        thread.start()

        def stopped() -> None:
            stop.set()
            thread.join()

        return stopped

    def upsert(self, kind: str, record: Record) -> None:
        self.store.upsert(kind, [record])
        self._follow_records()

    def delete(self, kind: str, record_id: str) -> bool:
        found = self.store.delete(kind, record_id)
        self._follow_records()
        return found

    def _follow_records(self) -> None:
        with self._observe_lock:  # the one served now: never a replaced one past the cursor
            if self.recommender is not None:
                self.item_cursor, self.user_cursor = self._catch_up_records(
                    self.recommender, self.item_cursor, self.user_cursor
                )

    def _catch_up_events(self, recommender: Recommender, cursor: int) -> int:
        while True:
            page = self.store.events_since(cursor, _PAGE)
            if not page:
                return cursor
            recommender.observe([stored.event for stored in page])
            cursor = page[-1].seq

    def _catch_up_records(
        self, recommender: Recommender, item_cursor: int, user_cursor: int
    ) -> tuple[int, int]:
        items = self.store.changed_since("item", item_cursor)
        live = [r for r in items if not r.deleted]
        if live:
            recommender.upsert_items(live)
        for record in items:
            if record.deleted:
                recommender.remove_item(record.id)
        users = self.store.changed_since("user", user_cursor)
        if users:  # deletions too: a deleted user loses the attributes (as retraining does)
            recommender.upsert_users(users)
        return (
            max([item_cursor, *(r.updated_seq for r in items)]),
            max([user_cursor, *(r.updated_seq for r in users)]),
        )

    # -- health -----------------------------------------------------------------------------
    def readiness(self) -> dict[str, str]:
        """Empty when ready; else what is wrong, by part."""
        problems = {}
        try:
            self.store.ping()
        except Exception as exc:
            problems["store"] = f"{type(exc).__name__}: {exc}"
        if self.recommender is None:
            problems["model"] = self.last_error or "no model loaded yet"
        return problems

    def describe(self) -> dict[str, Any]:
        return {
            "serving": self.recommender.version if self.recommender else None,
            "current": self.registry.current(),
            "last_error": self.last_error,
            "events_observed_to_seq": self.cursor,
            "precomputed": self.precomputed.counts(),
        }


def _accepted_types(recommender: Recommender) -> list[str] | None:
    """The event types the served model weighs (what POST /events accepts), for the store to
    refuse others from every writer; None: no weight table, any type weighs 1."""
    weights = recommender.live.event_weights
    return sorted({*weights, DEFAULT_EVENT}) if weights else None

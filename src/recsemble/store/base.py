"""Store: where events, items and users live while the service runs.

A small interface (eight methods, the store's id, the accepted event types, and three for the
precomputed cache) with two backends chosen by URL: `sqlite:///path/to/file.db` (the default)
and `postgresql://user:pass@host/db` (psycopg 3). One contract test suite runs against both.
Writes are durable when the call returns: an acknowledged event survives a crash of the
process (and, with SQLite's synchronous=FULL, of the machine).

Events are idempotent by `event_id`: appending an event whose id is already stored is counted
as a duplicate and changes nothing, so a client may retry a batch safely. Every stored event
gets a sequence number (`seq`, strictly increasing in commit order) so readers can follow the
log with `events_since(cursor)`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from recsemble.store.precomputed import CachedList, PrecomputedInfo, PrecomputedRow

#: Longest external id (user, item, event) accepted anywhere.
MAX_ID_LENGTH = 256
#: Latest event time accepted anywhere, epoch seconds (2200-01-01): beyond it a timestamp is
#: a unit mistake (milliseconds), which would fail retraining's file (one unit per column).
MAX_TIMESTAMP = 7_258_118_400


@dataclass(frozen=True)
class Event:
    """One interaction as the application reports it (external ids, epoch seconds; a
    timestamp of 0 means "not given": the store records the time of the append)."""

    event_id: str
    user_id: str
    item_id: str
    type: str = "view"
    timestamp: int = 0
    value: float | None = None


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    event: Event


@dataclass(frozen=True)
class AppendResult:
    accepted: int  # newly stored
    duplicates: int  # event_id already stored: ignored


@dataclass(frozen=True)
class Record:
    """An item or a user: its id and a JSON-serialisable attribute object."""

    id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    deleted: bool = False
    updated_seq: int = 0  # store-wide change counter when it was last written


class Store(Protocol):
    """The eight operations the service needs; both backends pass tests/store's contract."""

    def append_events(self, events: Sequence[Event]) -> AppendResult:
        """Store the events in one transaction; returns only after the commit."""
        ...

    def events_since(self, cursor: int, limit: int = 10_000) -> list[StoredEvent]:
        """Stored events with seq > cursor, in seq order, at most `limit`."""
        ...

    def upsert(self, kind: str, records: Sequence[Record]) -> None:
        """Insert or replace items (kind="item") or users (kind="user"); un-deletes."""
        ...

    def delete(self, kind: str, record_id: str) -> bool:
        """Mark a record deleted (kept, so readers learn of it); False if no live record had
        the id. An id never stored gets a deleted record too: replaying the records after a
        restart or a model swap must still remove, e.g., an item of the training data."""
        ...

    def get(self, kind: str, record_ids: Sequence[str]) -> dict[str, Record]:
        """The records that exist (deleted ones included, flagged), by id."""
        ...

    def changed_since(self, kind: str, cursor: int) -> list[Record]:
        """Records written or deleted after the change counter `cursor`, in change order."""
        ...

    def ping(self) -> None:
        """Raise if the store cannot answer (what /health/ready asks)."""
        ...

    def store_id(self) -> str:
        """This store's identity, made with it: a model version records it with the store
        cursor it was trained to, so a cursor is never applied to another store's log."""
        ...

    def set_event_types(self, types: Collection[str] | None) -> None:
        """From now on refuse, in every writer's append, a batch holding an event of another
        type (ValueError naming it; None: any type). The server sets its served model's
        event_weights types, so an ingest job's misspelt "purchse" is refused as the API
        refuses it, instead of weighing 1 live and in retraining."""
        ...

    # The precomputed cache (store/precomputed.py): batch lists the API serves first.
    def replace_precomputed(
        self,
        model_version: str,
        chunks: Iterable[Sequence[PrecomputedRow]],
        rerank: str | None = None,
    ) -> PrecomputedInfo:
        """Load the chunks (one transaction each) as the version's new batch, then make it the
        active one in one transaction; on any error the previous batch stays, the new rows go.
        rerank: the re-ranking the lists were computed with (None: not known)."""
        ...

    def precomputed(self, model_version: str, user_id: str) -> CachedList | None:
        """The user's list in the version's active batch (None: no batch or no list)."""
        ...

    def precomputed_info(self, model_version: str) -> PrecomputedInfo | None:
        """The version's active batch, if any."""
        ...

    def close(self) -> None: ...

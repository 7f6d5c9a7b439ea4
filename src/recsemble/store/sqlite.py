"""The SQLite store: one file, write-ahead log, every commit fsynced.

Threads: each thread gets its own connection (readers run in parallel under WAL); writes in
this process queue on one lock before `BEGIN IMMEDIATE`, so they wait in order instead of
polling SQLite's busy handler, and another process writing the same file is still excluded by
SQLite's own lock (waiting up to `busy_timeout`). Every pragma the store relies on is set on
each new connection and read back (`settings()`, asserted by tests/store).

Sequence numbers: `seq` is an AUTOINCREMENT key, assigned inside the one write transaction at
a time, so seq order is commit order. Records' `updated_seq` is the store-wide change counter
(one more than the largest ever written; records are never removed, so it only grows).
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recsemble.errors import DataError
from recsemble.store.base import AppendResult, Event, Record, StoredEvent
from recsemble.store.precomputed import (
    DUPLICATE_RANK,
    CachedList,
    PrecomputedInfo,
    PrecomputedRow,
    cached_list,
)
from recsemble.store.sqlite_sql import (
    CACHED,
    EVENT_COLUMNS,
    NEW_STORE_ID,
    PRECOMPUTED_SCHEMA,
    RECORD_COLUMNS,
    SCHEMA,
)
from recsemble.store.validation import (
    READ_EVENT_TYPES,
    check_cursor,
    check_event_types,
    check_ids,
    check_kind,
    check_limit,
    decode_attributes,
    encode_event_types,
    unique_events,
    unique_records,
)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5_000

#: (pragma, value set, value read back). Per-connection pragmas are set on every connection;
#: journal_mode=WAL persists in the file but is set (and checked) each time all the same.
PRAGMAS: tuple[tuple[str, str, object], ...] = (
    ("journal_mode", "WAL", "wal"),  # readers never block the writer
    ("synchronous", "FULL", 2),  # fsync the WAL at every commit: durable on return
    ("busy_timeout", str(BUSY_TIMEOUT_MS), BUSY_TIMEOUT_MS),  # wait for another writer
    ("foreign_keys", "ON", 1),
    ("wal_autocheckpoint", "1000", 1000),  # pages; keeps the WAL file bounded
    ("journal_size_limit", str(64 * 1024 * 1024), 64 * 1024 * 1024),
    ("temp_store", "MEMORY", 2),
    ("trusted_schema", "OFF", 0),  # no functions run from schema definitions
    ("cell_size_check", "ON", 1),  # detect a damaged page instead of reading garbage
    ("recursive_triggers", "OFF", 0),
)

_IDS_PER_QUERY = 500  # well under SQLite's limit on bound parameters


class SQLiteStore:
    """The Store protocol over one SQLite file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._registry_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._create_schema(self._connection())
            with self._write() as conn:
                for statement in filter(str.strip, PRECOMPUTED_SCHEMA.split(";")):
                    conn.execute(statement)
                columns = conn.execute("PRAGMA table_info(precomputed_batches)").fetchall()
                if "rerank" not in {column[1] for column in columns}:  # a store made before it
                    conn.execute("ALTER TABLE precomputed_batches ADD COLUMN rerank TEXT")
                conn.execute(NEW_STORE_ID, (uuid.uuid4().hex,))
        except (sqlite3.DatabaseError, OSError) as exc:  # one line, not sqlite3's traceback
            self.close()
            raise DataError(f"cannot open it as a store: {_why(exc, self.path)}",
                            source=str(self.path)) from None  # fmt: skip

    # -- events ----------------------------------------------------------------------------
    def append_events(self, events: Sequence[Event]) -> AppendResult:
        batch = unique_events(events)
        if not batch.events:
            return AppendResult(0, batch.repeated)
        rows = [
            (e.event_id, e.user_id, e.item_id, e.type, e.timestamp, e.value) for e in batch.events
        ]
        with self._write() as conn:
            check_event_types(batch.events, conn.execute(READ_EVENT_TYPES).fetchone())
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO events (event_id, user_id, item_id, type, timestamp, value) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                rows,
            )
            accepted = conn.total_changes - before
        return AppendResult(accepted, len(events) - accepted)

    def events_since(self, cursor: int, limit: int = 10_000) -> list[StoredEvent]:
        rows = self._read(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (check_cursor(cursor), check_limit(limit)),
        )
        return [StoredEvent(row[0], Event(*row[1:])) for row in rows]

    # -- items and users -------------------------------------------------------------------
    def upsert(self, kind: str, records: Sequence[Record]) -> None:
        kind = check_kind(kind)
        rows = unique_records(records)
        if not rows:
            return
        with self._write() as conn:
            first = _next_change(conn)
            conn.executemany(
                "INSERT INTO records (kind, id, attributes, deleted, updated_seq) "
                "VALUES (?, ?, ?, 0, ?) ON CONFLICT (kind, id) DO UPDATE SET "
                "attributes = excluded.attributes, deleted = 0, updated_seq = excluded.updated_seq",
                [(kind, rid, text, first + n) for n, (rid, text) in enumerate(rows)],
            )

    def delete(self, kind: str, record_id: str) -> bool:
        kind = check_kind(kind)
        (record_id,) = check_ids([record_id], "record_id")
        with self._write() as conn:
            change = _next_change(conn)
            cursor = conn.execute(
                "UPDATE records SET deleted = 1, updated_seq = ? "
                "WHERE kind = ? AND id = ? AND deleted = 0",
                (change, kind, record_id),
            )
            if cursor.rowcount == 1:
                return True
            # A tombstone for an id the store never held (an item of the training data), so
            # the deletion outlives a restart or a model swap, which replay the records.
            conn.execute(
                "INSERT INTO records (kind, id, attributes, deleted, updated_seq) "
                "VALUES (?, ?, '{}', 1, ?) ON CONFLICT (kind, id) DO NOTHING",
                (kind, record_id, change),
            )
            return False

    def get(self, kind: str, record_ids: Sequence[str]) -> dict[str, Record]:
        kind = check_kind(kind)
        wanted = list(dict.fromkeys(check_ids(record_ids, "record_ids")))
        found: dict[str, Record] = {}
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            chunk = wanted[start : start + _IDS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            rows = self._read(
                f"SELECT {RECORD_COLUMNS} FROM records WHERE kind = ? AND id IN ({marks})",
                (kind, *chunk),
            )
            found.update((row[0], _record(row)) for row in rows)
        return found

    def changed_since(self, kind: str, cursor: int) -> list[Record]:
        rows = self._read(
            f"SELECT {RECORD_COLUMNS} FROM records WHERE kind = ? AND updated_seq > ? "
            "ORDER BY updated_seq",
            (check_kind(kind), check_cursor(cursor)),
        )
        return [_record(row) for row in rows]

    # -- precomputed cache -----------------------------------------------------------------
    def replace_precomputed(
        self,
        model_version: str,
        chunks: Iterable[Sequence[PrecomputedRow]],
        rerank: str | None = None,
    ) -> PrecomputedInfo:
        now = int(time.time())
        with self._write() as conn:
            batch = conn.execute(
                "INSERT INTO precomputed_batches (model_version, loaded_at, rerank) "
                "VALUES (?, ?, ?)",
                (model_version, now, rerank),
            ).lastrowid
        try:
            for chunk in chunks:
                with self._write() as conn:
                    try:
                        conn.executemany(
                            "INSERT INTO precomputed_lists VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [(batch, *row) for row in chunk],
                        )
                    except sqlite3.IntegrityError:
                        raise DataError(DUPLICATE_RANK) from None
            with self._write() as conn:
                _activate(conn, batch, model_version)
        except BaseException:
            with self._write() as conn:  # the staged rows go; the active batch never changed
                conn.execute("DELETE FROM precomputed_lists WHERE batch_id = ?", (batch,))
                conn.execute("DELETE FROM precomputed_batches WHERE batch_id = ?", (batch,))
            raise
        info = self.precomputed_info(model_version)
        assert info is not None
        return info

    def precomputed(self, model_version: str, user_id: str) -> CachedList | None:
        rows = self._read(CACHED, (model_version, user_id))
        return cached_list(user_id, rows)

    def precomputed_info(self, model_version: str) -> PrecomputedInfo | None:
        rows = self._read(
            "SELECT k, users, rows, loaded_at FROM precomputed_batches "
            "WHERE model_version = ? AND active = 1",
            (model_version,),
        )
        return PrecomputedInfo(model_version, *rows[0]) if rows else None

    # -- service ---------------------------------------------------------------------------
    def ping(self) -> None:
        self._read("SELECT count(*) FROM sqlite_master", ())

    def store_id(self) -> str:
        return str(self._read("SELECT value FROM store_meta WHERE key = 'store_id'", ())[0][0])

    def set_event_types(self, types: Collection[str] | None) -> None:
        text = encode_event_types(types)
        with self._write() as conn:
            conn.execute("DELETE FROM store_meta WHERE key = 'event_types'")
            if text is not None:
                conn.execute("INSERT INTO store_meta VALUES ('event_types', ?)", (text,))

    def settings(self) -> dict[str, object]:
        """Every pragma of PRAGMAS as this thread's connection reports it."""
        conn = self._connection()
        return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name, _, _ in PRAGMAS}

    def close(self) -> None:
        with self._registry_lock:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    # -- connections -----------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"the store {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            with self._registry_lock:
                if self._closed:
                    conn.close()
                    raise RuntimeError(f"the store {self.path} is closed")
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; _write opens them explicitly.
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,  # close() closes every thread's connection
        )
        try:
            for name, value, expected in PRAGMAS:
                conn.execute(f"PRAGMA {name} = {value}")
                actual = conn.execute(f"PRAGMA {name}").fetchone()[0]
                if actual != expected:
                    raise DataError(
                        f"PRAGMA {name} is {actual!r} after setting it to {value}",
                        source=str(self.path),
                    )
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed (and fsynced) when the block ends, else undone."""
        conn = self._connection()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql, params).fetchall()

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        with self._write():
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version != 0:
                raise DataError(
                    f"store schema version {version}; this recsemble reads version "
                    f"{SCHEMA_VERSION}",
                    source=str(self.path),
                )
            tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            if tables:
                raise DataError(
                    f"file holds tables {[t[0] for t in tables]} but is not a recsemble store",
                    source=str(self.path),
                )
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _why(exc: Exception, path: Path) -> str:
    """What an open failure means for the user (sqlite3 says "unable to open database file")."""
    if path.is_dir():
        return "it is a folder; give a database file path"
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return "the file is not an SQLite database"
    if isinstance(exc, OSError):  # making the folder: its parent is a file, no permission
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    return f"{exc} (is the folder writable?)" if "unable to open" in str(exc) else str(exc)


def _next_change(conn: sqlite3.Connection) -> int:
    """The next store-wide change number (inside the write transaction, so no one else takes
    it); `updated_seq` is unique and indexed, so this reads one index entry."""
    row = conn.execute("SELECT coalesce(max(updated_seq), 0) FROM records").fetchone()
    return int(row[0]) + 1


def _activate(conn: sqlite3.Connection, batch: int | None, model_version: str) -> None:
    """In one transaction: the new batch's sizes, the old active batch gone, the new active."""
    sizes = conn.execute(
        "SELECT coalesce(max(rank), 0), count(DISTINCT user_id), count(*) "
        "FROM precomputed_lists WHERE batch_id = ?",
        (batch,),
    ).fetchone()
    conn.execute(
        "UPDATE precomputed_batches SET active = 1, k = ?, users = ?, rows = ? WHERE batch_id = ?",
        (*sizes, batch),
    )
    old = "SELECT batch_id FROM precomputed_batches WHERE model_version = ? AND batch_id != ?"
    conn.execute(f"DELETE FROM precomputed_lists WHERE batch_id IN ({old})", (model_version, batch))
    conn.execute(
        f"DELETE FROM precomputed_batches WHERE batch_id IN ({old})", (model_version, batch)
    )


def _record(row: tuple[Any, ...]) -> Record:
    return Record(row[0], decode_attributes(row[1]), bool(row[2]), int(row[3]))

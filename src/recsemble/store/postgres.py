"""The PostgreSQL store (psycopg 3 with a connection pool).

Ordering: a reader follows the log with `events_since(cursor)` and moves its cursor to the
largest seq it saw, so a transaction that took a lower seq but committed later would be missed
for ever. Appends therefore take `LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE` (it conflicts
with itself and with plain inserts, not with readers) before their rows get a seq: the next
writer cannot draw a seq until the previous one has committed, so seq order is commit order.
Item and user writes do the same on `records` for their change counter.

Durability: every connection runs with `synchronous_commit = on` whatever the server's
default, so a call returns only after its commit is flushed to the server's WAL.
Idempotency: `event_id` is unique; inserts use ON CONFLICT DO NOTHING, and the row count the
insert reports is the number accepted.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from recsemble.errors import ConfigError, DataError
from recsemble.store.base import AppendResult, Event, Record, StoredEvent
from recsemble.store.postgres_sql import (
    APPEND,
    CACHED,
    EVENT_COLUMNS,
    INSERT_LISTS,
    PRECOMPUTED_SCHEMA,
    RECORD_COLUMNS,
    SCHEMA,
    UPSERT,
)
from recsemble.store.precomputed import (
    DUPLICATE_RANK,
    CachedList,
    PrecomputedInfo,
    PrecomputedRow,
    cached_list,
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
PING_TIMEOUT_S = 2.0
#: Session settings every pooled connection gets (read back by `settings()`).
SESSION_SETTINGS: tuple[tuple[str, str], ...] = (
    ("synchronous_commit", "on"),  # durable on return, whatever the server default is
    ("default_transaction_isolation", "read committed"),
    ("lock_timeout", "10s"),  # a stuck writer turns into an error, not a hung request
    ("TimeZone", "UTC"),
    ("client_encoding", "UTF8"),
)
_SCHEMA_LOCK_KEY = 0x72656373656D626C  # "recsembl": serialises schema creation only


class PostgresStore:
    """The Store protocol over a PostgreSQL database (see the module docstring)."""

    def __init__(self, url: str, *, pool_size: int = 8, timeout_s: float = 10.0) -> None:
        self.url = url
        self.where = describe(url)
        self._create_schema(timeout_s)
        self._create_precomputed(timeout_s)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},  # transactions are opened explicitly for writes
            configure=_configure,
            check=ConnectionPool.check_connection,  # a connection the server dropped is replaced
            timeout=timeout_s,
            open=False,
            name="recsemble-store",
        )
        self._pool.open(wait=True, timeout=timeout_s)

    # -- events ----------------------------------------------------------------------------
    def append_events(self, events: Sequence[Event]) -> AppendResult:
        batch = unique_events(events)
        if not batch.events:
            return AppendResult(0, batch.repeated)
        columns = (
            [e.event_id for e in batch.events],
            [e.user_id for e in batch.events],
            [e.item_id for e in batch.events],
            [e.type for e in batch.events],
            [e.timestamp for e in batch.events],
            [None if e.value is None else float(e.value) for e in batch.events],
        )
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
            check_event_types(batch.events, conn.execute(READ_EVENT_TYPES).fetchone())
            accepted = conn.execute(APPEND, columns).rowcount
        return AppendResult(accepted, len(events) - accepted)

    def events_since(self, cursor: int, limit: int = 10_000) -> list[StoredEvent]:
        rows = self._read(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > %s ORDER BY seq LIMIT %s",
            (check_cursor(cursor), check_limit(limit)),
        )
        return [StoredEvent(row[0], Event(*row[1:])) for row in rows]

    # -- items and users -------------------------------------------------------------------
    def upsert(self, kind: str, records: Sequence[Record]) -> None:
        kind = check_kind(kind)
        rows = unique_records(records)
        if not rows:
            return
        with self._pool.connection() as conn, conn.transaction():
            first = _lock_records(conn)
            changes = list(range(first, first + len(rows)))
            conn.execute(UPSERT, (kind, [r[0] for r in rows], [r[1] for r in rows], changes))

    def delete(self, kind: str, record_id: str) -> bool:
        kind = check_kind(kind)
        (record_id,) = check_ids([record_id], "record_id")
        with self._pool.connection() as conn, conn.transaction():
            change = _lock_records(conn)
            cursor = conn.execute(
                "UPDATE records SET deleted = true, updated_seq = %s "
                "WHERE kind = %s AND id = %s AND NOT deleted",
                (change, kind, record_id),
            )
            if cursor.rowcount == 1:
                return True
            # A tombstone for an id the store never held (see SQLiteStore.delete).
            conn.execute(
                "INSERT INTO records (kind, id, attributes, deleted, updated_seq) "
                "VALUES (%s, %s, '{}'::jsonb, true, %s) ON CONFLICT (kind, id) DO NOTHING",
                (kind, record_id, change),
            )
            return False

    def get(self, kind: str, record_ids: Sequence[str]) -> dict[str, Record]:
        kind = check_kind(kind)
        wanted = list(dict.fromkeys(check_ids(record_ids, "record_ids")))
        if not wanted:
            return {}
        rows = self._read(
            f"SELECT {RECORD_COLUMNS} FROM records WHERE kind = %s AND id = ANY(%s::text[])",
            (kind, wanted),
        )
        return {row[0]: _record(row) for row in rows}

    def changed_since(self, kind: str, cursor: int) -> list[Record]:
        rows = self._read(
            f"SELECT {RECORD_COLUMNS} FROM records WHERE kind = %s AND updated_seq > %s "
            "ORDER BY updated_seq",
            (check_kind(kind), check_cursor(cursor)),
        )
        return [_record(row) for row in rows]

    # -- service ---------------------------------------------------------------------------
    # -- precomputed cache -----------------------------------------------------------------
    def replace_precomputed(
        self,
        model_version: str,
        chunks: Iterable[Sequence[PrecomputedRow]],
        rerank: str | None = None,
    ) -> PrecomputedInfo:
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO precomputed_batches (model_version, loaded_at, rerank) "
                "VALUES (%s, %s, %s) RETURNING batch_id",
                (model_version, int(time.time()), rerank),
            ).fetchone()
        assert row is not None
        batch = int(row[0])
        try:
            for chunk in chunks:
                columns = [list(column) for column in zip(*chunk, strict=True)]
                try:
                    with self._pool.connection() as conn, conn.transaction():
                        conn.execute(INSERT_LISTS, (batch, *columns))
                except psycopg.errors.UniqueViolation:
                    raise DataError(DUPLICATE_RANK) from None
            with self._pool.connection() as conn, conn.transaction():
                _activate(conn, batch, model_version)
        except BaseException:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("DELETE FROM precomputed_lists WHERE batch_id = %s", (batch,))
                conn.execute("DELETE FROM precomputed_batches WHERE batch_id = %s", (batch,))
            raise
        info = self.precomputed_info(model_version)
        assert info is not None
        return info

    def precomputed(self, model_version: str, user_id: str) -> CachedList | None:
        return cached_list(user_id, self._read(CACHED, (model_version, user_id)))

    def precomputed_info(self, model_version: str) -> PrecomputedInfo | None:
        rows = self._read(
            "SELECT k, users, rows, loaded_at FROM precomputed_batches "
            "WHERE model_version = %s AND active",
            (model_version,),
        )
        return PrecomputedInfo(model_version, *(int(v) for v in rows[0])) if rows else None

    # -- service ---------------------------------------------------------------------------
    def store_id(self) -> str:
        return str(self._read("SELECT value FROM store_meta WHERE key = 'store_id'", ())[0][0])

    def set_event_types(self, types: Collection[str] | None) -> None:
        text = encode_event_types(types)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM store_meta WHERE key = 'event_types'")
            if text is not None:
                conn.execute("INSERT INTO store_meta VALUES ('event_types', %s)", (text,))

    def ping(self) -> None:
        # a short wait: /health/ready asks, and a server that is down should say so quickly
        with self._pool.connection(timeout=PING_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")

    def settings(self) -> dict[str, str]:
        """The SESSION_SETTINGS as a pooled connection reports them."""
        with self._pool.connection() as conn:
            return {
                name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                for name, _ in SESSION_SETTINGS
            }

    def close(self) -> None:
        self._pool.close()

    # -- helpers ---------------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _create_schema(self, timeout_s: float) -> None:
        """Create the tables on first use (one connection at a time: an advisory lock)."""
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=int(timeout_s))
        except psycopg.ProgrammingError as exc:  # libpq cannot parse the URL
            raise ConfigError(f"store URL: {_without_password(str(exc), self.url)}") from None
        except psycopg.OperationalError as exc:
            message = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise ConnectionError(
                f"cannot connect to PostgreSQL at {self.where}: {message}"
            ) from None
        with conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            version = _schema_version(conn)
            if version == SCHEMA_VERSION:
                return
            if version is not None:
                raise DataError(
                    f"store schema version {version}; this recsemble reads {SCHEMA_VERSION}",
                    source=self.where,
                )
            for table in ("events", "records"):
                if _table_exists(conn, table):
                    raise DataError(
                        f"the database has a table {table!r} that recsemble did not create",
                        source=self.where,
                    )
            for statement in filter(str.strip, SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO recsemble_schema (version) VALUES (%s)", (SCHEMA_VERSION,))

    def _create_precomputed(self, timeout_s: float) -> None:
        """The cache's tables, when missing (also in stores created before they existed)."""
        timeout = int(timeout_s)
        with (
            psycopg.connect(self.url, autocommit=True, connect_timeout=timeout) as conn,
            conn.transaction(),
        ):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            for statement in filter(str.strip, PRECOMPUTED_SCHEMA.split(";")):
                conn.execute(statement)


def describe(url: str) -> str:
    """Where a connection string points, without its password (for messages and logs)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparseable URL)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"postgresql://{host}:{port}/{params.get('dbname') or ''}"


def _without_password(message: str, url: str) -> str:
    """libpq's message about a URL it cannot parse, which may quote the password."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    message = message.strip().splitlines()[0] if message.strip() else "cannot be parsed"
    return message.replace(password, "***") if password else message


def _configure(conn: psycopg.Connection[Any]) -> None:
    for name, value in SESSION_SETTINGS:
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def _lock_records(conn: psycopg.Connection[Any]) -> int:
    """Lock the records table against other writers; returns the next change number."""
    conn.execute("LOCK TABLE records IN SHARE ROW EXCLUSIVE MODE")
    row = conn.execute("SELECT coalesce(max(updated_seq), 0) + 1 FROM records").fetchone()
    assert row is not None
    return int(row[0])


def _activate(conn: psycopg.Connection[Any], batch: int, model_version: str) -> None:
    """In one transaction: the new batch's sizes, the old active batch gone, the new active."""
    conn.execute("LOCK TABLE precomputed_batches IN SHARE ROW EXCLUSIVE MODE")  # loads in turn
    conn.execute(
        "UPDATE precomputed_batches b SET active = true, k = s.k, users = s.users, rows = s.n "
        "FROM (SELECT coalesce(max(rank), 0) AS k, count(DISTINCT user_id) AS users, "
        "count(*) AS n FROM precomputed_lists WHERE batch_id = %s) AS s WHERE b.batch_id = %s",
        (batch, batch),
    )
    old = "SELECT batch_id FROM precomputed_batches WHERE model_version = %s AND batch_id <> %s"
    conn.execute(f"DELETE FROM precomputed_lists WHERE batch_id IN ({old})", (model_version, batch))
    conn.execute(
        f"DELETE FROM precomputed_batches WHERE batch_id IN ({old})", (model_version, batch)
    )


def _schema_version(conn: psycopg.Connection[Any]) -> int | None:
    if not _table_exists(conn, "recsemble_schema"):
        return None
    row = conn.execute("SELECT max(version) FROM recsemble_schema").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _table_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def _record(row: tuple[Any, ...]) -> Record:
    return Record(row[0], decode_attributes(row[1]), bool(row[2]), int(row[3]))

"""Where events, items and users live while the service runs: `open_store(url)`.

`sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (SQLAlchemy's spelling: the
path is what follows `sqlite:///`) opens an SQLite file (the default); `postgresql://...` (or
`postgres://...`, any libpq connection URI) a PostgreSQL database. Both implement the Store
protocol of store/base.py and pass the same contract tests (tests/store).
"""

from __future__ import annotations

from pathlib import Path

from recsemble.errors import ConfigError
from recsemble.store.base import (
    MAX_ID_LENGTH,
    AppendResult,
    Event,
    Record,
    Store,
    StoredEvent,
)

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")

__all__ = [
    "MAX_ID_LENGTH",
    "AppendResult",
    "Event",
    "Record",
    "Store",
    "StoredEvent",
    "open_store",
    "unavailable_errors",
]


def unavailable_errors() -> tuple[type[Exception], ...]:
    """What a store call raises when the database cannot answer now (PostgreSQL down or its
    pool exhausted, SQLite locked by another writer past the busy timeout, a full disk): the
    server answers 503, and the client retries (events are idempotent by event_id)."""
    import sqlite3

    import psycopg  # PoolTimeout is an OperationalError too

    return (sqlite3.OperationalError, psycopg.OperationalError)


def open_store(url: str) -> Store:
    """Open (creating its tables when new) the store a URL names; ConfigError for a bad URL,
    DataError for a path or database that cannot hold a store (a folder, another file, another
    schema), ConnectionError when a PostgreSQL server cannot be reached."""
    if url.startswith(SQLITE_PREFIX):
        path = url[len(SQLITE_PREFIX) :]
        if not path or path == ":memory:" or path.startswith("file:"):
            raise ConfigError(
                f"store URL {url!r}: give a database file path after {SQLITE_PREFIX!r} "
                "(an in-memory database would lose every event)"
            )
        if "?" in path:  # it was a file named "x.db?mode=ro", opened for writing
            raise ConfigError(
                f"store URL {url!r}: SQLite store URLs take no options after '?'; give only "
                "the database file path"
            )
        from recsemble.store.sqlite import SQLiteStore

        return SQLiteStore(Path(path).expanduser())  # "~/x.db" made a folder named "~"
    if url.startswith(POSTGRES_PREFIXES):
        from recsemble.store.postgres import PostgresStore  # psycopg is imported only here

        return PostgresStore(url)
    shown = url.split("://", 1)[0] + "://..." if "://" in url else repr(url)
    raise ConfigError(
        f"store URL {shown}: use sqlite:///path/to/file.db or postgresql://user@host/database"
    )

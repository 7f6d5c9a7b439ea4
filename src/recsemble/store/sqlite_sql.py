"""The SQLite store's schema and fixed statements (sqlite.py runs them)."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    type TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    value REAL
) STRICT;
CREATE TABLE records (
    kind TEXT NOT NULL CHECK (kind IN ('item', 'user')),
    id TEXT NOT NULL,
    attributes TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    updated_seq INTEGER NOT NULL UNIQUE,
    PRIMARY KEY (kind, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX records_by_change ON records (kind, updated_seq);
"""

#: The precomputed cache (store/precomputed.py): created when missing, in any version-1 store.
PRECOMPUTED_SCHEMA = """
CREATE TABLE IF NOT EXISTS precomputed_batches (
    batch_id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_version TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    k INTEGER NOT NULL DEFAULT 0,
    users INTEGER NOT NULL DEFAULT 0,
    rows INTEGER NOT NULL DEFAULT 0,
    loaded_at INTEGER NOT NULL,
    rerank TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS precomputed_by_version ON precomputed_batches (model_version, active);
CREATE TABLE IF NOT EXISTS precomputed_lists (
    batch_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    rank INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    score REAL NOT NULL,
    explanation TEXT,
    history_events INTEGER NOT NULL,
    history_latest INTEGER NOT NULL,
    PRIMARY KEY (batch_id, user_id, rank)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT
"""
CACHED = (
    "SELECT l.item_id, l.score, l.explanation, l.history_events, l.history_latest, b.rerank "
    "FROM precomputed_batches b JOIN precomputed_lists l ON l.batch_id = b.batch_id "
    "WHERE b.model_version = ? AND b.active = 1 AND l.user_id = ? ORDER BY l.rank"
)
#: This store's identity, made once (a copy of the file keeps it; another store has its own).
NEW_STORE_ID = "INSERT INTO store_meta VALUES ('store_id', ?) ON CONFLICT (key) DO NOTHING"
EVENT_COLUMNS = "seq, event_id, user_id, item_id, type, timestamp, value"
RECORD_COLUMNS = "id, attributes, deleted, updated_seq"

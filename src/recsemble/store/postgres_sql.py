"""The PostgreSQL store's schema and fixed statements (postgres.py runs them)."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE recsemble_schema (version integer NOT NULL);
CREATE TABLE events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    user_id text NOT NULL,
    item_id text NOT NULL,
    type text NOT NULL,
    timestamp bigint NOT NULL,
    value double precision
);
CREATE TABLE records (
    kind text NOT NULL CHECK (kind IN ('item', 'user')),
    id text NOT NULL,
    attributes jsonb NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    updated_seq bigint NOT NULL UNIQUE,
    PRIMARY KEY (kind, id)
);
CREATE INDEX records_by_change ON records (kind, updated_seq)
"""

#: The precomputed cache (store/precomputed.py): created when missing, in any version-1 store.
PRECOMPUTED_SCHEMA = """
CREATE TABLE IF NOT EXISTS precomputed_batches (
    batch_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_version text NOT NULL,
    active boolean NOT NULL DEFAULT false,
    k integer NOT NULL DEFAULT 0,
    users bigint NOT NULL DEFAULT 0,
    rows bigint NOT NULL DEFAULT 0,
    loaded_at bigint NOT NULL
);
ALTER TABLE precomputed_batches ADD COLUMN IF NOT EXISTS rerank text;
CREATE INDEX IF NOT EXISTS precomputed_by_version ON precomputed_batches (model_version, active);
CREATE TABLE IF NOT EXISTS precomputed_lists (
    batch_id bigint NOT NULL,
    user_id text NOT NULL,
    rank integer NOT NULL,
    item_id text NOT NULL,
    score double precision NOT NULL,
    explanation text,
    history_events bigint NOT NULL,
    history_latest bigint NOT NULL,
    PRIMARY KEY (batch_id, user_id, rank)
);
CREATE TABLE IF NOT EXISTS store_meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO store_meta VALUES ('store_id', md5(random()::text || clock_timestamp()::text))
    ON CONFLICT (key) DO NOTHING
"""
CACHED = (
    "SELECT l.item_id, l.score, l.explanation, l.history_events, l.history_latest, b.rerank "
    "FROM precomputed_batches b JOIN precomputed_lists l ON l.batch_id = b.batch_id "
    "WHERE b.model_version = %s AND b.active AND l.user_id = %s ORDER BY l.rank"
)
INSERT_LISTS = """
INSERT INTO precomputed_lists
SELECT %s, u, r, i, s, e, n, t
FROM unnest(%s::text[], %s::int[], %s::text[], %s::float8[], %s::text[], %s::bigint[],
            %s::bigint[]) AS b(u, r, i, s, e, n, t)
"""
APPEND = """
INSERT INTO events (event_id, user_id, item_id, type, timestamp, value)
SELECT e, u, i, t, ts, v
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::float8[])
    WITH ORDINALITY AS batch(e, u, i, t, ts, v, position)
ORDER BY position
ON CONFLICT (event_id) DO NOTHING
"""
UPSERT = """
INSERT INTO records (kind, id, attributes, deleted, updated_seq)
SELECT %s, i, a::jsonb, false, s FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS b(i, a, s)
ON CONFLICT (kind, id) DO UPDATE
SET attributes = EXCLUDED.attributes, deleted = false, updated_seq = EXCLUDED.updated_seq
"""
EVENT_COLUMNS = "seq, event_id, user_id, item_id, type, timestamp, value"
RECORD_COLUMNS = "id, attributes, deleted, updated_seq"

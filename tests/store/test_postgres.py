"""PostgreSQL specifics: session settings, commit-order sequence numbers, clear errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from recsemble.errors import ConfigError, DataError
from recsemble.store import Event, Record, open_store
from recsemble.store.postgres import PostgresStore

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[PostgresStore]:
    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore)
    yield store
    store.close()


def test_every_connection_is_durable_on_commit(pg_store: PostgresStore) -> None:
    assert pg_store.settings() == {
        "synchronous_commit": "on",
        "default_transaction_isolation": "read committed",
        "lock_timeout": "10s",
        "TimeZone": "UTC",
        "client_encoding": "UTF8",
    }


def _finishes_only_after_commit(postgres_url: str, insert_sql: str, call: object) -> None:
    """Open a transaction that inserts (and so holds a lower seq) without committing; the
    store's write must wait for it instead of committing a higher seq first."""
    finished = threading.Event()

    def run() -> None:
        call()  # type: ignore[operator]
        finished.set()

    with psycopg.connect(postgres_url) as other:
        other.execute(insert_sql)
        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.5)
        assert not finished.is_set(), "the store committed while an earlier insert was open"
        other.commit()
        assert finished.wait(10)
        worker.join()


def test_an_append_waits_for_an_open_insert_so_seq_order_is_commit_order(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    pg_store.append_events([Event("first", "u", "i")])
    _finishes_only_after_commit(
        postgres_url,
        "INSERT INTO events (event_id, user_id, item_id, type, timestamp) "
        "VALUES ('open', 'u', 'i', 'view', 0)",
        lambda: pg_store.append_events([Event("later", "u", "i")]),
    )
    order = [s.event.event_id for s in pg_store.events_since(0)]
    assert order == ["first", "open", "later"]


def test_a_record_write_waits_for_an_open_record_write(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    _finishes_only_after_commit(
        postgres_url,
        "INSERT INTO records (kind, id, attributes, deleted, updated_seq) "
        "VALUES ('item', 'open', '{}', false, 1)",
        lambda: pg_store.upsert("item", [Record("later")]),
    )
    assert [r.id for r in pg_store.changed_since("item", 0)] == ["open", "later"]


def test_an_unreachable_server_is_a_clear_error_without_the_password(tmp_path: object) -> None:
    url = f"postgresql://someone:s3cret@/nodb?host={tmp_path}&port=1"
    with pytest.raises(ConnectionError, match="cannot connect to PostgreSQL") as caught:
        open_store(url)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("url", ["postgresql://u:pa%zzss@h/db", "postgresql://h/db?bogus=1"])
def test_a_url_libpq_cannot_parse_is_a_config_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError, match="store URL: invalid") as caught:
        open_store(url)
    assert "pa%zzss" not in str(caught.value)


def test_tables_recsemble_did_not_create_are_refused(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id int)")
    with pytest.raises(DataError, match="'events' that recsemble did not create"):
        open_store(postgres_url)


def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE recsemble_schema SET version = 99")
    with pytest.raises(DataError, match="schema version 99"):
        open_store(postgres_url)


def test_a_store_made_before_the_record_of_reranking_gains_it(postgres_url: str) -> None:
    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # as an earlier recsemble had it
        conn.execute("ALTER TABLE precomputed_batches DROP COLUMN rerank")
    store = open_store(postgres_url)
    try:
        store.replace_precomputed("v1", [[("u0", 1, "i0", 1.0, None, 1, 1)]], "r")
        cached = store.precomputed("v1", "u0")
        assert cached is not None and cached.rerank == "r"
    finally:
        store.close()

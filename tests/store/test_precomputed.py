"""The precomputed cache's store side, against SQLite and PostgreSQL (conftest.store_url):
chunked loads, atomic replacement, a failed load that leaves the previous batch serving, and
the Parquet checks that refuse a bad file before anything is written."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsemble.errors import DataError
from recsemble.store import Store
from recsemble.store.precomputed import PrecomputedRow, batch_rerank, check_parquet, read_chunks


def _rows(users: int, k: int, tag: str) -> list[PrecomputedRow]:
    return [
        (f"u{u}", rank, f"{tag}-i{u}-{rank}", 1.0 / rank, '{"text":"x"}', 10 + u, 1_700_000_000)
        for u in range(users)
        for rank in range(1, k + 1)
    ]


def _chunks(rows: list[PrecomputedRow], size: int) -> Iterator[list[PrecomputedRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def test_load_in_chunks_and_read_a_users_list(store: Store) -> None:
    info = store.replace_precomputed("v1", _chunks(_rows(30, 5, "a"), 7))
    assert (info.model_version, info.k, info.users, info.rows) == ("v1", 5, 30, 150)
    cached = store.precomputed("v1", "u3")
    assert cached is not None
    assert [e.item_id for e in cached.entries] == [f"a-i3-{r}" for r in range(1, 6)]
    assert [e.score for e in cached.entries] == [1.0 / r for r in range(1, 6)]
    assert (cached.history_events, cached.history_latest) == (13, 1_700_000_000)
    assert cached.entries[0].explanation == '{"text":"x"}'
    assert store.precomputed("v1", "nobody") is None
    assert store.precomputed("v2", "u3") is None  # another version has no batch
    assert store.precomputed_info("v2") is None


def test_a_new_batch_replaces_the_old_one_of_its_version_only(store: Store) -> None:
    store.replace_precomputed("v1", _chunks(_rows(4, 3, "old"), 5))
    store.replace_precomputed("v2", _chunks(_rows(4, 3, "other"), 5))
    info = store.replace_precomputed("v1", _chunks(_rows(2, 2, "new"), 3))
    assert (info.users, info.rows, info.k) == (2, 4, 2)
    cached = store.precomputed("v1", "u1")
    assert cached is not None and [e.item_id for e in cached.entries] == ["new-i1-1", "new-i1-2"]
    assert store.precomputed("v1", "u3") is None  # the old batch's rows are gone
    other = store.precomputed("v2", "u3")
    assert other is not None and other.entries[0].item_id == "other-i3-1"


def test_a_failed_load_keeps_the_previous_batch(store: Store) -> None:
    store.replace_precomputed("v1", _chunks(_rows(3, 2, "good"), 2))

    def failing() -> Iterator[list[PrecomputedRow]]:
        yield _rows(3, 2, "bad")[:2]
        raise DataError("bad chunk")

    with pytest.raises(DataError, match="bad chunk"):
        store.replace_precomputed("v1", failing())
    cached = store.precomputed("v1", "u0")
    assert cached is not None and cached.entries[0].item_id == "good-i0-1"
    info = store.precomputed_info("v1")
    assert info is not None and info.rows == 6
    # the staged rows went too: a new load sees only its own
    assert store.replace_precomputed("v1", _chunks(_rows(1, 1, "n"), 1)).rows == 1


@pytest.mark.parametrize("chunk", [2, 100], ids=["across chunks", "in one chunk"])
def test_a_users_rank_twice_is_a_data_error_and_the_previous_batch_stays(
    store: Store, chunk: int
) -> None:
    store.replace_precomputed("v1", _chunks(_rows(3, 2, "good"), 2))
    twice = _rows(2, 2, "a") + _rows(2, 2, "b")  # two batches' lists in one folder
    with pytest.raises(DataError, match="two rows of the same rank"):  # was IntegrityError
        store.replace_precomputed("v1", _chunks(twice, chunk))
    cached = store.precomputed("v1", "u2")
    assert cached is not None and cached.entries[0].item_id == "good-i2-1"


def _table(**overrides: pa.Array) -> pa.Table:
    columns = {
        "user": pa.array(["u1", "u1"]),
        "rank": pa.array([1, 2], pa.int32()),
        "item": pa.array(["a", "b"]),
        "score": pa.array([0.5, 0.25]),
        "explanation": pa.array([None, None], pa.string()),
        "history_events": pa.array([3, 3], pa.int64()),
        "history_latest": pa.array([9, 9], pa.int64()),
    }
    columns.update(overrides)
    return pa.table({k: v for k, v in columns.items() if v is not None})


def test_parquet_checks_name_the_problem(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    pq.write_table(_table(), good / "part-0.parquet")
    check_parquet(good)
    assert [len(c) for c in read_chunks(good, chunk_rows=1)] == [1, 1]

    missing = tmp_path / "missing.parquet"
    pq.write_table(_table().drop(["history_events"]), missing)
    with pytest.raises(DataError, match="history_events"):
        check_parquet(missing)
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(_table(score=pa.array(["high", "low"])), wrong)
    with pytest.raises(DataError, match="'score' must hold numbers"):
        check_parquet(wrong)
    bad_rank = tmp_path / "rank.parquet"
    pq.write_table(_table(rank=pa.array([0, 1], pa.int32())), bad_rank)
    with pytest.raises(DataError, match="rank must be >= 1"):
        list(read_chunks(bad_rank))
    with pytest.raises(DataError, match="no such file"):
        check_parquet(tmp_path / "absent")


def test_a_batch_keeps_the_reranking_it_was_computed_with(store: Store) -> None:
    store.replace_precomputed("v1", _chunks(_rows(2, 2, "a"), 3), '{"stages":[]}')
    cached = store.precomputed("v1", "u1")
    assert cached is not None and cached.rerank == '{"stages":[]}'
    store.replace_precomputed("v1", _chunks(_rows(2, 2, "b"), 3))  # not recorded
    cached = store.precomputed("v1", "u1")
    assert cached is not None and cached.rerank is None


def test_a_sqlite_store_made_before_the_record_of_reranking_gains_it(tmp_path: Path) -> None:
    from recsemble.store.sqlite import SQLiteStore

    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:  # as a store of an earlier recsemble had the table
        conn.execute("ALTER TABLE precomputed_batches DROP COLUMN rerank")
    store = SQLiteStore(path)
    try:
        store.replace_precomputed("v1", _chunks(_rows(1, 1, "a"), 1), "r")
        cached = store.precomputed("v1", "u0")
        assert cached is not None and cached.rerank == "r"
    finally:
        store.close()


def test_the_reranking_of_batch_lists_is_one_value(tmp_path: Path) -> None:
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    pq.write_table(_table(rerank=pa.array(["r", "r"])), one)
    assert batch_rerank(one) == "r"
    pq.write_table(_table(rerank=pa.array(["r", "s"])), two)
    with pytest.raises(DataError, match="more than one value"):
        batch_rerank(two)
    pq.write_table(_table(), tmp_path / "old.parquet")  # written before batch recorded it
    assert batch_rerank(tmp_path / "old.parquet") is None

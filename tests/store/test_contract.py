"""The Store contract: every test here runs against SQLite and PostgreSQL (conftest.store_url)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction

import pytest

from recsemble.store import MAX_ID_LENGTH, Event, Record, Store, StoredEvent
from recsemble.store.base import MAX_TIMESTAMP

StoreFactory = Callable[[], Store]  # the open_test_store fixture (conftest.py)


def _events(prefix: str, n: int, *, user: str = "u1") -> list[Event]:
    return [
        Event(f"{prefix}{i}", user, f"i{i % 7}", "view" if i % 2 else "cart", 1_700_000_000 + i)
        for i in range(n)
    ]


def _all_events(store: Store) -> list[StoredEvent]:
    return store.events_since(0, limit=1_000_000)


# -- events ----------------------------------------------------------------------------------
def test_events_come_back_in_batch_order_with_every_field(store: Store) -> None:
    batch = [
        Event("e1", "u1", "i1"),
        Event("e2", "u2", "i9", "purchase", 1_700_000_123, 4.5),
        Event("e3", "u1", "i2", "rating", -5, 0.0),
        Event("e4", "u3", "i3", "view", MAX_TIMESTAMP, -3.4e38),
    ]
    before = int(time.time())
    assert store.append_events(batch).accepted == 4
    stored = _all_events(store)
    assert [s.event for s in stored[1:]] == batch[1:]
    untimed = stored[0].event  # no time given: the append's clock, stored with it
    assert replace(untimed, timestamp=0) == batch[0]
    assert before <= untimed.timestamp <= time.time()
    seqs = [s.seq for s in stored]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4 and seqs[0] >= 1


def test_an_event_without_a_time_keeps_the_one_stored_for_it(
    open_test_store: StoreFactory,
) -> None:
    first = open_test_store()
    first.append_events([Event("untimed", "u1", "i1", "purchase")])
    stamped = _all_events(first)[0].event.timestamp
    assert stamped > 0
    again = open_test_store()  # a restart replays the log: the same time, not a new "now"
    assert _all_events(again)[0].event.timestamp == stamped
    again.append_events([Event("untimed", "u1", "i1", "purchase")])  # a retry: unchanged
    assert [s.event.timestamp for s in _all_events(again)] == [stamped]


def test_a_retried_batch_changes_nothing(store: Store) -> None:
    batch = _events("e", 5)
    empty = store.append_events([])
    assert (empty.accepted, empty.duplicates) == (0, 0)
    assert store.append_events(batch).accepted == 5
    before = _all_events(store)
    retry = store.append_events(batch)
    assert (retry.accepted, retry.duplicates) == (0, 5)
    mixed = store.append_events([*batch[:2], Event("new", "u9", "i9")])
    assert (mixed.accepted, mixed.duplicates) == (1, 2)
    after = _all_events(store)
    assert after[: len(before)] == before
    assert [s.event.event_id for s in after[len(before) :]] == ["new"]


def test_a_repeated_event_id_inside_one_batch_is_a_duplicate(store: Store) -> None:
    first, other = Event("x", "u1", "i1", "view", 1), Event("y", "u1", "i2", "view", 2)
    again = Event("x", "u2", "i3", "view", 3)
    result = store.append_events([first, other, again, other])
    assert (result.accepted, result.duplicates) == (2, 2)
    assert [s.event for s in _all_events(store)] == [first, other]  # the first occurrence wins


def test_an_event_id_seen_before_is_a_duplicate_even_with_other_fields(store: Store) -> None:
    store.append_events([Event("x", "u1", "i1", "view", 10)])
    result = store.append_events([Event("x", "u2", "i2", "cart", 20, 1.0)])
    assert (result.accepted, result.duplicates) == (0, 1)
    assert [s.event for s in _all_events(store)] == [Event("x", "u1", "i1", "view", 10)]


def test_set_event_types_refuses_other_types_from_every_writer(
    store: Store, open_test_store: StoreFactory
) -> None:
    """An ingest job appending through the store got a misspelt type stored (weighing 1 live
    and in retraining) where the API answered 409; the types the server sets now hold here."""
    store.set_event_types(["view", "purchase"])
    writer = open_test_store()  # another writer of the same store (closed by the fixture)
    bad = [Event("ok", "u1", "i1", "view", 1), Event("typo", "u1", "i2", "purchse", 2)]
    with pytest.raises(ValueError, match=r"events\[1\]\.type: 'purchse' .*purchase, view"):
        writer.append_events(bad)
    assert _all_events(store) == []  # the whole batch was refused
    assert writer.append_events([Event("p", "u1", "i2", "purchase", 2)]).accepted == 1
    store.set_event_types(None)  # a model without a weight table: any type again
    assert writer.append_events([bad[1]]).accepted == 1
    for wrong in ("view", [], [""]):
        with pytest.raises(ValueError, match="event types"):
            store.set_event_types(wrong)  # type: ignore[arg-type]


def test_events_since_pages_through_the_log(store: Store) -> None:
    for start in range(0, 23, 5):
        store.append_events(_events(f"b{start}-", min(5, 23 - start)))
    everything = _all_events(store)
    assert len(everything) == 23
    pages, cursor = [], 0
    while page := store.events_since(cursor, limit=4):
        assert len(page) <= 4
        pages.extend(page)
        cursor = page[-1].seq
    assert pages == everything
    assert store.events_since(everything[-1].seq) == []
    middle = everything[10].seq
    assert store.events_since(middle) == everything[11:]
    with pytest.raises(ValueError, match="limit"):
        store.events_since(0, limit=0)
    with pytest.raises(ValueError, match="cursor"):
        store.events_since(-1)
    assert store.events_since(0, limit=2**63 - 1) == everything  # sys.maxsize: "all of them"
    for cursor, limit in ((0, 2**63), (2**63, 5)):  # SQLite: OverflowError, PostgreSQL: not
        with pytest.raises(ValueError, match="64-bit"):
            store.events_since(cursor, limit)


def test_seq_keeps_growing_across_batches(store: Store) -> None:
    store.append_events(_events("a", 3))
    high = _all_events(store)[-1].seq
    store.append_events(_events("a", 3))  # all duplicates: no seq taken
    store.append_events(_events("b", 2))
    later = store.events_since(high)
    assert [s.event.event_id for s in later] == ["b0", "b1"]
    assert all(s.seq > high for s in later)


# -- items and users -------------------------------------------------------------------------
def test_upsert_get_and_changed_since(store: Store) -> None:
    store.upsert("item", [Record("a", {"title": "A", "tags": ["x", "y"]}), Record("b")])
    got = store.get("item", ["a", "b", "missing"])
    assert set(got) == {"a", "b"}
    assert got["a"].attributes == {"title": "A", "tags": ["x", "y"]}
    assert got["b"].attributes == {} and not got["b"].deleted
    changed = store.changed_since("item", 0)
    assert [r.id for r in changed] == ["a", "b"]
    assert changed[0].updated_seq < changed[1].updated_seq
    cursor = changed[-1].updated_seq
    assert store.changed_since("item", cursor) == []
    store.upsert("item", [Record("a", {"title": "A2"})])
    (update,) = store.changed_since("item", cursor)
    assert update.id == "a" and update.attributes == {"title": "A2"}
    assert update.updated_seq > cursor
    assert store.get("item", ["a"])["a"] == update


def test_a_repeated_id_inside_one_upsert_keeps_the_last_value(store: Store) -> None:
    store.upsert("user", [Record("u", {"v": 1}), Record("w"), Record("u", {"v": 2})])
    assert store.get("user", ["u"])["u"].attributes == {"v": 2}
    assert sorted(r.id for r in store.changed_since("user", 0)) == ["u", "w"]


def test_delete_is_soft_and_upsert_undeletes(store: Store) -> None:
    store.upsert("item", [Record("a", {"title": "A"}), Record("b")])
    cursor = max(r.updated_seq for r in store.changed_since("item", 0))
    assert store.delete("item", "a") is True
    assert store.delete("item", "a") is False  # already gone
    gone = store.get("item", ["a"])["a"]
    assert gone.deleted and gone.updated_seq > cursor
    assert store.changed_since("item", cursor) == [gone]
    store.upsert("item", [Record("a", {"title": "back"})])
    back = store.get("item", ["a"])["a"]
    assert not back.deleted and back.attributes == {"title": "back"}
    assert back.updated_seq > gone.updated_seq
    assert store.get("item", ["b"])["b"].updated_seq <= cursor  # untouched


def test_deleting_an_id_never_stored_leaves_a_tombstone_readers_replay(store: Store) -> None:
    """An item of the training data was never upserted; its deletion must still be replayed
    by a restarted server (which rebuilds from changed_since)."""
    store.upsert("item", [Record("a")])
    cursor = store.changed_since("item", 0)[-1].updated_seq
    assert store.delete("item", "trained-only") is False  # no live record had the id
    tomb = store.get("item", ["trained-only"])["trained-only"]
    assert tomb.deleted and tomb.attributes == {} and tomb.updated_seq > cursor
    assert store.changed_since("item", cursor) == [tomb]
    assert store.delete("item", "trained-only") is False
    assert store.changed_since("item", cursor) == [tomb]  # a second delete changes nothing
    assert "trained-only" not in store.get("user", ["trained-only"])
    store.upsert("item", [Record("trained-only", {"title": "back"})])
    assert not store.get("item", ["trained-only"])["trained-only"].deleted


def test_items_and_users_are_separate_but_share_one_change_counter(store: Store) -> None:
    store.upsert("item", [Record("x", {"kind": "item"})])
    store.upsert("user", [Record("x", {"kind": "user"})])
    assert store.get("item", ["x"])["x"].attributes == {"kind": "item"}
    assert store.get("user", ["x"])["x"].attributes == {"kind": "user"}
    assert store.delete("user", "x")
    assert not store.get("item", ["x"])["x"].deleted
    item_seq = store.changed_since("item", 0)[0].updated_seq
    (user,) = store.changed_since("user", 0)
    assert user.updated_seq > item_seq
    assert store.get("user", []) == {}


def test_unicode_and_longest_ids_round_trip(store: Store) -> None:
    ids = ["ユーザー", "🎬 film", "cafe\u0301", "a" * MAX_ID_LENGTH, "with space/and?query=1"]
    events = [Event(f"ev-{x}"[:MAX_ID_LENGTH], x, x, "view", 1_700_000_000) for x in ids]
    assert store.append_events(events).accepted == len(ids)
    assert [s.event for s in _all_events(store)] == events
    store.upsert("item", [Record(x, {"title": x, "ü": "ß"}) for x in ids])
    got = store.get("item", ids)
    assert set(got) == set(ids)
    assert all(got[x].attributes == {"title": x, "ü": "ß"} for x in ids)


def test_values_of_any_number_type_come_back_as_floats(store: Store) -> None:
    """numpy's float32 and int64 and a Fraction are numbers (a value read from an array); SQLite
    could not bind them (IntegrityError, ProgrammingError) while PostgreSQL stored them."""
    import numpy as np

    values = [np.float32(1.5), np.int64(3), Fraction(1, 4), 2**64, 4]
    events = [Event(f"v{n}", "u", "i", "rating", 1_700_000_000, v) for n, v in enumerate(values)]
    assert store.append_events(events).accepted == len(values)
    stored = [s.event.value for s in _all_events(store)]
    assert stored == [float(v) for v in values]
    assert all(type(v) is float for v in stored)


def test_the_store_id_is_made_once_and_kept(open_test_store: StoreFactory) -> None:
    first = open_test_store().store_id()
    assert first and open_test_store().store_id() == first  # reopened: the same store


# -- bad input -------------------------------------------------------------------------------
BAD_EVENTS = [
    (Event("x" * (MAX_ID_LENGTH + 1), "u", "i"), "event_id"),
    (Event("", "u", "i"), "event_id"),
    (Event("e", "", "i"), "user_id"),
    (Event("e", "u", "i" * (MAX_ID_LENGTH + 1)), "item_id"),
    (Event("e", "u", "i\x00"), "item_id"),
    (Event("e", "u\ud800", "i"), "user_id"),
    (Event("e", "u", "i", ""), "type"),
    # ids a data file cannot hold back: every retraining failed on them ("missing user_id")
    (Event("e", " u", "i"), "user_id"),
    (Event("e", "u", "None"), "item_id"),
    (Event("e", "nan", "i"), "user_id"),
    (Event("e", "u", "i", value=math.nan), "value"),
    (Event("e", "u", "i", value=math.inf), "value"),
    (Event("e", "u", "i", value=-math.inf), "value"),
    (Event("e", "u", "i", value=10**400), "value"),  # was OverflowError, not naming the field
    (Event("e", "u", "i", value=1e39), "value"),  # inf as float32: every retraining failed
    (Event("e", "u", "i", timestamp=1.5), "timestamp"),  # type: ignore[arg-type]
    (Event("e", "u", "i", timestamp=2**63), "timestamp"),
    (Event("e", "u", "i", timestamp=1_795_000_000_000), "timestamp"),  # ms: failed retraining
    (Event(7, "u", "i"), "event_id"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("bad", "field"), BAD_EVENTS, ids=[f for _, f in BAD_EVENTS])
def test_a_bad_event_rejects_its_whole_batch(store: Store, bad: Event, field: str) -> None:
    good = _events("ok", 3)
    with pytest.raises(ValueError, match=rf"events\[2\]\.{field}"):
        store.append_events([good[0], good[1], bad, good[2]])
    assert _all_events(store) == []
    assert store.append_events(good).accepted == 3  # the same good events are still new


BAD_RECORDS = [
    (Record("x" * (MAX_ID_LENGTH + 1)), r"records\[1\]\.id"),
    (Record(""), r"records\[1\]\.id"),
    (Record("a\x00b"), r"records\[1\]\.id"),
    (Record("b", {"score": math.nan}), r"records\[1\]\.attributes"),
    (Record("b", {"when": object()}), r"records\[1\]\.attributes"),
    (Record("b", {1: "x"}), r"records\[1\]\.attributes"),  # type: ignore[dict-item]
    (Record("b", {"t": "nul\x00"}), r"records\[1\]\.attributes"),
    (Record("null"), r"records\[1\]\.id: 'null' means a missing value"),
    (Record("b\u3000"), r"records\[1\]\.id: .* whitespace"),
]


@pytest.mark.parametrize(
    ("bad", "field"), BAD_RECORDS, ids=[f"r{i}" for i, _ in enumerate(BAD_RECORDS)]
)
def test_a_bad_record_rejects_its_whole_batch(store: Store, bad: Record, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        store.upsert("item", [Record("ok"), bad, Record("ok2")])
    assert store.changed_since("item", 0) == []
    assert store.get("item", ["ok", "ok2"]) == {}


def test_an_unknown_kind_is_refused_by_every_method(store: Store) -> None:
    for call in (
        lambda: store.upsert("movie", [Record("a")]),
        lambda: store.delete("movie", "a"),
        lambda: store.get("movie", ["a"]),
        lambda: store.changed_since("movie", 0),
    ):
        with pytest.raises(ValueError, match="kind"):
            call()
    assert store.changed_since("item", 0) == [] and store.changed_since("user", 0) == []


def test_one_id_where_a_list_belongs_is_refused(store: Store) -> None:
    store.upsert("item", [Record("5001", {"title": "x"})])
    with pytest.raises(ValueError, match="record_ids: must be a list of ids"):
        store.get("item", "5001")  # its characters were looked up: {} although it is stored
    assert list(store.get("item", ["5001"])) == ["5001"]


# -- concurrency and durability --------------------------------------------------------------
def test_concurrent_appends_lose_nothing_duplicate_nothing_and_follow_in_order(
    store: Store,
) -> None:
    """Six writers (pairs share ids, like clients retrying) and one follower reading the log
    with a moving cursor: the follower ends with every event exactly once."""
    writers, batches, size = 6, 20, 5
    results: list[tuple[int, int]] = []
    followed: list[StoredEvent] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for b in range(batches):
                ids = [f"p{worker // 2}-{b}-{j}" for j in range(size)]
                res = store.append_events([Event(i, f"u{worker}", "it") for i in ids])
                results.append((res.accepted, res.duplicates))
        except BaseException as exc:
            errors.append(exc)

    def follow() -> None:
        cursor = 0
        while True:
            finished = done.is_set()  # read before the last look, so nothing is left behind
            page = store.events_since(cursor, limit=7)
            followed.extend(page)
            cursor = page[-1].seq if page else cursor
            if finished and not page:
                return

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    follower = threading.Thread(target=follow)
    follower.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    follower.join(timeout=30)
    assert not errors and not follower.is_alive()
    unique = (writers // 2) * batches * size
    assert sum(a for a, _ in results) == unique
    assert sum(d for _, d in results) == writers * batches * size - unique
    stored = _all_events(store)
    assert len(stored) == unique
    assert Counter(s.event.event_id for s in stored).most_common(1)[0][1] == 1
    assert followed == stored  # the follower missed nothing and saw nothing twice


def test_concurrent_upserts_get_distinct_growing_change_numbers(store: Store) -> None:
    def write(worker: int) -> None:
        for n in range(15):
            store.upsert("item", [Record(f"w{worker}-{n}", {"n": n})])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    changed = store.changed_since("item", 0)
    assert len(changed) == 60
    seqs = [r.updated_seq for r in changed]
    assert seqs == sorted(seqs) and len(set(seqs)) == 60


def test_everything_survives_close_and_reopen(open_test_store: StoreFactory) -> None:
    first = open_test_store()
    first.append_events(_events("e", 4))
    first.upsert("item", [Record("a", {"t": 1}), Record("b")])
    first.upsert("user", [Record("u", {"segment": "s"})])
    first.delete("item", "b")
    events, items = _all_events(first), first.changed_since("item", 0)
    first.close()
    with pytest.raises(Exception):  # noqa: B017 - either backend's "closed" error
        first.ping()

    second = open_test_store()
    second.ping()
    assert _all_events(second) == events
    assert second.changed_since("item", 0) == items
    assert second.get("user", ["u"])["u"].attributes == {"segment": "s"}
    assert second.append_events(_events("e", 4)).duplicates == 4  # idempotency kept
    second.append_events([Event("later", "u", "i")])
    assert _all_events(second)[-1].seq > events[-1].seq
    second.upsert("item", [Record("c")])
    assert second.get("item", ["c"])["c"].updated_seq > max(r.updated_seq for r in items)

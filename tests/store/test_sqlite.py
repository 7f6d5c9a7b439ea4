"""SQLite specifics: every pragma on every thread's connection, the schema version, URLs."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recsemble.errors import ConfigError, DataError
from recsemble.store import Event, open_store
from recsemble.store.sqlite import SQLiteStore

EXPECTED_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 2,  # FULL
    "busy_timeout": 5000,
    "foreign_keys": 1,
    "wal_autocheckpoint": 1000,
    "journal_size_limit": 64 * 1024 * 1024,
    "temp_store": 2,  # MEMORY
    "trusted_schema": 0,
    "cell_size_check": 1,
    "recursive_triggers": 0,
}


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    assert isinstance(store, SQLiteStore)
    yield store
    store.close()


def test_every_pragma_is_set_on_every_threads_connection(sqlite_store: SQLiteStore) -> None:
    assert sqlite_store.settings() == EXPECTED_PRAGMAS
    seen: list[dict[str, object]] = []
    thread = threading.Thread(target=lambda: seen.append(sqlite_store.settings()))
    thread.start()
    thread.join()
    assert seen == [EXPECTED_PRAGMAS]


def test_the_file_is_in_wal_mode_with_a_versioned_schema(sqlite_store: SQLiteStore) -> None:
    with sqlite3.connect(sqlite_store.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert {"events", "records"} <= tables


def test_a_write_waits_for_another_process_writer(sqlite_store: SQLiteStore) -> None:
    """Another connection (as another process would) holds the write lock: the append waits
    (busy_timeout) and lands after it, with the next seq."""
    raw = sqlite3.connect(sqlite_store.path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    raw.execute(
        "INSERT INTO events (event_id, user_id, item_id, type, timestamp) "
        "VALUES ('open', 'u', 'i', 'view', 0)"
    )
    finished = threading.Event()

    def append() -> None:
        sqlite_store.append_events([Event("later", "u", "i")])
        finished.set()

    worker = threading.Thread(target=append)
    worker.start()
    time.sleep(0.3)
    assert not finished.is_set()
    raw.execute("COMMIT")
    raw.close()
    assert finished.wait(5)
    worker.join()
    assert [s.event.event_id for s in sqlite_store.events_since(0)] == ["open", "later"]


def test_a_file_of_another_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE notes (x)")
    with pytest.raises(DataError, match="not a recsemble store"):
        open_store(f"sqlite:///{path}")


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: p.write_text("user_id,item_id\n1,2\n"), "not an SQLite database"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: (p.parent / "parent").write_text("x"), "File exists"),
    ],
    ids=["text file", "folder", "parent is a file"],
)
def test_a_path_that_cannot_hold_a_store_is_one_clear_error(
    tmp_path: Path, make: Callable[[Path], object], said: str
) -> None:
    path = tmp_path / "store.db"
    make(path)
    target = tmp_path / "parent" / "store.db" if said == "File exists" else path
    with pytest.raises(DataError, match=f"cannot open it as a store: .*{said}") as caught:
        open_store(f"sqlite:///{target}")
    assert str(target) in str(caught.value)
    if path.is_file():
        assert path.read_text().startswith("user_id")  # the file is left as it was


def test_another_file_is_another_store_and_a_copy_the_same(tmp_path: Path) -> None:
    ids = []
    for name in ("a.db", "b.db"):
        store = open_store(f"sqlite:///{tmp_path / name}")
        ids.append(store.store_id())
        store.close()
    assert ids[0] != ids[1]
    (tmp_path / "copy.db").write_bytes((tmp_path / "a.db").read_bytes())
    copy = open_store(f"sqlite:///{tmp_path / 'copy.db'}")
    assert copy.store_id() == ids[0]  # a moved or backed-up store keeps its identity
    copy.close()


def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 7")
    with pytest.raises(DataError, match="schema version 7"):
        open_store(f"sqlite:///{path}")


def test_a_home_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    open_store("sqlite:///~/data/x.db").close()
    assert (home / "data" / "x.db").is_file()
    assert not (work / "~").exists()  # a folder named "~" was made in the working directory


def test_relative_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///data/rel.db")
    relative.close()
    assert (tmp_path / "data" / "rel.db").is_file()  # parent folders are created
    absolute = tmp_path / "abs" / "a.db"
    assert str(absolute).startswith(os.sep)
    open_store(f"sqlite:///{absolute}").close()  # four slashes: sqlite:////tmp/...
    assert absolute.is_file()


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///:memory:", "sqlite:///file::memory:"])
def test_an_in_memory_database_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="file path"):
        open_store(url)


@pytest.mark.parametrize("url", ["sqlite:///out/x.db?mode=ro", "sqlite:///x.db?timeout=5"])
def test_options_after_a_question_mark_are_refused(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="take no options"):
        open_store(url)
    assert list(tmp_path.rglob("*.db*")) == []  # no file named "x.db?mode=ro" was made


@pytest.mark.parametrize("url", ["mysql://u@h/db", "store.db", "sqlite://relative.db", ""])
def test_an_unknown_scheme_names_the_two_that_work(url: str) -> None:
    with pytest.raises(ConfigError, match=r"sqlite:///.*postgresql://"):
        open_store(url)


def test_a_closed_store_refuses_calls_from_any_thread(sqlite_store: SQLiteStore) -> None:
    sqlite_store.close()
    with pytest.raises(RuntimeError, match="closed"):
        sqlite_store.events_since(0)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            sqlite_store.ping()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert len(errors) == 1

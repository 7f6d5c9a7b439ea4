"""Stores for the contract tests: an SQLite file per test, and a PostgreSQL schema per test.

PostgreSQL comes from $RECSEMBLE_TEST_POSTGRES_URL when set; otherwise the session starts a
throwaway cluster (initdb into a temp folder, a unix socket there, no TCP listener) and removes
it at the end. initdb refuses to run as root, so as root the server runs as the `postgres`
user that Debian's package creates. When no PostgreSQL can be found or started the PostgreSQL
tests skip with the reason, except in CI (env CI set), where they fail: `make test` installs
the server there, so a missing one is a broken setup, not an optional extra.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest

from recsemble.store import Store, open_store

POSTGRES_URL_ENV = "RECSEMBLE_TEST_POSTGRES_URL"
SERVER_USER = "postgres"
BACKENDS = ("sqlite", "postgresql")

StoreFactory = Callable[[], Store]


def find_postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: PATH, Debian's versioned folders, /usr/local."""
    folders = []
    on_path = shutil.which("initdb")
    if on_path:
        folders.append(Path(on_path).resolve().parent)
    versioned = Path("/usr/lib/postgresql").glob("*/bin")
    folders += sorted(versioned, key=lambda p: _version_key(p.parent.name), reverse=True)
    folders += [Path("/usr/local/bin"), Path("/usr/local/pgsql/bin")]
    for folder in folders:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


class PostgresUnavailable(Exception):
    """Why no throwaway PostgreSQL could be started."""


@dataclass
class ThrowawayCluster:
    """A PostgreSQL cluster in a temp folder, reachable only through its unix socket."""

    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="recsemble-pg-")))
    port: int = 0
    database: str = "recsemble_test"

    def start(self) -> str:
        self._prepare_root()
        data, sockets = self.root / "data", self.root / "sockets"
        self._run([self.bindir / "initdb", "-D", data, "-U", SERVER_USER, "-A", "trust",
                   "-E", "UTF8", "--no-locale", "--no-sync"])  # fmt: skip
        sockets.mkdir()
        self._own(sockets)
        self.port = _free_port()
        options = f"-p {self.port} -k {sockets} -c listen_addresses='' -c fsync=off"
        self._run([self.bindir / "pg_ctl", "-D", data, "-l", self.root / "server.log",
                   "-w", "-t", "60", "-o", options, "start"])  # fmt: skip
        self._run([self.bindir / "createdb", "-h", sockets, "-p", str(self.port),
                   "-U", SERVER_USER, self.database])  # fmt: skip
        return f"postgresql://{SERVER_USER}@/{self.database}?host={sockets}&port={self.port}"

    def stop(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            self._run([self.bindir / "pg_ctl", "-D", self.root / "data", "-m", "immediate",
                       "stop"], check=False)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)

    def _prepare_root(self) -> None:
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root and there is no {SERVER_USER!r} user to run the server "
                    "as (initdb refuses root)"
                ) from None
        self._own(self.root)

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(path, user.pw_uid, user.pw_gid)

    def _run(self, argv: list[str | Path], *, check: bool = True) -> None:
        command = [str(arg) for arg in argv]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            runuser = shutil.which("runuser")
            if runuser:
                command = [runuser, "-u", SERVER_USER, "--", *command]
            else:
                command = ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(command)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if check and done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"`{shlex.join(command)}` exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}\n{tail}".strip()
            )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where `make test` installs PostgreSQL first."""
    message = f"PostgreSQL store tests: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A PostgreSQL database URL for the whole session (see the module docstring)."""
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        yield given
        return
    bindir = find_postgres_bin()
    if bindir is None:
        _unavailable(
            "no initdb/pg_ctl found on PATH, in /usr/lib/postgresql/*/bin or /usr/local "
            f"(install the Debian package `postgresql` or set {POSTGRES_URL_ENV})"
        )
        return
    cluster = ThrowawayCluster(bindir)
    try:
        url = cluster.start()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
        cluster.stop()
        _unavailable(f"could not start a throwaway cluster with {bindir}: {exc}")
        return
    try:
        yield url
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """The session's database seen through a fresh schema of its own (dropped afterwards)."""
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(postgres_server_url, schema)
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def with_search_path(url: str, schema: str) -> str:
    """The URL with libpq `options` setting the search_path (so tables land in `schema`)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-c search_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote, safe="/")))


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty store of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def open_test_store(store_url: str) -> Iterator[StoreFactory]:
    """Opens the test's store (again, for reopen tests); closes every one it opened."""
    opened: list[Store] = []

    def factory() -> Store:
        opened.append(open_store(store_url))
        return opened[-1]

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_test_store: StoreFactory) -> Store:
    return open_test_store()

"""Opening a database for the store: URL resolution, engine set-up per backend, and database errors
translated into ``StoreError`` messages that say what happened and what to do.

SQLite gets WAL (readers never wait for the writer), a busy timeout, foreign keys on, and write
transactions that start with ``BEGIN IMMEDIATE``: a deferred transaction that reads first and writes later
fails at once with "database is locked" when another writer got in between, without waiting.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import QueuePool, StaticPool

from palaestra.core import MissingDependencyError, StoreError

DEFAULT_URL = "sqlite:///palaestra.db"
ENV_VAR = "PALAESTRA_DB"
WRITE_OPTION = "palaestra_write"  # execution option that marks a connection's transaction as a writer


@dataclass(frozen=True)
class Target:
    """Where a store lives: the parsed URL, and for a SQLite file its absolute path."""

    url: URL
    sqlite_path: Path | None  # None for PostgreSQL and other servers, and for in-memory SQLite
    memory: bool = False

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    @property
    def display(self) -> str:
        """The URL as it may be shown in messages: password hidden, SQLite paths made absolute."""
        if self.sqlite_path is not None:
            return f"sqlite:///{self.sqlite_path}"
        return self.url.render_as_string(hide_password=True)


def resolve(url: str | None) -> Target:
    """Turn ``Store``'s ``url`` argument (None, a URL, or a bare file path) into a ``Target``."""
    text = url if url is not None else os.environ.get(ENV_VAR) or DEFAULT_URL
    if "://" not in text:  # a bare path names a SQLite file
        return Target(make_url("sqlite://"), Path(text).expanduser().absolute())
    try:
        parsed = make_url(text)
    except (exc.ArgumentError, ValueError) as e:  # ValueError: e.g. a port that is not a number
        raise StoreError(
            f"{text!r} is not a database URL ({e}). Use a SQLite file path, 'sqlite:///path/to/file.db' "
            "or 'postgresql+psycopg://user@host:port/dbname'."
        ) from e
    if parsed.get_backend_name() != "sqlite":
        return Target(parsed, None)
    if parsed.query:
        raise StoreError(
            f"options in a SQLite URL ({', '.join(parsed.query)}) are not supported by the store: use "
            "Store(url, readonly=True) to open read-only and Store(url, busy_timeout=...) for the lock wait."
        )
    database = parsed.database or ":memory:"
    if database == ":memory:":
        return Target(parsed, None, memory=True)
    return Target(parsed, Path(database).expanduser().absolute())


# --------------------------------------------------------------------------- engines


def _sqlite_engine(target: Target, *, readonly: bool, busy_timeout: float) -> Engine:
    path = target.sqlite_path
    mode = "ro"
    if readonly and path is not None and _frozen(path):
        # SQLite's read-only mode still needs a -shm file beside a WAL database, which a read-only
        # directory cannot get. With no -wal/-shm there, the file alone is the whole database and no
        # writer can appear (it would need those files), so reading it as immutable is exact.
        mode = "ro&immutable=1"

    def connect() -> sqlite3.Connection:
        # isolation_level=None: the driver never issues BEGIN itself; the "begin" hook below does, so that
        # writers can ask for IMMEDIATE. The busy timeout is how long a statement waits for a lock.
        if target.memory:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        elif readonly:
            conn = sqlite3.connect(
                f"file:{quote(str(path))}?mode={mode}",
                uri=True,
                timeout=busy_timeout,
                check_same_thread=False,
                isolation_level=None,
            )
        else:
            conn = sqlite3.connect(str(path), timeout=busy_timeout, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA foreign_keys=ON")
        if not readonly and not target.memory:
            # Persistent in the file (a no-op once set); SQLite only accepts it outside a transaction.
            conn.execute("PRAGMA journal_mode=WAL")
            # Per connection, and stated rather than left to the build's default. In WAL mode NORMAL keeps
            # every committed episode when the process is killed (the promise we make); only a power cut
            # may lose the last commits. FULL would fsync each episode: about 5 ms, 20x the runner's own
            # per-episode cost for scripted agents (benchmarks/env_steps.py).
            conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    # An in-memory database exists once per connection, so all users must share the one connection.
    pool = StaticPool if target.memory else QueuePool
    engine = create_engine("sqlite://", creator=connect, poolclass=pool)

    @event.listens_for(engine, "begin")
    def begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _server_engine(target: Target, *, readonly: bool) -> Engine:
    connect_args: dict[str, Any] = {}
    if target.backend == "postgresql":
        if "connect_timeout" not in target.url.query:
            connect_args["connect_timeout"] = 10  # fail fast when the server is down, not after minutes
        if readonly:
            # The server itself refuses writes, whatever a caller does with the connection.
            connect_args["options"] = "-c default_transaction_read_only=on"
    try:
        # pre-ping: a long run outlives idle connections that a server or a firewall drops.
        return create_engine(target.url, pool_pre_ping=True, connect_args=connect_args)
    except ModuleNotFoundError as e:
        raise MissingDependencyError(
            f"the store at {target.display}", "pip install 'palaestra[postgres]' (installs psycopg)"
        ) from e
    except exc.ArgumentError as e:
        raise StoreError(f"cannot use database URL {target.display}: {e}") from e


def make_engine(target: Target, *, readonly: bool, busy_timeout: float) -> Engine:
    if target.backend == "sqlite":
        return _sqlite_engine(target, readonly=readonly, busy_timeout=busy_timeout)
    return _server_engine(target, readonly=readonly)


def _frozen(path: Path) -> bool:
    """True when the database's directory cannot be written and it has no -wal or -shm file."""
    return not os.access(path.parent, os.W_OK) and not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()


def check_sqlite_file(target: Target, *, readonly: bool) -> None:
    """Refuse, before SQLite gives a vaguer error, a file that is missing or cannot be written.

    ``os.access`` sees read-only mounts and immutable files even for root; plain permission bits do not
    stop root, and then neither does this check (nor SQLite).
    """
    path = target.sqlite_path
    if path is None:
        return
    if readonly:
        if not path.exists():
            raise StoreError(
                f"no palaestra database at {path}: the file does not exist, so there is nothing to read. "
                f"Check the path (or {ENV_VAR}), or record a run there first."
            )
        return
    directory = path.parent
    if not directory.is_dir():
        raise StoreError(
            f"cannot create the SQLite database {path}: the directory {directory} does not exist. "
            "Create it or choose another path."
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise StoreError(_readonly_message(target, f"the file {path} is not writable"))
    # SQLite creates the database, and its -wal/-shm files, next to it.
    if not os.access(directory, os.W_OK) and not Path(f"{path}-wal").exists():
        raise StoreError(_readonly_message(target, f"the directory {directory} is not writable"))


# --------------------------------------------------------------------------- errors


def _readonly_message(target: Target, detail: str) -> str:
    return (
        f"the database {target.display} is read-only: {detail}. Fix: make the file and its directory "
        "writable (chmod u+w, or chattr -i if it was made immutable, or remount read-write), or open it "
        "with Store(..., readonly=True) if you only want to read it."
    )


def translate(error: exc.DBAPIError, target: Target, busy_timeout: float) -> StoreError:
    """A ``StoreError`` that says what a database error means for the store and how to fix it."""
    orig = error.orig
    if isinstance(orig, sqlite3.Error):
        name = getattr(orig, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreError(
                f"database is locked by another process: {target.display} stayed locked for longer than "
                f"the busy timeout ({busy_timeout:g} s). Another writer (a palaestra run, or a program such "
                "as a sqlite3 shell left inside a transaction) holds it. Fix: wait for it or stop it, raise "
                "the timeout with Store(..., busy_timeout=seconds), or use PostgreSQL for many writers."
            )
        if name.startswith("SQLITE_READONLY"):
            return StoreError(_readonly_message(target, str(orig)))
        if name.startswith("SQLITE_CANTOPEN"):
            return StoreError(
                f"cannot open the SQLite database {target.display}: {orig}. Check that the path is right "
                "and that its directory exists and is readable (and writable, unless readonly=True)."
            )
        if name == "SQLITE_NOTADB":
            return StoreError(
                f"{target.display} is not a SQLite database ({orig}); it must not be overwritten. Point the "
                f"store (or {ENV_VAR}) at a palaestra database or at a path where a new one can be made."
            )
        if name.startswith("SQLITE_FULL"):
            return StoreError(f"the disk holding {target.display} is full ({orig}); free space and retry.")
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == "25006":
        return StoreError(_readonly_message(target, "the session is read-only (default_transaction_read_only is on)"))
    if sqlstate == "42501":
        return StoreError(
            f"the database user may not do this on {target.display}: {orig}. Grant the user the needed "
            "privileges (CREATE on the schema to create the tables, INSERT/UPDATE/DELETE to record runs)."
        )
    if target.backend == "postgresql" and isinstance(error, exc.OperationalError) and sqlstate is None:
        # psycopg gives connection failures (server down, unknown database, refused login) no SQLSTATE.
        return StoreError(
            f"cannot connect to PostgreSQL at {target.display}: {str(orig).strip()}. Fix: start the server "
            "(scripts/postgres.sh starts a local one for tests), check that the database exists "
            f"(createdb) and that the URL (or {ENV_VAR}) is right."
        )
    return StoreError(f"database error on {target.display}: {orig}")


@contextmanager
def translated(target: Target, busy_timeout: float) -> Iterator[None]:
    """Re-raise database errors inside the block as ``StoreError`` (other exceptions pass unchanged)."""
    try:
        yield
    except exc.DBAPIError as e:
        raise translate(e, target, busy_timeout) from e

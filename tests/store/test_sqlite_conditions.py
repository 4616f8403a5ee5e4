"""SQLite files in trouble, produced for real: locked by another process, read-only, not a database; and
how ``Store`` finds its database (URL, bare path, ``$PALAESTRA_DB``)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from store_samples import SPEC, make_episode

from palaestra.core import StoreError
from palaestra.store import Store

# --------------------------------------------------------------------------- locks

# A second process that takes SQLite's EXCLUSIVE lock on the file and keeps it until its stdin closes.
LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@contextmanager
def locked_by_another_process(path: Path) -> Iterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)


def run_config() -> dict:
    return {"seeds": [0, 1]}


def test_write_to_a_locked_database_fails_in_bounded_time(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with Store(path.as_posix(), busy_timeout=0.5) as store:
        run_id = store.create_run(
            env_spec=SPEC, agent_spec="prompt", model_spec=None, weights_hash=None, config=run_config()
        )
        with locked_by_another_process(path):
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"database is locked by another process.*busy timeout \(0.5 s\)"):
                store.record_episode(run_id, make_episode(0))
            waited = time.monotonic() - started
            assert 0.4 < waited < 5, waited  # it waited for the lock, then gave up
            # WAL: readers are not blocked by the writer's lock (a dashboard keeps working during a run)
            assert store.get_run(run_id).id == run_id
            assert store.episodes(run_id) == []
        # Released: the same store writes again; the failed episode left nothing behind.
        store.record_episode(run_id, make_episode(0))
        assert [e.seed for e in store.episodes(run_id)] == [0]


def test_opening_a_locked_database_fails_in_bounded_time(tmp_path: Path) -> None:
    # A file in the default rollback-journal mode, as another program would leave it: its exclusive lock
    # blocks even the switch to WAL that opening does.
    path = tmp_path / "other.db"
    sqlite3.connect(path).close()
    with locked_by_another_process(path):
        started = time.monotonic()
        with pytest.raises(StoreError, match="database is locked by another process"):
            Store(path.as_posix(), busy_timeout=0.3)
        assert time.monotonic() - started < 5
    Store(path.as_posix()).close()  # fine once the lock is gone


# --------------------------------------------------------------------------- read-only files
#
# Root ignores permission bits, and the tests may run as root. Two real read-only conditions, each
# used where the machine allows it (skipped, with the reason, where it does not):
#   "immutable": chattr +i, which the kernel enforces for root too (needs CAP_LINUX_IMMUTABLE and ext4,
#                xfs, btrfs or similar; Docker's default capabilities lack it);
#   "permissions": chmod a-w; as root, the store is then opened by a forked child that has dropped to
#                the `nobody` user, so the kernel applies the permission bits.


def _chattr(flag: str, path: Path) -> str | None:
    """Run chattr; None when it worked, else why not."""
    chattr = shutil.which("chattr")
    if chattr is None:
        return "chattr is not installed"
    done = subprocess.run([chattr, flag, str(path)], capture_output=True, text=True)
    return None if done.returncode == 0 else done.stderr.strip() or f"chattr exited {done.returncode}"


def _unprivileged(action: Callable[[], object]) -> str:
    """Run ``action`` in a forked child as ``nobody``; return the error message it raised ("" if none)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        message = ""
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            action()
        except BaseException as e:
            message = f"{type(e).__name__}: {e}"
        os.write(write_end, (message or "-").encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        message = reader.read()
    os.waitpid(pid, 0)
    return "" if message == "-" else message


@pytest.fixture(params=["immutable", "permissions"])
def read_only(request: pytest.FixtureRequest, shared_dir: Path) -> Iterator[Callable[[Path], None]]:
    """Returns ``protect(path)``, which makes a file or directory read-only for real until the test ends.

    Depends on ``shared_dir`` so that the protection is lifted before the directory is removed.
    """
    how = request.param
    protected: list[tuple[Path, int]] = []

    def protect(path: Path) -> None:
        if how == "immutable":
            if os.geteuid() != 0:
                pytest.skip("chattr +i needs root; the 'permissions' variant covers this user")
            why = _chattr("+i", path)
            if why is not None:
                pytest.skip(f"cannot make {path} immutable here ({why}); the 'permissions' variant still runs")
        else:
            path.chmod(0o555 if path.is_dir() else 0o444)
        protected.append((path, path.stat().st_mode))

    protect.how = how  # type: ignore[attr-defined]
    yield protect
    for path, mode in protected:
        if how == "immutable":
            _chattr("-i", path)
        else:
            path.chmod(mode | 0o200)


def open_store(protect: Callable[[Path], None], url: str) -> str:
    """Open a writable Store on ``url`` the way the read-only condition needs; return the error text."""
    if protect.how == "permissions" and os.geteuid() == 0:  # type: ignore[attr-defined]
        return _unprivileged(lambda: Store(url).close())
    try:
        Store(url).close()
    except StoreError as e:
        return f"StoreError: {e}"
    return ""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A scratch directory the unprivileged child can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="palaestra-ro-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_read_only_file(read_only: Callable[[Path], None], shared_dir: Path) -> None:
    path = shared_dir / "runs.db"
    with Store(path.as_posix()) as store:
        run_id = store.create_run(
            env_spec=SPEC, agent_spec="prompt", model_spec=None, weights_hash=None, config=run_config()
        )
        store.record_episode(run_id, make_episode(0))
    path.chmod(0o644)
    before = path.read_bytes()
    read_only(path)
    error = open_store(read_only, path.as_posix())
    assert error.startswith("StoreError: the database sqlite:///") and "is read-only" in error, error
    assert "chmod u+w" in error and "readonly=True" in error
    # Reading still works, in SQLite's read-only mode.
    with Store(path.as_posix(), readonly=True) as reader:
        assert [e.seed for e in reader.episodes(run_id)] == [0]
    assert path.read_bytes() == before


def test_new_database_in_a_read_only_directory(read_only: Callable[[Path], None], shared_dir: Path) -> None:
    directory = shared_dir / "results"
    directory.mkdir()
    read_only(directory)
    error = open_store(read_only, (directory / "runs.db").as_posix())
    assert "is read-only: the directory" in error and "is not writable" in error, error
    assert list(directory.iterdir()) == []


def test_database_in_a_read_only_directory_can_be_read(read_only: Callable[[Path], None], shared_dir: Path) -> None:
    directory = shared_dir / "archive"
    directory.mkdir()
    path = directory / "runs.db"
    with Store(path.as_posix()) as store:
        run_id = store.create_run(
            env_spec=SPEC, agent_spec="prompt", model_spec=None, weights_hash=None, config=run_config()
        )
        store.record_episode(run_id, make_episode(0))
    assert sorted(p.name for p in directory.iterdir()) == ["runs.db"]  # WAL files gone after close
    path.chmod(0o644)
    read_only(directory)

    def read() -> None:
        with Store(path.as_posix(), readonly=True) as reader:
            assert reader.episodes(run_id, with_turns=True) == [make_episode(0)]

    if read_only.how == "permissions" and os.geteuid() == 0:  # type: ignore[attr-defined]
        assert _unprivileged(read) == ""
    else:
        read()
    # (as `nobody`, the root-owned file itself is not writable either, so either reason may be given)
    error = open_store(read_only, path.as_posix())
    assert "is read-only: the" in error, error


def test_missing_file_or_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="nothing to read"):
        Store((tmp_path / "absent.db").as_posix(), readonly=True)
    with pytest.raises(StoreError, match=r"the directory .*nowhere does not exist"):
        Store((tmp_path / "nowhere" / "runs.db").as_posix())


def test_a_file_that_is_not_a_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match="is not a SQLite database"):
        Store(path.as_posix())
    assert path.read_text() == "these are my notes, not a database\n" * 100


# --------------------------------------------------------------------------- finding the database


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PALAESTRA_DB", raising=False)
    with Store() as default:
        assert default.url == f"sqlite:///{tmp_path / 'palaestra.db'}"
    assert (tmp_path / "palaestra.db").exists()

    monkeypatch.setenv("PALAESTRA_DB", str(tmp_path / "from_env.db"))
    with Store() as from_env:
        from_env.create_run(env_spec=SPEC, agent_spec="a", model_spec=None, weights_hash=None, config={})
    with Store(f"sqlite:///{tmp_path / 'from_env.db'}") as same:
        assert len(same.list_runs()) == 1

    with Store("relative.db") as bare:  # a bare path, relative to the working directory
        assert bare.url == f"sqlite:///{tmp_path / 'relative.db'}" and bare.backend == "sqlite"
    with Store("sqlite://") as memory:  # in memory, for quick experiments
        run_id = memory.create_run(env_spec=SPEC, agent_spec="a", model_spec=None, weights_hash=None, config={})
        assert memory.get_run(run_id).id == run_id

    with pytest.raises(StoreError, match=r"options in a SQLite URL .*mode.*readonly=True"):
        Store(f"sqlite:///{tmp_path / 'x.db'}?mode=ro")
    with pytest.raises(StoreError, match="not a database URL"):
        Store("postgresql+psycopg://user@host:notaport/db")

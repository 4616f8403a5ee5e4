"""Atomic episodes on both backends: a failure mid-write, many writers at once, a process killed mid-run."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event
from store_samples import SPEC, make_episode

from palaestra.core import StoreError
from palaestra.store import Store

HERE = Path(__file__).resolve().parent


def new_run(store: Store, seeds: list[int]) -> str:
    return store.create_run(
        env_spec=SPEC,
        agent_spec="prompt",
        model_spec="smollm2-135m",
        weights_hash=None,
        config={"seeds": seeds},
    )


class Crash(Exception):
    """Stands for whatever kills a write half-way: a bug, a dropped connection, a full disk."""


@contextmanager
def crash_after_turns_insert(store: Store) -> Iterator[list[str]]:
    """Make the database connection fail right after the turns INSERT has run, before the commit."""
    seen: list[str] = []

    def after_execute(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        seen.append(" ".join(statement.split()[:3]))
        if statement.startswith("INSERT INTO turns"):
            raise Crash("the process dies here")

    event.listen(store._engine, "after_cursor_execute", after_execute)
    try:
        yield seen
    finally:
        event.remove(store._engine, "after_cursor_execute", after_execute)


def test_failure_after_the_turns_are_written_stores_nothing(store: Store) -> None:
    run_id = new_run(store, [0, 1])
    with crash_after_turns_insert(store) as seen, pytest.raises(Crash):
        store.record_episode(run_id, make_episode(0, n_turns=6))
    # the episode row and its turns had reached the database before the failure...
    assert "INSERT INTO episodes" in seen and "INSERT INTO turns" in seen
    # ...and were rolled back with it
    assert store.episodes(run_id) == []
    assert store.pending_seeds(run_id) == [0, 1]
    store.record_episode(run_id, make_episode(0, n_turns=6))
    assert store.episodes(run_id, with_turns=True) == [make_episode(0, n_turns=6)]


def test_failure_while_replacing_an_error_episode_keeps_the_old_one(store: Store) -> None:
    run_id = new_run(store, [0])
    failed = make_episode(0, n_turns=2, status="error")
    store.record_episode(run_id, failed)
    with crash_after_turns_insert(store) as seen, pytest.raises(Crash):
        store.record_episode(run_id, make_episode(0, n_turns=5))
    assert "DELETE FROM turns" in seen  # the old attempt was being removed when it failed
    assert store.episodes(run_id, with_turns=True) == [failed]


def test_value_json_cannot_hold_is_refused_before_writing(store: Store) -> None:
    run_id = new_run(store, [0])
    episode = make_episode(0, n_turns=4, info_extra={"board": {1, 2, 3}})  # a set
    with pytest.raises(StoreError, match=r"cannot store seed 0 turn 0 step info: Object of type set.*str\(\)"):
        store.record_episode(run_id, episode)
    assert store.episodes(run_id) == []


def test_concurrent_writers(db_url: str) -> None:
    """Eight threads record 80 episodes at once: four share one Store, four each open their own."""
    shared = Store(db_url)
    run_id = new_run(shared, list(range(80)))
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            own = worker % 2 == 1
            store = Store(db_url) if own else shared
            for seed in range(worker, 80, 8):
                store.record_episode(run_id, make_episode(seed, n_turns=3 + seed % 4))
            if own:
                store.close()
        except BaseException as e:  # surfaced below; a thread's exception is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    back = shared.episodes(run_id, with_turns=True)
    assert back == [make_episode(seed, n_turns=3 + seed % 4) for seed in range(80)]
    assert shared.pending_seeds(run_id) == []
    shared.close()


# A runner stand-in: records big episodes in a loop and says when each write starts and is done. From the
# fourth episode on, it also says when the turns are in the database but not yet committed, and lingers
# there, so that the kill lands inside the transaction every time rather than by luck.
WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {here!r})
    from sqlalchemy import event
    from store_samples import make_episode
    from palaestra.store import Store

    store = Store({url!r})
    seed = 0

    @event.listens_for(store._engine, "after_cursor_execute")
    def linger(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO turns") and seed >= 3:
            print("inside", seed, flush=True)
            time.sleep(60)

    for seed in range(1000):
        episode = make_episode(seed, n_turns=60, obs_size=2000)
        print("start", seed, flush=True)
        store.record_episode({run_id!r}, episode)
        print("done", seed, flush=True)
    """
)


def test_process_killed_mid_write_leaves_only_whole_episodes(db_url: str) -> None:
    with Store(db_url) as store:
        run_id = new_run(store, list(range(1000)))
    script = WRITER.format(here=str(HERE), url=db_url, run_id=run_id)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    lines: list[str] = []
    try:
        for line in writer.stdout:
            lines.append(line.strip())
            if line.startswith("inside"):
                break
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    assert lines[-1] == "inside 3", lines  # killed with seed 3's episode and turns written, uncommitted

    with Store(db_url) as reopened:
        back = reopened.episodes(run_id, with_turns=True)
        # the three committed episodes are whole: all 60 turns each, exactly as recorded
        assert back == [make_episode(seed, n_turns=60, obs_size=2000) for seed in range(3)]
        # the one being written is not there at all, so it is simply played again
        assert reopened.pending_seeds(run_id)[:2] == [3, 4]
        reopened.record_episode(run_id, make_episode(3, n_turns=2))
        assert [e.seed for e in reopened.episodes(run_id)] == [0, 1, 2, 3]

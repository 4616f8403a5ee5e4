"""The store's API on both backends: runs, episodes round trips, lookups, filters, export, schema checks."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from store_samples import AWKWARD, MULTI_SPEC, OTHER_SPEC, SPEC, make_episode, make_multi_episode

import palaestra
from palaestra.core import Episode, StoreError
from palaestra.store import RunRecord, Store, UnknownRunError
from palaestra.store.schema import SCHEMA_VERSION
from palaestra.store.store import source_git_commit


def new_run(store: Store, seeds: list[int] | None = None, **overrides: object) -> str:
    args: dict = {
        "env_spec": SPEC,
        "agent_spec": "prompt",
        "model_spec": "smollm2-135m",
        "weights_hash": "sha256:abc123",
        "config": {"episodes": 3, "split": "test", "seeds": seeds if seeds is not None else [0, 1, 2]},
    }
    args.update(overrides)
    return store.create_run(**args)  # type: ignore[arg-type]


def without_turns(episode: Episode) -> Episode:
    return replace(episode, turns=[])


def sql(url: str, statement: str) -> list:
    """Run SQL on the database directly, bypassing the store (to check what it really wrote)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement))
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- runs


def test_create_run_records_lineage(store: Store) -> None:
    parent = new_run(store)
    run_id = new_run(store, parent_run_id=parent, name="baseline ü", model_spec=None, weights_hash=None)
    assert re.fullmatch(r"r-[0-9a-f]{8}", run_id)
    run = store.get_run(run_id)
    assert isinstance(run, RunRecord)
    assert run.id == run_id
    assert run.status == "running" and run.finished_at is None
    assert run.env_id == "maze-fo-v0" and run.env_version == 0
    assert run.env_spec == SPEC  # parsed back into an EnvSpec, normalisation and kwargs included
    assert run.agent_spec == "prompt" and run.model_spec is None and run.weights_hash is None
    assert run.config == {"episodes": 3, "split": "test", "seeds": [0, 1, 2]}
    assert run.parent_run_id == parent and run.name == "baseline ü"
    assert run.package_version == palaestra.__version__
    assert run.git_commit == source_git_commit()
    assert run.git_commit is None or re.fullmatch(r"[0-9a-f]{40}", run.git_commit)
    assert run.created_at > 1.7e9


def test_finish_and_reopen_run(store: Store) -> None:
    run_id = new_run(store)
    store.finish_run(run_id, "interrupted")
    run = store.get_run(run_id)
    assert run.status == "interrupted" and run.finished_at is not None and run.finished_at >= run.created_at
    store.set_run_status(run_id, "running")  # resumed
    assert store.get_run(run_id).finished_at is None
    store.finish_run(run_id, "complete")
    assert store.get_run(run_id).status == "complete"
    with pytest.raises(StoreError, match="finishes as one of complete, incomplete, interrupted"):
        store.finish_run(run_id, "running")
    with pytest.raises(StoreError, match="unknown run status 'done'"):
        store.set_run_status(run_id, "done")
    with pytest.raises(UnknownRunError, match=r"no run with id 'r-00000000'.*palaestra runs"):
        store.finish_run("r-00000000", "incomplete")


def test_config_must_be_json(store: Store) -> None:
    with pytest.raises(StoreError, match=r"cannot store the run config.*JSON types"):
        new_run(store, config={"seeds": [1], "limits": object()})
    assert store.list_runs() == []


def test_get_run_by_prefix(store: Store) -> None:
    ids = [new_run(store) for _ in range(12)]
    for run_id in ids:
        assert store.get_run(run_id).id == run_id
        # the shortest prefix that only this id has
        unique = next(run_id[:n] for n in range(3, 11) if sum(other.startswith(run_id[:n]) for other in ids) == 1)
        assert store.get_run(unique).id == run_id
    with pytest.raises(StoreError, match="prefix 'r-' is ambiguous") as info:
        store.get_run("r-")
    assert sum(run_id in str(info.value) for run_id in ids) == 10  # lists the matches (up to ten)
    assert "and more" in str(info.value)
    with pytest.raises(UnknownRunError, match=r"no run 'r-zz'.*`palaestra runs`"):
        store.get_run("r-zz")
    # LIKE wildcards in a prefix are literal characters, not "match anything"
    with pytest.raises(UnknownRunError):
        store.get_run("%")
    with pytest.raises(UnknownRunError):
        store.get_run("r-________")


def test_list_runs_newest_first_and_filters(store: Store) -> None:
    a = new_run(store)
    b = new_run(store, env_spec=OTHER_SPEC)
    c = new_run(store)
    store.finish_run(a, "complete")
    assert [r.id for r in store.list_runs()] == [c, b, a]
    assert [r.id for r in store.list_runs(limit=2)] == [c, b]
    assert [r.id for r in store.list_runs(limit=None)] == [c, b, a]
    assert [r.id for r in store.list_runs(env_id="maze-fo-v0")] == [c, a]
    assert [r.id for r in store.list_runs(env_id="wordle-v1")] == [b]
    assert [r.id for r in store.list_runs(status="complete")] == [a]
    assert [r.id for r in store.list_runs(status="running", env_id="maze-fo-v0")] == [c]
    assert store.list_runs(env_id="nope-v0") == []
    with pytest.raises(StoreError, match="unknown run status 'finished'"):
        store.list_runs(status="finished")


# --------------------------------------------------------------------------- episodes


def test_episodes_round_trip(db_url: str, store: Store) -> None:
    run_id = new_run(store, seeds=[0, 1, 2, 3])
    recorded = [
        make_episode(3, n_turns=6),
        make_episode(1, n_turns=4, obs_size=300_000),  # large observations: 12 turns x 2 x 300 kB
        make_episode(0, n_turns=1),
        make_episode(2, n_turns=0, status="error"),  # failed before its first turn
    ]
    for episode in recorded:
        store.record_episode(run_id, episode)
    by_seed = sorted(recorded, key=lambda e: e.seed)

    back = store.episodes(run_id, with_turns=True)
    assert back == by_seed  # every field of every turn, action, call and step
    assert [e.seed for e in back] == [0, 1, 2, 3]
    turn0 = back[-1].turns[0]
    assert len(turn0.action.calls) == 2 and turn0.action.calls[1].cached
    assert turn0.action.calls[0].prompt_token_ids == tuple(range(3000, 3100))
    assert turn0.action.calls[0].logprobs == make_episode(3).turns[0].action.calls[0].logprobs
    assert back[-1].turns[1].action.calls == ()
    assert back[-1].invalid_actions == 1
    assert back[-1].usage == by_seed[-1].usage
    assert AWKWARD in back[0].turns[0].observation
    assert len(back[1].turns[0].observation) > 300_000

    assert store.episodes(run_id) == [without_turns(e) for e in by_seed]
    assert store.episodes(run_id, status="error") == [without_turns(by_seed[2])]
    assert store.episodes(run_id, status="ok", with_turns=True) == [by_seed[0], by_seed[1], by_seed[3]]
    with pytest.raises(StoreError, match="unknown episode status 'failed'"):
        store.episodes(run_id, status="failed")

    # the rows hold the aggregates too, for SQL users and dashboards
    rows = sql(db_url, "SELECT seed, n_turns, invalid_actions, prompt_tokens, attempts FROM episodes ORDER BY seed")
    assert [tuple(r) for r in rows][3] == (3, 6, 1, by_seed[3].usage.prompt_tokens, 1)

    # a new Store on the same database reads the same thing (nothing lived only in memory)
    with Store(db_url) as again:
        assert again.episodes(run_id[:6], with_turns=True) == by_seed


def test_multi_agent_episode_round_trip(store: Store, tmp_path: Path) -> None:
    run_id = new_run(store, env_spec=MULTI_SPEC, agent_spec="prompt + dylan:3/prompt", seeds=[0])
    episode = make_multi_episode(0)
    store.record_episode(run_id, episode)
    (back,) = store.episodes(run_id, with_turns=True)
    assert back == episode  # players, metrics, and each turn's player, round and action meta
    assert [(t.agent, t.round) for t in back.turns] == [("alice", 0), ("bob", 0), ("alice", 1), ("bob", 1)]
    assert back.turns[1].action.meta["messages"][0]["text"] == AWKWARD and back.turns[0].action.meta == {}
    assert store.get_run(run_id).env_spec.multi_agent
    path = tmp_path / "multi.jsonl"
    with path.open("w") as fp:
        store.export_jsonl(run_id, fp)
    record = json.loads(path.read_text())
    assert record["episode"]["players"] == {"alice": "prompt", "bob": "dylan:3/prompt"}
    assert record["episode"]["metrics"]["survival_time"] == 12
    assert record["turns"][1]["agent"] == "bob" and record["turns"][1]["meta"]["team"] == "dylan"


def test_a_version_1_database_is_upgraded_in_place(db_url: str) -> None:
    with Store(db_url) as store:
        run_id = new_run(store, seeds=[0, 1])
        store.record_episode(run_id, make_episode(0))
    # Turn it back into a version-1 database: without the columns version 2 added.
    for table, column in [
        ("turns", "meta"),
        ("turns", "round"),
        ("turns", "agent"),
        ("episodes", "metrics"),
        ("episodes", "players"),
    ]:
        sql(db_url, f'ALTER TABLE {table} DROP COLUMN "{column}"')
    sql(db_url, "DROP TABLE checkpoints")  # added by version 3
    sql(db_url, "UPDATE palaestra_meta SET value = '1' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=r"older palaestra .* Open it once without readonly"):
        Store(db_url, readonly=True)
    with Store(db_url) as store:  # upgrades: old episodes read back unchanged, new ones keep the new fields
        assert store.episodes(run_id, with_turns=True) == [make_episode(0)]
        multi = new_run(store, env_spec=MULTI_SPEC, seeds=[0])
        store.record_episode(multi, make_multi_episode(0))
        assert store.episodes(multi, with_turns=True) == [make_multi_episode(0)]
    meta = dict(sql(db_url, "SELECT key, value FROM palaestra_meta"))
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    with Store(db_url, readonly=True) as reader:
        assert len(reader.episodes(run_id)) == 1
        assert reader.list_checkpoints() == []  # the table came with the upgrade


def test_episodes_of_unknown_run(store: Store) -> None:
    with pytest.raises(UnknownRunError, match="palaestra runs"):
        store.episodes("r-00000000")
    with pytest.raises(UnknownRunError, match="create_run first"):
        store.record_episode("r-00000000", make_episode(0))


def test_episode_of_another_environment_is_refused(store: Store) -> None:
    run_id = new_run(store)
    with pytest.raises(StoreError, match=r"played on 'wordle-v1' but run .* is for 'maze-fo-v0'"):
        store.record_episode(run_id, make_episode(0, env_id="wordle-v1"))
    assert store.episodes(run_id) == []


def test_error_episode_is_replaced_and_ok_episode_is_never_recorded_twice(db_url: str, store: Store) -> None:
    run_id = new_run(store, seeds=[5, 6])
    store.record_episode(run_id, make_episode(5, n_turns=2, status="error"))
    store.record_episode(run_id, make_episode(5, n_turns=3, status="error"))  # a second failure
    [episode] = store.episodes(run_id, with_turns=True)
    assert episode.status == "error" and len(episode.turns) == 3

    retried = make_episode(5, n_turns=5)
    store.record_episode(run_id, retried)
    assert store.episodes(run_id, with_turns=True) == [retried]
    assert sql(db_url, "SELECT attempts, n_turns FROM episodes") == [(3, 5)]
    # the replaced attempts' turns are gone, not orphaned
    assert sql(db_url, "SELECT COUNT(*) FROM turns") == [(5,)]

    with pytest.raises(StoreError, match=r"already has an ok episode for seed 5.*count the seed twice"):
        store.record_episode(run_id, make_episode(5, n_turns=1))
    with pytest.raises(StoreError, match="already has an ok episode"):
        store.record_episode(run_id, make_episode(5, n_turns=1, status="error"))
    assert store.episodes(run_id, with_turns=True) == [retried]
    assert sql(db_url, "SELECT attempts FROM episodes") == [(3,)]


def test_episode_status_is_checked(store: Store) -> None:
    run_id = new_run(store)
    with pytest.raises(StoreError, match=r"status 'crashed'.*ok, error"):
        store.record_episode(run_id, make_episode(0, status="crashed"))


def test_pending_seeds(store: Store) -> None:
    run_id = new_run(store, seeds=[30, 10, 20, 50, 40])
    assert store.pending_seeds(run_id) == [30, 10, 20, 50, 40]
    store.record_episode(run_id, make_episode(10))
    store.record_episode(run_id, make_episode(20, status="error"))
    store.record_episode(run_id, make_episode(40))
    assert store.pending_seeds(run_id) == [30, 20, 50]  # errors and missing, in planned order
    store.record_episode(run_id, make_episode(20))
    assert store.pending_seeds(run_id[:7]) == [30, 50]

    no_seeds = store.create_run(
        env_spec=SPEC, agent_spec="prompt", model_spec=None, weights_hash=None, config={"episodes": 2}
    )
    with pytest.raises(StoreError, match=r"no list of planned seeds.*config\['seeds'\]"):
        store.pending_seeds(no_seeds)


def test_export_jsonl(store: Store, tmp_path: Path) -> None:
    run_id = new_run(store, seeds=[0, 1, 2], name="export me")
    store.record_episode(run_id, make_episode(2, n_turns=3))
    store.record_episode(run_id, make_episode(0, n_turns=5))
    store.record_episode(run_id, make_episode(1, n_turns=0, status="error"))
    out = tmp_path / "run.jsonl"
    with out.open("w", encoding="utf-8") as fp:
        assert store.export_jsonl(run_id[:5], fp) == 3
    lines = out.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3
    assert [r["episode"]["seed"] for r in records] == [0, 1, 2]
    first = records[0]
    assert first["format"] == "palaestra.episode/1"
    assert first["run"]["id"] == run_id and first["run"]["name"] == "export me"
    assert first["run"]["env_id"] == "maze-fo-v0" and first["run"]["model_spec"] == "smollm2-135m"
    assert first["run"]["weights_hash"] == "sha256:abc123"
    assert first["run"]["package_version"] == palaestra.__version__
    assert first["run"]["config"]["seeds"] == [0, 1, 2]
    assert first["run"]["env_spec"]["kwargs"] == {"size": 5, "walls": [[1, 2], [3, 4]]}
    assert records[1]["episode"]["status"] == "error" and records[1]["turns"] == []
    assert records[1]["episode"]["error"].startswith("ModelError")

    source = make_episode(0, n_turns=5)
    assert first["episode"]["total_return"] == source.total_return
    assert first["episode"]["n_turns"] == 5 and first["episode"]["invalid_actions"] == 1
    assert len(first["turns"]) == 5
    for index, (turn, exported) in enumerate(zip(source.turns, first["turns"], strict=True)):
        assert exported["index"] == index
        assert exported["observation"] == turn.observation
        assert exported["next_observation"] == turn.step.observation
        assert exported["action"] == turn.action.text and exported["raw_output"] == turn.action.raw
        assert exported["parsed"] == turn.action.parsed
        assert exported["reward"] == turn.step.reward
        assert exported["info"] == turn.step.info
        assert len(exported["calls"]) == len(turn.action.calls)
        for call, data in zip(turn.action.calls, exported["calls"], strict=True):
            assert data["text"] == call.text and data["model"] == call.model
            assert data["prompt_token_ids"] == (None if call.prompt_token_ids is None else list(call.prompt_token_ids))
            assert data["completion_token_ids"] == (
                None if call.completion_token_ids is None else list(call.completion_token_ids)
            )
            assert data["logprobs"] == (None if call.logprobs is None else list(call.logprobs))
    # written as UTF-8 text, not \u escapes; markup left alone
    assert "naïve — 日本語 🎲 <script>alert('x')</script>" in lines[0]

    empty = new_run(store)
    buffer = io.StringIO()
    assert store.export_jsonl(empty, buffer) == 0 and buffer.getvalue() == ""


# --------------------------------------------------------------------------- opening databases


def test_schema_is_created_once_with_metadata(db_url: str) -> None:
    with Store(db_url) as first:
        run_id = new_run(first)
    with Store(db_url) as second:  # opening again keeps the data
        assert second.get_run(run_id).id == run_id
    meta = dict(sql(db_url, "SELECT key, value FROM palaestra_meta"))
    assert meta["app"] == "palaestra" and meta["schema_version"] == str(SCHEMA_VERSION)
    assert meta["created_by"] == palaestra.__version__


def test_foreign_database_is_refused_and_left_untouched(db_url: str) -> None:
    sql(db_url, "CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount TEXT)")
    sql(db_url, "INSERT INTO invoices VALUES (1, 'one hundred'), (2, 'two hundred')")
    with pytest.raises(StoreError, match=r"is not a palaestra database: it has tables \(invoices\)"):
        Store(db_url)
    assert sql(db_url, "SELECT id, amount FROM invoices ORDER BY id") == [
        (1, "one hundred"),
        (2, "two hundred"),
    ]
    if db_url.startswith("sqlite"):
        tables = sql(db_url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        tables = sql(db_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert [t[0] for t in tables] == ["invoices"]  # no palaestra table was added


def test_newer_schema_is_refused(db_url: str) -> None:
    Store(db_url).close()
    sql(db_url, "UPDATE palaestra_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=r"newer palaestra \(schema version 99.*Upgrade palaestra"):
        Store(db_url)
    with pytest.raises(StoreError, match="Upgrade palaestra"):
        Store(db_url, readonly=True)


def test_another_apps_meta_table_is_refused(db_url: str) -> None:
    sql(db_url, "CREATE TABLE palaestra_meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)")
    sql(db_url, "INSERT INTO palaestra_meta VALUES ('app', 'gymnasium-lab')")
    with pytest.raises(StoreError, match="does not say app='palaestra'"):
        Store(db_url)


def test_readonly_store_reads_and_refuses_writes(db_url: str) -> None:
    with Store(db_url) as writer:
        run_id = new_run(writer)
        writer.record_episode(run_id, make_episode(0))
    with Store(db_url, readonly=True) as reader:
        assert reader.get_run(run_id).id == run_id
        assert reader.episodes(run_id, with_turns=True) == [make_episode(0)]
        for write in (
            lambda: new_run(reader),
            lambda: reader.record_episode(run_id, make_episode(1)),
            lambda: reader.finish_run(run_id, "complete"),
        ):
            with pytest.raises(StoreError, match="opened with readonly=True"):
                write()
        # Below the API the connection itself refuses (SQLite mode=ro, a read-only PostgreSQL session).
        with (
            pytest.raises(StoreError, match="is read-only"),
            reader._errors(),
            reader._engine.begin() as conn,
        ):
            conn.execute(text("DELETE FROM turns"))
    assert len(Store(db_url).episodes(run_id, with_turns=True)[0].turns) == 4


def test_readonly_store_needs_an_existing_palaestra_database(db_url: str) -> None:
    with pytest.raises(StoreError, match=r"no palaestra tables yet|does not exist"):
        Store(db_url, readonly=True)


def test_concurrent_first_opens_create_the_schema_once(db_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def open_and_write(i: int) -> str:
        with Store(db_url) as s:
            return new_run(s, name=f"opener {i}")

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(open_and_write, range(8)))
    with Store(db_url) as s:
        assert sorted(r.id for r in s.list_runs()) == sorted(ids)
    assert sql(db_url, "SELECT COUNT(*) FROM palaestra_meta WHERE key = 'app'") == [(1,)]


def test_the_code_in_docs_store_md_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "store.md"
    blocks = re.findall(r"```python\n(.*?)```", docs.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(docs), "exec"), {})
    assert (tmp_path / "runs.db").exists()


def test_checkpoints_round_trip_and_update(store: Store) -> None:
    from palaestra.store import CheckpointRecord

    record = CheckpointRecord(
        id="c-0a1b2c3d",
        created_at=1_700_000_000.5,
        status="training",
        method="filtered-bc",
        base_model="smollm2-135m",
        env_ids=["maze-fo-v0"],
        data_runs=["r-11111111", "r-22222222"],
        config={"lr": 2e-4, "seeds": {"train": [0, 64]}, "note": AWKWARD},
        metrics={"loss": [2.5, 1.25]},
    )
    store.save_checkpoint(record)
    assert store.get_checkpoint("c-0a1b").config["note"] == AWKWARD
    done = replace(record, status="promoted", metrics={**record.metrics, "gate": {"promoted": True}}, wall_s=12.5)
    store.save_checkpoint(done)  # the same id: replaced, not duplicated
    (only,) = store.list_checkpoints()
    assert only == replace(done, package_version=only.package_version) and only.package_version
    child = replace(record, id="c-ffff0000", parent="c-0a1b2c3d", created_at=record.created_at + 1)
    store.save_checkpoint(child)
    assert [c.id for c in store.list_checkpoints()] == ["c-ffff0000", "c-0a1b2c3d"]
    with pytest.raises(StoreError, match="unknown checkpoint status 'great'"):
        store.save_checkpoint(replace(record, status="great"))
    with pytest.raises(StoreError, match="no checkpoint 'c-9'"):
        store.get_checkpoint("c-9")
    with pytest.raises(StoreError, match="ambiguous"):
        store.get_checkpoint("c-")

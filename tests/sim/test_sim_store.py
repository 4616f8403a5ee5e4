"""``sim_steps`` in the store, on a SQLite file and on a real PostgreSQL database: the round trip, the
refusals, and the in-place upgrade of a version-3 database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from palaestra.core import StoreError
from palaestra.sim import SimConfig, Simulation
from palaestra.store import SCHEMA_VERSION, Store, UnknownRunError


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'palaestra.db'}"
    return request.getfixturevalue("pg_url")


def sql(url: str, statement: str) -> list:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement))
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def simulate(store: Store, steps: int = 2) -> str:
    run_id, _ = asyncio.run(Simulation(SimConfig("commons", 50, steps=steps, seed=1)).run(store))
    assert run_id is not None
    return run_id


def test_a_simulation_is_a_run_with_its_steps(db_url: str) -> None:
    with Store(db_url) as store:
        run_id = simulate(store, steps=3)
        run = store.get_run(run_id)
        assert (run.env_id, run.env_spec.id, run.agent_spec, run.status) == (
            "sim:commons",
            "sim-commons-v0",
            "sim:scripted",
            "complete",
        )
        assert run.config["agents"] == 50 and run.config["memory_estimate_bytes"] > 0
        steps = store.sim_steps(run_id[:6])
    assert [s.step for s in steps] == [0, 1, 2]
    assert all(s.run_id == run_id and s.model_calls == 0 and s.wall_s >= 0 for s in steps)
    assert steps[0].metrics["communities_alive"] == 2 and "gini" in steps[0].metrics


def test_record_and_read_steps(db_url: str) -> None:
    with Store(db_url) as store:
        run_id = simulate(store, steps=1)
        store.record_sim_step(run_id, 7, {"reach": 0.5, "nested": {"ü": [1, 2]}}, model_calls=12, wall_s=1.5)
        [_, seventh] = store.sim_steps(run_id)
        assert (seventh.step, seventh.metrics, seventh.model_calls, seventh.wall_s) == (
            7,
            {"reach": 0.5, "nested": {"ü": [1, 2]}},
            12,
            1.5,
        )
        with pytest.raises(StoreError, match="already has step 7"):
            store.record_sim_step(run_id, 7, {}, model_calls=0, wall_s=0.0)
        with pytest.raises(UnknownRunError, match="create_run first"):
            store.record_sim_step("r-00000000", 0, {}, model_calls=0, wall_s=0.0)
        with pytest.raises(StoreError, match="JSON types"):
            store.record_sim_step(run_id, 8, {"bad": object()}, model_calls=0, wall_s=0.0)
        assert len(store.sim_steps(run_id)) == 2


def test_a_version_3_database_is_upgraded_in_place(db_url: str) -> None:
    with Store(db_url) as store:
        run_id = simulate(store, steps=1)
    sql(db_url, "DROP TABLE sim_steps")  # what a version-3 database lacks
    sql(db_url, "UPDATE palaestra_meta SET value = '3' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=r"older palaestra .* Open it once without readonly"):
        Store(db_url, readonly=True)
    with Store(db_url) as store:
        assert store.get_run(run_id).status == "complete"  # old rows untouched
        assert store.sim_steps(run_id) == []
        store.record_sim_step(run_id, 0, {"total_stock": 1.0}, model_calls=3, wall_s=0.1)
    assert dict(sql(db_url, "SELECT key, value FROM palaestra_meta"))["schema_version"] == str(SCHEMA_VERSION) == "4"
    with Store(db_url, readonly=True) as reader:
        assert [s.metrics for s in reader.sim_steps(run_id)] == [{"total_stock": 1.0}]

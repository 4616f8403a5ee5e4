"""The promotion gate on hand-computed cases, and the whole improve loop on a tiny model (built from a config in
the test) through real runs, the registry and the store: a checkpoint that is not better is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from palaestra.core.errors import SpecError
from palaestra.core.types import Episode
from palaestra.improve.gate import paired_gate
from palaestra.improve.loop import ImproveConfig, improve
from palaestra.improve.trainers import TrainConfig
from palaestra.models.registry import Registry
from palaestra.store import Store


def eps(returns: dict[int, float], env: str = "maze-fo-v0", status: str = "ok") -> list[Episode]:
    return [Episode(env, seed, status=status, total_return=r, success=r > -10) for seed, r in returns.items()]  # type: ignore[arg-type]


def test_gate_promotes_only_a_clearly_better_child() -> None:
    parent = eps({s: -20.0 for s in range(10)})
    better = eps({s: -10.0 + (s % 2) for s in range(10)})  # +10 or +11 on every seed
    verdict = paired_gate(parent, better)
    assert verdict.promoted and verdict.pairs == 10 and verdict.diff_mean == pytest.approx(10.5)
    assert verdict.diff_ci is not None and verdict.diff_ci[0] > 0 and "better on validation" in verdict.reason

    worse = eps({s: -30.0 for s in range(10)})
    refused = paired_gate(parent, worse)
    assert not refused.promoted and refused.diff_mean == -10.0 and "the parent is kept" in refused.reason

    # better on average but not on enough seeds: +30 on one seed, -1 on the nine others
    noisy = eps({0: 10.0, **{s: -21.0 for s in range(1, 10)}})
    unsure = paired_gate(parent, noisy)
    assert unsure.diff_mean == pytest.approx(2.1) and not unsure.promoted  # the interval reaches below 0


def test_gate_pairs_by_seed_and_leaves_errors_out() -> None:
    parent = eps({0: -20.0, 1: -20.0, 2: -20.0})
    child = eps({1: -5.0, 2: -6.0, 7: 0.0}) + eps({0: 0.0}, status="error")
    verdict = paired_gate(parent, child)
    assert verdict.pairs == 2 and verdict.child_mean == -5.5 and verdict.parent_mean == -20.0
    nothing = paired_gate(parent, eps({5: 0.0}))
    assert not nothing.promoted and nothing.pairs == 0 and "nothing to compare" in nothing.reason


async def test_improve_refuses_a_checkpoint_that_is_not_better(tiny_spec: str, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'improve.db'}")
    registry = Registry(tmp_path / "registry")
    config = ImproveConfig(
        envs=("reasoning-arithmetic-v0",),
        model=tiny_spec,
        data_episodes=10,
        validation_episodes=4,
        test_episodes=3,
        train=TrainConfig(max_steps=2, batch_size=2, max_length=2048),
    )
    said: list[str] = []
    result = await improve(config, store, registry=registry, progress=False, say=said.append)
    # A random 2-layer model answers nothing right before or after 2 steps: equal is not better.
    (round_,) = result.rounds
    assert not round_.gate["promoted"] and round_.gate["pairs"] == 4 and round_.gate["diff_mean"] == 0.0
    assert result.final == tiny_spec and not result.promoted and list(result.test) == [tiny_spec]
    assert result.test[tiny_spec]["episodes"] == 3 and any(m.startswith("refused: not better") for m in said)

    (checkpoint,) = registry.checkpoints()
    record = checkpoint.record
    assert record.status == "refused" and record.method == "filtered-bc" and record.parent is None
    assert record.base_model == tiny_spec and record.env_ids == ["reasoning-arithmetic-v0"]
    data_run = store.get_run(record.data_runs[0])
    assert (
        data_run.agent_spec == "noisy" and data_run.config["split"] == "train" and data_run.config["purpose"] == "data"
    )
    assert record.config["train"]["max_steps"] == 2 and record.config["data_episodes"] == 10
    assert len(record.metrics["train"]["losses"]) == 2 and record.metrics["gate"]["promoted"] is False
    assert record.wall_s and record.wall_s > 0 and checkpoint.adapter_dir is not None
    assert store.get_checkpoint(record.id) == record  # the store keeps the same lineage
    # test seeds were played once, by the parent only; validation by both
    splits = sorted(r.config["split"] for r in store.list_runs(limit=None) if r.agent_spec.startswith("prompt"))
    assert splits == ["test", "validation", "validation"]


def test_improve_on_an_all_failed_data_run_writes_nothing(tiny_spec: str, tmp_path: Path) -> None:
    from palaestra.cli import main

    db = f"sqlite:///{tmp_path / 'bad.db'}"
    with Store(db) as store:
        from palaestra.core.types import EnvSpec
        from palaestra.envs import make

        spec: EnvSpec = make("reasoning-arithmetic-v0").spec
        run = store.create_run(env_spec=spec, agent_spec="noisy", model_spec=None, weights_hash=None, config={})
        store.record_episode(run, Episode("reasoning-arithmetic-v0", 0, status="error", error="ModelError: down"))
    registry = tmp_path / "registry"
    result = CliRunner(env={"PALAESTRA_CHECKPOINTS": str(registry)}).invoke(
        main,
        [
            "improve",
            "reasoning-arithmetic-v0",
            "--model",
            tiny_spec,
            "--data",
            run,
            "--validation-episodes",
            "2",
            "--test-episodes",
            "2",
            "--db",
            db,
            "-q",
        ],
    )
    assert result.exit_code != 0 and "nothing to train on: none of the 1 episodes finished ok" in result.output
    assert not registry.exists() or list(registry.iterdir()) == []
    with Store(db) as store:  # no evaluation or checkpoint was written
        assert [r.id for r in store.list_runs(limit=None)] == [run] and store.list_checkpoints() == []
    with pytest.raises(SpecError, match="evolve plays with the model itself"):
        import asyncio

        asyncio.run(improve(ImproveConfig(envs=("maze-fo-v0",), method="evolve", data=("r-1",)), Store(db)))


def test_models_list_shows_the_registry(tmp_path: Path) -> None:
    from palaestra.cli import main

    runner = CliRunner(env={"PALAESTRA_CHECKPOINTS": str(tmp_path / "none")})
    empty = runner.invoke(main, ["models", "list"])
    assert empty.exit_code == 0 and "no checkpoints" in empty.output
    assert json.loads(runner.invoke(main, ["models", "list", "--json"]).output) == []


async def test_evolve_explores_keeps_successes_trains_and_gates(
    tiny_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    from palaestra.core.types import Step
    from palaestra.envs.base import Env

    class SayAnything(Env):
        """One turn where any non-empty reply succeeds: a random tiny model "succeeds" often enough for the
        evolve loop (explore, keep successes, train, gate) to run end to end."""

        instructions = "Say anything."

        async def reset(self, *, seed=None, options=None):
            self._done = False
            return Step(f"Item {seed}: say something.")

        async def step(self, action):
            ok = bool(action.strip())
            return Step("Thanks.", float(ok), True, False, {"invalid_action": not ok, "success": ok})

        def scripted_policies(self):
            return {"optimal": lambda env, rng: "hello"}

    module = types.ModuleType("tests_improve_say_anything")
    module.SayAnything = SayAnything  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    from palaestra.core.types import InvalidActionRule
    from palaestra.envs import registry as env_registry

    env_id = "say-anything-v0"
    monkeypatch.setattr(env_registry, "_REGISTRY", dict(env_registry._REGISTRY))  # restored after the test
    env_registry.register(
        env_id,
        "tests_improve_say_anything:SayAnything",
        max_turns=1,
        reward_range=(0.0, 1.0),
        invalid_action=InvalidActionRule("terminate", 0.0, "empty reply"),
    )
    store = Store(f"sqlite:///{tmp_path / 'evolve.db'}")
    registry = Registry(tmp_path / "registry")
    config = ImproveConfig(
        envs=(env_id,),
        model=tiny_spec,
        method="evolve",
        rounds=2,
        samples=2,
        explore_seeds=3,
        validation_episodes=3,
        test_episodes=2,
        agent="prompt:shots=0,history=0,max_tokens=4",
        train=TrainConfig(max_steps=1, batch_size=2, max_length=2048),
    )
    result = await improve(config, store, registry=registry, progress=False, say=lambda _: None)
    assert len(result.rounds) == 2
    explore = [r for r in store.list_runs(limit=None) if r.config["split"] == "train"]
    assert len(explore) == 4 and {r.agent_spec for r in explore} == {
        "prompt:shots=0,history=0,max_tokens=4,temperature=0.7,sample=0",
        "prompt:shots=0,history=0,max_tokens=4,temperature=0.7,sample=1",
    }
    for round_ in result.rounds:
        kept = round_.episodes_kept
        assert 0 < kept <= 6 and round_.examples == kept  # one turn per successful episode
    checkpoints = registry.checkpoints()
    assert len(checkpoints) == 2 and all(c.record.method == "evolve" for c in checkpoints)
    # each round's parent is the model the round started from: the base, or the promoted checkpoint
    first, second = sorted(checkpoints, key=lambda c: c.record.created_at)
    assert first.record.parent is None
    assert second.record.parent == (first.id if first.record.status == "promoted" else None)


def test_the_improve_command_prints_rounds_and_test_scores(tiny_spec: str, tmp_path: Path) -> None:
    from palaestra.cli import main

    runner = CliRunner(env={"PALAESTRA_CHECKPOINTS": str(tmp_path / "registry")})
    args = ["improve", "reasoning-arithmetic-v0", "--model", tiny_spec, "--data-episodes", "6", "--max-steps", "1"]
    args += [
        "--batch-size",
        "2",
        "--validation-episodes",
        "2",
        "--test-episodes",
        "2",
        "--db",
        f"sqlite:///{tmp_path / 'c.db'}",
    ]
    result = runner.invoke(main, [*args, "-q"])
    assert result.exit_code == 0, result.output
    assert "refused: not better with 95% confidence" in result.output
    assert f"{tiny_spec:<40} return 0.00 [0.00, 0.00]  success 0.00 [0.00, 0.00]  (2 episodes)" in result.output
    assert f"final model: the parent, {tiny_spec}" in result.output
    (listed,) = json.loads(runner.invoke(main, ["models", "list", "--json"]).output)
    assert listed["status"] == "refused" and listed["spec"] == f"{tiny_spec}+{listed['id']}"
    assert "refused" in runner.invoke(main, ["models", "list"]).output


async def test_dpo_pairs_scripted_runs_of_the_same_seeds_trains_and_gates(tiny_spec: str, tmp_path: Path) -> None:
    from palaestra.runner import EvalConfig, evaluate

    store = Store(f"sqlite:///{tmp_path / 'dpo.db'}")
    data = await evaluate(
        EvalConfig(envs=("maze-fo-v0",), agents=("optimal", "random"), episodes=4, split="train"),
        store,
        progress=False,
    )
    registry = Registry(tmp_path / "registry")
    config = ImproveConfig(
        envs=("maze-fo-v0",),
        model=tiny_spec,
        method="dpo",
        data=tuple(data.run_ids),
        max_turns=6,
        validation_episodes=2,
        test_episodes=2,
        agent="prompt:shots=0,history=0,max_tokens=4",
        train=TrainConfig(max_steps=2, batch_size=2, max_length=2048),
    )
    said: list[str] = []
    result = await improve(config, store, registry=registry, progress=False, say=said.append)
    (round_,) = result.rounds
    (checkpoint,) = registry.checkpoints()
    record = checkpoint.record
    assert record.method == "dpo" and record.data_runs == data.run_ids
    pairs = record.metrics["pairs"]
    # the optimal policy reaches the goal, random wanders: on each of the 4 seeds they part at some turn
    assert pairs["seeds"] == 4 and pairs["pairs"] == round_.examples and 1 <= round_.examples <= 4
    assert any(m.startswith(f"round 1: dpo on {round_.examples} preference pairs from 4 seeds") for m in said)
    assert len(record.metrics["train"]["losses"]) == 2 and record.status in ("promoted", "refused")


async def test_grpo_plays_groups_stores_the_rollouts_and_gates(
    tiny_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    from test_dpo_grpo import LetterEnv  # tests/improve is on sys.path (pytest prepend mode)

    from palaestra.core.types import InvalidActionRule
    from palaestra.envs import registry as env_registry

    module = types.ModuleType("tests_improve_letter")
    module.LetterEnv = LetterEnv  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(env_registry, "_REGISTRY", dict(env_registry._REGISTRY))  # restored after the test
    env_registry.register(
        "letter-v0",
        "tests_improve_letter:LetterEnv",
        max_turns=2,
        reward_range=(0.0, 2.0),
        invalid_action=InvalidActionRule("penalty", 0.0),
    )
    store = Store(f"sqlite:///{tmp_path / 'grpo.db'}")
    registry = Registry(tmp_path / "registry")
    config = ImproveConfig(
        envs=("letter-v0",),
        model=tiny_spec,
        method="grpo",
        samples=2,
        seeds_per_step=2,
        explore_seeds=4,
        validation_episodes=2,
        test_episodes=2,
        agent="prompt:shots=0,history=4,max_tokens=4",
        train=TrainConfig(max_steps=3, max_length=2048),
    )
    result = await improve(config, store, registry=registry, progress=False, say=lambda _: None)
    (round_,) = result.rounds
    (checkpoint,) = registry.checkpoints()
    runs = [store.get_run(r) for r in checkpoint.record.data_runs]
    assert {r.config["purpose"] for r in runs} == {"rollout"} and {r.status for r in runs} == {"complete"}
    assert all(r.config["checkpoint"] == checkpoint.id for r in runs)
    episodes = [e for r in runs for e in store.episodes(r.id, with_turns=True)]
    assert len(episodes) == 3 * 2 * 2 == round_.train["examples"]  # 3 steps x 2 seeds x a group of 2
    assert {e.seed for e in episodes} <= {0, 1, 2, 3} and all(len(e.turns) == 2 for e in episodes)
    for member in (0, 1):  # each member of a group has its runs, each seed at most once per run
        mine = [r for r in runs if r.config["member"] == member]
        assert sum(len(store.episodes(r.id)) for r in mine) == 6
    assert checkpoint.record.method == "grpo" and len(checkpoint.record.metrics["train"]["losses"]) == 3
    with pytest.raises(SpecError, match="grpo trains on one environment at a time"):
        await improve(ImproveConfig(envs=("letter-v0", "maze-fo-v0"), method="grpo"), store)


def test_the_improve_command_runs_dpo_on_given_runs(tiny_spec: str, tmp_path: Path) -> None:
    import asyncio

    from palaestra.cli import main
    from palaestra.runner import EvalConfig, evaluate

    db = f"sqlite:///{tmp_path / 'dpo-cli.db'}"
    with Store(db) as store:
        data = asyncio.run(
            evaluate(
                EvalConfig(envs=("maze-fo-v0",), agents=("optimal", "random"), episodes=2, split="train"),
                store,
                progress=False,
            )
        )
    runner = CliRunner(env={"PALAESTRA_CHECKPOINTS": str(tmp_path / "registry")})
    args = ["improve", "maze-fo-v0", "--model", tiny_spec, "--method", "dpo", "--max-steps", "1", "--batch-size", "2"]
    args += ["--data", data.run_ids[0], "--data", data.run_ids[1], "--max-turns", "3"]
    args += ["--agent", "prompt:shots=0,history=0,max_tokens=4", "--validation-episodes", "2", "--test-episodes", "2"]
    result = runner.invoke(main, [*args, "--db", db, "-q"])
    assert result.exit_code == 0, result.output
    assert "preference pairs, 1 steps in" in result.output and "final model:" in result.output
    (listed,) = json.loads(runner.invoke(main, ["models", "list", "--json"]).output)
    assert listed["method"] == "dpo" and listed["metrics"]["pairs"]["seeds"] == 2

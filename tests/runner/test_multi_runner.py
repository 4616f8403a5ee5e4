"""Multi-agent episodes through the runner: players, rounds, returns, mixes, prompt agents, errors, and
evaluate/resume writing them to a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from palaestra.agents.players import assign_players, make_players, mix_entries
from palaestra.agents.prompt import demonstrations
from palaestra.core.errors import SpecError, UnknownSpecError
from palaestra.envs import make_multi
from palaestra.envs.multi import PlayerView
from palaestra.models.scripted import ScriptedModel
from palaestra.runner import EvalConfig, evaluate, resume, run_multi_episode
from palaestra.store import Store
from palaestra.testing.toys import register_toys

register_toys()


def test_player_mix_grammar() -> None:
    assert mix_entries("greedy + sustainable*4") == [("greedy", None), ("sustainable", 4)]
    seats = ["a", "b", "c", "d", "e"]
    assert assign_players("prompt", seats) == dict.fromkeys(seats, "prompt")
    assert assign_players("greedy + sustainable*4", seats) == {"a": "greedy", **dict.fromkeys("bcde", "sustainable")}
    assert (
        assign_players("prompt:temperature=0.7,history=4 + random*4", seats)["a"] == "prompt:temperature=0.7,history=4"
    )
    with pytest.raises(SpecError, match="fills 2 seats but the environment has 5 players"):
        assign_players("greedy + sustainable", seats)
    with pytest.raises(SpecError, match="empty entry"):
        assign_players("greedy + ", seats)


async def test_scripted_players_play_a_parallel_game() -> None:
    env = make_multi("toy-sum-v0")
    players = make_players("optimal + random*2", env, None, seed=5)
    episode = await run_multi_episode(env, players, seed=5)
    assert episode.status == "ok", episode.error
    assert episode.players == {"p0": "optimal", "p1": "random", "p2": "random"}
    assert [(t.agent, t.round) for t in episode.turns] == [(p, r) for r in range(3) for p in ("p0", "p1", "p2")]
    returns = episode.metrics["returns"]
    assert returns == {p: sum(t.step.reward for t in episode.turns if t.agent == p) for p in ("p0", "p1", "p2")}
    assert returns == episode.metrics["scores"]  # the environment's own tally agrees with the runner's
    assert episode.total_return == sum(returns.values()) and episode.terminated and not episode.truncated
    assert all(t.action.text == "4" for t in episode.turns if t.agent == "p0")  # optimal: budget 12 / 3 players
    again = await run_multi_episode(make_multi("toy-sum-v0"), make_players("optimal + random*2", env, None, seed=5), 5)
    assert [t.action.text for t in again.turns] == [t.action.text for t in episode.turns]  # seeded players


async def test_turn_based_rewards_of_players_who_did_not_act_are_counted() -> None:
    env = make_multi("toy-countdown-v0")
    episode = await run_multi_episode(env, make_players("optimal", env, None), seed=2)  # counter 5
    assert episode.status == "ok"
    # 5: p0 takes 2 (leaves 3), p1 can only take 1 (leaves 2), p0 takes both and wins
    assert [(t.agent, t.action.text) for t in episode.turns] == [("p0", "2"), ("p1", "1"), ("p0", "2")]
    # p1's -1 came on p0's winning move: it is in p1's return though p1 has no turn there
    assert [t.step.reward for t in episode.turns if t.agent == "p1"] == [0.0]
    assert episode.metrics["returns"] == {"p0": 1.0, "p1": -1.0} and episode.metrics["winner"] == "p0"
    assert [t.round for t in episode.turns] == [0, 1, 2] and episode.success and episode.total_return == 0.0


async def test_prompt_players_get_their_own_instructions_and_demonstrations() -> None:
    model = ScriptedModel(["3"])
    env = make_multi("toy-sum-v0")
    players = make_players("prompt + optimal*2", env, model)
    episode = await run_multi_episode(env, players, seed=0)
    assert episode.status == "ok" and episode.players["p0"] == "prompt"
    p0_turns = [t for t in episode.turns if t.agent == "p0"]
    assert len(p0_turns) == 3 and all(len(t.action.calls) == 1 for t in p0_turns)
    assert all(not t.action.calls for t in episode.turns if t.agent != "p0")
    system = model.requests[0].messages[0].content
    assert "You are p0." in system
    shots = await demonstrations(PlayerView(env, "p0"), 2)  # the optimal policy playing seat p0 on train seeds
    assert [m.role for m in shots] == ["user", "assistant"] * 2 and shots[1].content == "4"
    assert model.requests[0].messages[1:5] == shots


async def test_a_failing_player_makes_an_error_episode_not_a_zero() -> None:
    env = make_multi("toy-sum-v0")
    model = ScriptedModel(["3"], fail_on_calls=[4])
    episode = await run_multi_episode(env, make_players("prompt", env, model), seed=0)
    assert episode.status == "error" and "ModelError" in (episode.error or "")


async def test_evaluate_stores_multi_agent_runs_and_resumes(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'multi.db'}")
    config = EvalConfig(envs=("toy-sum-v0", "toy-countdown-v0"), agents=("optimal", "random"), episodes=3)
    result = await evaluate(config, store, progress=False)
    assert result.ok == 12 and result.errors == 0
    run = store.get_run(result.run_ids[0])
    assert run.env_spec.multi_agent and run.agent_spec == "optimal"
    (first, *_) = store.episodes(run.id, with_turns=True)
    assert first.players == dict.fromkeys(["p0", "p1", "p2"], "optimal")
    assert first.metrics["returns"] and {t.agent for t in first.turns} == {"p0", "p1", "p2"}

    model = ScriptedModel(["3"], fail_on_calls=[2])
    mixed = await evaluate(
        EvalConfig(envs=("toy-sum-v0",), agents=("prompt + optimal*2",), episodes=2, concurrency=1),
        store,
        model=model,
        progress=False,
    )
    assert mixed.errors == 1 and mixed.ok == 1
    assert store.get_run(mixed.run_ids[0]).model_spec == model.spec
    resumed = await resume(mixed.run_ids, store, model=ScriptedModel(["3"]), progress=False)
    assert resumed.ok == 1 and resumed.statuses[mixed.run_ids[0]] == "complete"


async def test_evaluate_refuses_bad_mixes_before_creating_runs(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'bad.db'}")
    with pytest.raises(SpecError, match="fills 2 seats but the environment has 3 players"):
        await evaluate(EvalConfig(envs=("toy-sum-v0",), agents=("optimal + random",)), store, progress=False)
    with pytest.raises(UnknownSpecError, match="unknown agent for toy-sum-v0 'greedy'"):
        await evaluate(EvalConfig(envs=("toy-sum-v0",), agents=("optimal + greedy*2",)), store, progress=False)
    with pytest.raises(SpecError, match="needs a model"):
        await evaluate(EvalConfig(envs=("toy-sum-v0",), agents=("prompt + random*2",)), store, progress=False)
    assert store.list_runs() == []


async def test_when_one_player_fails_the_others_calls_are_cancelled() -> None:
    import asyncio
    import time

    from palaestra.agents import PromptAgent, PromptConfig

    env = make_multi("toy-sum-v0")
    failing = ScriptedModel(["3"], fail_on_calls=[1])
    slow = ScriptedModel(["3"], delay_s=30.0)
    config = PromptConfig(shots=0)
    agents = {"p0": PromptAgent(failing, config), "p1": PromptAgent(slow, config), "p2": PromptAgent(slow, config)}
    started = time.perf_counter()
    episode = await run_multi_episode(env, agents, seed=0)
    assert episode.status == "error" and "scripted failure on call 1" in (episode.error or "")
    assert time.perf_counter() - started < 10  # did not wait for the slow players
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []  # nothing left running

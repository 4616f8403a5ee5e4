"""The episode loop, the asyncio executor and evaluate/resume, on real environments and a real SQLite file."""

import asyncio

import pytest

from palaestra.agents import PromptAgent, PromptConfig, ScriptedAgent
from palaestra.core.types import ChatRequest, Completion
from palaestra.envs import make
from palaestra.models.scripted import ScriptedModel
from palaestra.runner import AsyncioExecutor, EpisodeJob, EvalConfig, evaluate, resume, run_episode
from palaestra.store import Store


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'runs.db'}") as s:
        yield s


async def test_optimal_agent_solves_maze_with_lmrl_rewards():
    env = make("maze-fo-v0")
    episode = await run_episode(env, ScriptedAgent("optimal", seed=0), seed=11_000)
    assert episode.status == "ok" and episode.success and episode.terminated and not episode.truncated
    # -1 per move, 0 for the move that reaches the goal
    assert episode.total_return == -(len(episode.turns) - 1)
    assert episode.turns[-1].step.reward == 0.0
    assert episode.first_observation.startswith("The goal is at position")


async def test_unparseable_model_output_is_an_invalid_action_not_a_crash():
    env = make("maze-fo-v0", max_turns=5)
    model = ScriptedModel(["I am not sure what to do <script>x</script>"])
    episode = await run_episode(env, PromptAgent(model), seed=11_000)
    assert episode.status == "ok"
    assert len(episode.turns) == 5 and episode.truncated and not episode.success
    assert episode.invalid_actions == 5
    assert episode.total_return == 5 * env.spec.invalid_action.penalty


async def test_prompt_agent_records_exact_tokens_and_sees_its_own_replies():
    env = make("maze-fo-v0", max_turns=3)
    model = ScriptedModel(["move up", "Hmm.\nAction: move left", "move down"], honor_max_tokens=False)
    episode = await run_episode(env, PromptAgent(model, PromptConfig(shots=0)), seed=11_001)
    assert [t.action.text for t in episode.turns] == ["move up", "move left", "move down"]
    second = episode.turns[1].action
    assert second.raw == "Hmm.\nAction: move left"
    assert second.calls[0].completion_token_ids == tuple(second.raw.encode())
    # the third prompt shows the model its earlier replies verbatim, after the environment's instructions
    third_prompt = model.requests[2].messages
    assert third_prompt[0].role == "system" and env.instructions in third_prompt[0].content
    assert [m.content for m in third_prompt if m.role == "assistant"] == [
        "move up",
        "Hmm.\nAction: move left",
    ]
    assert episode.usage.completion_tokens == sum(len(t.action.raw.encode()) for t in episode.turns)


async def test_demonstrations_come_from_the_train_split_and_precede_the_episode():
    env = make("maze-fo-v0", max_turns=2)
    model = ScriptedModel(["move up"])
    episode = await run_episode(env, PromptAgent(model, PromptConfig(shots=2)), seed=11_003)
    first = model.requests[0].messages
    assert [m.role for m in first] == ["system", "user", "assistant", "user", "assistant", "user"]
    # the demonstrations are the optimal policy on the first train seeds, not the evaluated test seed
    demo_env = make("maze-fo-v0")
    start = await demo_env.reset(seed=0)
    assert first[1].content == start.observation
    assert first[2].content == demo_env.scripted_policies()["optimal"](demo_env, None)
    assert first[-1].content == episode.first_observation != start.observation
    assert all(m.content != episode.first_observation for m in first[1:-1])


async def test_model_failure_makes_an_error_episode():
    env = make("maze-fo-v0")
    model = ScriptedModel(["move up"], fail_on_calls=[2])
    episode = await run_episode(env, PromptAgent(model), seed=11_000)
    assert episode.status == "error"
    assert episode.error.startswith("ModelError:")
    assert len(episode.turns) == 1  # the turn before the failure is kept for inspection


async def test_token_budget_truncates_the_episode():
    env = make("maze-fo-v0")
    model = ScriptedModel(["move up"])
    episode = await run_episode(env, PromptAgent(model), seed=11_000, max_tokens=1)
    assert episode.status == "ok" and episode.truncated and len(episode.turns) == 1


async def test_executor_timeout_is_an_error_and_concurrency_is_bounded():
    in_flight = peak = 0

    class Counting(ScriptedModel):
        async def generate(self, request: ChatRequest) -> Completion:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await super().generate(request)
            finally:
                in_flight -= 1

    model = Counting(["move up"], delay_s=0.01)
    spec = make("maze-fo-v0", max_turns=3).spec
    jobs = [EpisodeJob("run", spec, "prompt", model.spec, seed) for seed in range(11_000, 11_012)]
    done: list = []
    await AsyncioExecutor(model, concurrency=4).run(jobs, lambda job, ep: done.append(ep))
    assert sorted(e.seed for e in done) == list(range(11_000, 11_012))
    assert all(e.status == "ok" for e in done)
    assert peak == 4

    slow = ScriptedModel(["move up"], delay_s=5)
    job = EpisodeJob("run", spec, "prompt", slow.spec, 11_000, timeout_s=0.05)
    done.clear()
    await AsyncioExecutor(slow, concurrency=1).run([job], lambda job, ep: done.append(ep))
    assert done[0].status == "error" and "TimeoutError" in done[0].error


async def test_evaluate_stores_every_episode_and_resume_replays_errors(store):
    config = EvalConfig(envs=("maze-fo-v0",), agents=("prompt",), episodes=6, max_turns=4, concurrency=3)
    flaky = ScriptedModel(["move up"], fail_on_calls=[1, 5, 9])
    result = await evaluate(config, store, model=flaky, progress=False)
    (run_id,) = result.run_ids
    assert result.errors > 0 and result.ok + result.errors == 6
    assert result.statuses[run_id] == "incomplete"
    failed = store.pending_seeds(run_id)
    assert len(failed) == result.errors

    healthy = ScriptedModel(["move up"])
    again = await resume([run_id], store, model=healthy, progress=False)
    assert again.ok == len(failed) and again.errors == 0
    assert again.statuses[run_id] == "complete"
    episodes = store.episodes(run_id)
    assert sorted(e.seed for e in episodes) == list(range(11_000, 11_006))
    assert all(e.status == "ok" for e in episodes)
    # nothing left to do: a second resume plays nothing
    assert (await resume([run_id], store, model=healthy, progress=False)).ok == 0


async def test_evaluate_scripted_agents_on_all_envs(store):
    config = EvalConfig(envs=("maze-fo-v0", "maze-po-v0", "wordle-v0"), agents=("optimal", "random"), episodes=5)
    result = await evaluate(config, store, progress=False)
    assert len(result.run_ids) == 6 and result.ok == 30 and result.errors == 0
    runs = {(r.env_id, r.agent_spec): r for r in store.list_runs()}
    for env_id in config.envs:
        optimal = store.episodes(runs[env_id, "optimal"].id)
        assert all(e.success for e in optimal)
        assert runs[env_id, "optimal"].model_spec is None
        assert runs[env_id, "optimal"].config["seeds"] == make(env_id).spec.seeds("test", 5)


async def test_seeds_make_runs_reproducible(store):
    config = EvalConfig(envs=("wordle-v0",), agents=("noisy",), episodes=4, split="validation", seed=7)
    first = await evaluate(config, store, progress=False)
    second = await evaluate(config, store, progress=False)
    a, b = (store.episodes(r, with_turns=True) for r in (first.run_ids[0], second.run_ids[0]))
    assert [[t.action.text for t in e.turns] for e in a] == [[t.action.text for t in e.turns] for e in b]
    assert [e.seed for e in a] == list(range(10_007, 10_011))


def test_unknown_agent_is_rejected_before_any_run_is_created(store):
    from palaestra.core.errors import UnknownSpecError

    config = EvalConfig(envs=("maze-fo-v0",), agents=("optimall",), episodes=2)
    with pytest.raises(UnknownSpecError, match="optimal"):
        asyncio.run(evaluate(config, store, progress=False))
    assert store.list_runs() == []

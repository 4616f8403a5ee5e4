"""Environments whose partner is a model (oracle, buyer): one shared model per spec, errors stored as errors."""

from typing import Any

import pytest

from palaestra.core.types import ChatRequest, InvalidActionRule, Message, SamplingParams, Step
from palaestra.envs import Env, register
from palaestra.envs.registry import _REGISTRY
from palaestra.models import ModelPool, ScriptedModel
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import Store


class EchoPartnerEnv(Env):
    """Two turns; each action is answered by the partner model (the runner's pool supplies it)."""

    instructions = "Say anything."

    def __init__(self, partner: str = "scripted:echo") -> None:
        self.partner = partner
        self.turns = 0

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        self.turns = 0
        return Step("hello", 0.0, info={"invalid_action": False})

    async def step(self, action: str) -> Step:
        self.turns += 1
        model = self.partner_model(self.partner)
        reply = await model.generate(ChatRequest((Message("user", action),), SamplingParams(max_tokens=64)))
        done = self.turns >= 2
        info = {"invalid_action": False, "partner_id": id(model)} | ({"success": True} if done else {})
        return Step(reply.text, 0.0, terminated=done, info=info)


@pytest.fixture
def partner_env():
    register(
        "echo-partner-v0",
        f"{__name__}:EchoPartnerEnv",
        max_turns=2,
        invalid_action=InvalidActionRule("penalty", 0.0, "none"),
        splits={"train": (0, 10), "validation": (10, 20), "test": (20, 30)},
    )
    yield "echo-partner-v0"
    _REGISTRY.pop("echo-partner-v0")


def test_pool_builds_once_per_spec_shares_added_models_and_closes_only_its_own():
    pool = ModelPool()
    agent_model = ScriptedModel(["hi"], spec="scripted:cycle:hi")
    pool.add(agent_model)
    assert pool.get("scripted:cycle:hi") is agent_model  # the agent's own model, shared by spec
    echo = pool.get("scripted:echo")
    assert pool.get(" scripted:echo ") is echo and "scripted:echo" in pool
    assert set(map(id, pool.shared_models())) == {id(agent_model), id(echo)}


async def test_pool_close_forgets_built_models():
    pool = ModelPool()
    built = pool.get("scripted:echo")
    await pool.close()
    assert "scripted:echo" not in pool and pool.get("scripted:echo") is not built
    await pool.close()
    await pool.close()  # twice is fine


async def test_env_outside_the_runner_owns_its_partner_and_copies_share_it():
    from palaestra.envs import make

    register(
        "echo-partner-solo-v0",
        f"{__name__}:EchoPartnerEnv",
        max_turns=2,
        invalid_action=InvalidActionRule("penalty", 0.0, "none"),
    )
    try:
        env = make("echo-partner-solo-v0")
        await env.reset(seed=0)
        first = await env.step("ping")
        assert first.observation == "ping"  # echo repeats the last user message
        clone = env.copy()
        second = await clone.step("pong")
        assert second.info["partner_id"] == first.info["partner_id"]  # the same model object, not a copy
        assert env.turns == 1 and clone.turns == 2
        await clone.close()  # the copy does not own the partner
        assert (await env.step("again")).observation == "again"
        await env.close()
        await env.close()
    finally:
        _REGISTRY.pop("echo-partner-solo-v0")


async def test_runner_gives_all_episodes_one_partner_and_shares_the_agent_model(tmp_path, partner_env):
    with Store(f"sqlite:///{tmp_path / 'p.db'}") as store:
        config = EvalConfig(envs=(partner_env,), agents=("prompt:shots=0",), model="scripted:echo", episodes=4)
        agent_model = ScriptedModel("echo")
        await evaluate(config, store, model=agent_model, progress=False)
        (run,) = store.list_runs()
        episodes = store.episodes(run.id, with_turns=True)
        assert [e.status for e in episodes] == ["ok"] * 4
        partner_ids = {t.step.info["partner_id"] for e in episodes for t in e.turns}
        assert partner_ids == {id(agent_model)}  # partner spec == agent spec: one instance for both


async def test_a_failing_partner_model_stores_the_episode_as_an_error(tmp_path, partner_env):
    with Store(f"sqlite:///{tmp_path / 'p.db'}") as store:
        config = EvalConfig(
            envs=(partner_env,),
            agents=("prompt:shots=0",),
            model="scripted:echo",
            episodes=2,
            concurrency=1,
        )
        # the agent and the partner share the model; its 2nd call is the first episode's partner reply
        model = ScriptedModel("echo", fail_on_calls=[2])
        result = await evaluate(config, store, model=model, progress=False)
        assert (result.ok, result.errors) == (1, 1)
        (run,) = store.list_runs()
        failed = [e for e in store.episodes(run.id) if e.status == "error"]
        assert len(failed) == 1 and "ModelError" in failed[0].error

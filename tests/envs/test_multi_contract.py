"""The multi-agent contract: the conformance checker, channels, the mode converters, player views, the
registry's split between single- and multi-agent ids, and the PettingZoo adapter (PettingZoo's own tests)."""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from palaestra.core.errors import EnvError, SpecError
from palaestra.core.types import Step
from palaestra.envs import Channel, make, make_any, make_multi, parallel_to_turn, registered, turn_to_parallel
from palaestra.envs.multi import PlayerView
from palaestra.envs.pettingzoo import to_pettingzoo
from palaestra.testing import EnvCheckError, check_multi_env
from palaestra.testing.toys import ToyCountdownEnv, ToySumEnv, register_toys

# Built-in multi-agent ids, collected before the toys below are registered.
MULTI = sorted(i for i, s in registered().items() if s.multi_agent and s.entry_point.startswith("palaestra.envs."))
register_toys()


@pytest.mark.parametrize("env_id", MULTI)
def test_every_builtin_multi_agent_env_passes_the_checker_and_pettingzoos_tests(env_id: str) -> None:
    check_multi_env(env_id, seeds=(0, 11_000))
    env = to_pettingzoo(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # PettingZoo reports API problems as warnings
        parallel_api_test(env, num_cycles=1000)
    env.close()
    parallel_seed_test(lambda: to_pettingzoo(env_id))


@pytest.mark.parametrize("env_id", ["toy-sum-v0", "toy-countdown-v0"])
def test_toys_pass_the_checker(env_id: str) -> None:
    check_multi_env(env_id, seeds=(0, 1, 2))


class _Immortal(ToySumEnv):
    """Broken on purpose: reports players done but never removes them from ``agents``."""

    async def step(self, actions: Mapping[str, str]) -> dict[str, Step]:
        keep = list(self.agents)
        out = await super().step(actions)
        self.agents = keep
        return out


def test_checker_catches_a_player_that_never_leaves() -> None:
    env = make_multi("toy-sum-v0")
    broken = _Immortal()
    broken.spec = env.spec
    with pytest.raises(EnvCheckError, match=r"'players'.*done but still in agents"):
        check_multi_env(broken)


async def test_actions_must_come_from_exactly_the_acting_players() -> None:
    env = make_multi("toy-countdown-v0")
    with pytest.raises(EnvError, match="before reset"):
        await env.step({"p0": "1"})
    await env.reset(seed=3)
    assert env.acting() == ["p0"]
    with pytest.raises(EnvError, match="not acting now \\['p1'\\]"):
        await env.step({"p1": "1"})
    with pytest.raises(EnvError, match="missing \\['p0'\\]"):
        await env.step({})


def test_make_and_make_multi_keep_the_kinds_apart() -> None:
    with pytest.raises(SpecError, match=r"multi-agent environment; build it with palaestra\.make_multi"):
        make("toy-sum-v0")
    with pytest.raises(SpecError, match=r"single-agent environment; build it with palaestra\.make\("):
        make_multi("maze-fo-v0")
    assert isinstance(make_any("toy-sum-v0"), ToySumEnv)
    assert make("toy-sum-v0".replace("toy-sum", "maze-fo")).spec.multi_agent is False
    assert make_multi("toy-sum-v0").spec.multi_agent is True


# --------------------------------------------------------------------------- channels


def test_channel_on_a_network_only_reaches_neighbours() -> None:
    ring = {"a": {"b", "d"}, "b": {"a", "c"}, "c": {"b", "d"}, "d": {"c", "a"}}
    channel = Channel(list(ring), neighbours=ring)
    assert channel.send("a", "hello b", round=0, to=["b"]) is None
    refused = channel.send("a", "hello c", round=0, to=["c"])
    assert refused is not None and "cannot message c" in refused and "neighbours (b, d)" in refused
    assert channel.send("a", "to all my neighbours", round=1) is None
    assert [m.text for m in channel.inbox("b")] == ["hello b", "to all my neighbours"]
    assert [m.text for m in channel.inbox("c")] == []  # not a neighbour of a: sees nothing
    assert [m.text for m in channel.inbox("d", round=1)] == ["to all my neighbours"]
    assert [m.text for m in channel.inbox("a")] == ["hello b", "to all my neighbours"]  # own messages
    assert channel.transcript()[0] == {"from": "a", "to": ["b"], "round": 0, "text": "hello b"}


def test_channel_private_public_and_limits() -> None:
    channel = Channel(["a", "b", "c"], max_chars=10)
    assert channel.send("a", "psst", round=0, to=["b"]) is None
    assert channel.send("c", "hi all", round=0) is None
    assert [m.text for m in channel.inbox("c")] == ["hi all"]  # the private message stays private
    assert [m.text for m in channel.inbox("b")] == ["psst", "hi all"]
    assert "over the limit" in (channel.send("a", "x" * 11, round=0) or "")
    assert "not a player" in (channel.send("z", "hi", round=0) or "")
    assert "at least one recipient" in (channel.send("a", "hi", round=0, to=[]) or "")
    quiet = Channel(["a", "b"], public=False)
    assert "broadcasts are not allowed" in (quiet.send("a", "hi", round=0) or "")
    secret_free = Channel(["a", "b"], private=False)
    assert "private messages are not allowed" in (secret_free.send("a", "hi", round=0, to=["b"]) or "")


async def test_a_message_to_a_non_neighbour_is_the_senders_invalid_action() -> None:
    env = make_multi("toy-sum-v0", ring=True, n_players=5)
    await env.reset(seed=0)
    actions = dict.fromkeys(env.acting(), "2")
    actions["p0"] = "tell p2: hello\n2"  # p2 is not next to p0 on the ring
    actions["p3"] = "tell p4: hello\n2"  # p4 is
    steps = await env.step(actions)
    assert "refused" in steps["p0"].observation and "neighbours (p1, p4)" in steps["p0"].observation
    assert steps["p0"].info["invalid_action"] and not steps["p3"].info["invalid_action"]
    assert "Message from p3: hello" in steps["p4"].observation
    assert all("hello" not in steps[p].observation for p in ("p1", "p2"))


# --------------------------------------------------------------------------- converters


async def _play(env, policy: str, seed: int) -> tuple[dict[str, float], dict]:
    rng = random.Random(seed)
    policies = env.scripted_policies()
    await env.reset(seed=seed)
    returns: dict[str, float] = dict.fromkeys(env.possible_agents, 0.0)
    while env.agents:
        steps = await env.step({a: policies[policy](env, a, rng) for a in env.acting()})
        for agent, step in steps.items():
            returns[agent] += step.reward
    return returns, env.metrics()


async def test_parallel_to_turn_plays_the_same_game() -> None:
    for seed in range(5):
        parallel = await _play(make_multi("toy-sum-v0"), "random", seed)
        turned_env = parallel_to_turn(make_multi("toy-sum-v0"))
        assert turned_env.mode == "turn"
        assert await _play(turned_env, "random", seed) == parallel
    env = parallel_to_turn(make_multi("toy-sum-v0"))
    first = await env.reset(seed=1)
    assert env.acting() == ["p0"]
    waiting = await env.step({"p0": "4"})  # not applied until everyone has chosen
    assert all(s.reward == 0.0 and s.observation == first[a].observation for a, s in waiting.items())
    assert env.acting() == ["p1"]
    check_multi_env(parallel_to_turn(make_multi("toy-sum-v0")))


async def test_turn_to_parallel_takes_one_action_per_player_per_step() -> None:
    env = turn_to_parallel(make_multi("toy-countdown-v0"))
    await env.reset(seed=0)  # counter 8 for seed 0
    inner = env.env  # type: ignore[attr-defined]
    assert isinstance(inner, ToyCountdownEnv) and inner.counter == 8
    assert env.acting() == ["p0", "p1"]
    steps = await env.step({"p0": "2", "p1": "2"})
    assert inner.counter == 4 and not any(s.done for s in steps.values())
    steps = await env.step({"p0": "2", "p1": "2"})  # p0 leaves 2, p1 takes both and wins
    assert inner.counter == 0 and steps["p1"].reward == 1.0 and steps["p0"].reward == -1.0
    assert env.agents == [] and env.metrics() == {"winner": "p1", "success": True}
    # an invalid move is flagged for its player, and the same player keeps the turn within the step
    await env.reset(seed=0)
    steps = await env.step({"p0": "9", "p1": "1"})
    assert steps["p0"].info["invalid_action"] and steps["p0"].reward == -0.5
    assert not steps["p1"].info["invalid_action"]


# --------------------------------------------------------------------------- player views


async def test_a_player_view_looks_like_a_single_agent_env() -> None:
    env = make_multi("toy-countdown-v0")
    view = PlayerView(env, "p1")
    assert view.instructions.startswith("You are p1.") and view.spec is env.spec
    await env.reset(seed=0)
    assert view.scripted_policies()["optimal"](view, random.Random(0)) == "2"  # counter 8: leave a multiple of 3
    with pytest.raises(EnvError, match="not stepped itself"):
        await view.step("1")
    with pytest.raises(EnvError, match="not reset itself"):
        await view.reset(seed=0)
    with pytest.raises(EnvError, match="'p9' is not a player"):
        PlayerView(env, "p9")
    clone = view.copy()
    await clone.env.step({"p0": "2"})
    assert clone.env.counter == 6 and env.counter == 8  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- PettingZoo


@pytest.mark.parametrize("env_id", ["toy-sum-v0", "toy-countdown-v0"])
def test_pettingzoo_api_tests_pass(env_id: str) -> None:
    env = to_pettingzoo(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # PettingZoo reports API problems as warnings
        parallel_api_test(env, num_cycles=100)
    env.close()
    parallel_seed_test(lambda: to_pettingzoo(env_id))


def test_pettingzoo_adapter_plays_a_seeded_game() -> None:
    env = to_pettingzoo(make_multi("toy-sum-v0"))
    observations, _ = env.reset(seed=4)
    assert set(observations) == {"p0", "p1", "p2"} and env.agents == ["p0", "p1", "p2"]
    totals = dict.fromkeys(env.possible_agents, 0.0)
    while env.agents:
        _, rewards, _, _, _ = env.step(dict.fromkeys(env.agents, "3"))
        for agent, reward in rewards.items():
            totals[agent] += reward
    assert totals == dict.fromkeys(env.possible_agents, 9.0)  # 3 rounds of 3 each, total 9 <= budget
    with pytest.raises(EnvError, match="after every agent is done"):
        env.step({"p0": "1"})
    env.close()
    env.close()


# --------------------------------------------------------------------------- docs/multiagent.md

DOC = Path(__file__).resolve().parents[2] / "docs" / "multiagent.md"
DOC_BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(DOC_BLOCKS)))
def test_multiagent_doc_blocks_run(index: int, run_doc_block) -> None:
    run_doc_block(DOC_BLOCKS[index], f"{DOC.name} block {index}")


def test_multiagent_doc_has_examples() -> None:
    assert len(DOC_BLOCKS) >= 4

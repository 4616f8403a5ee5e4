"""Tests of palaestra.envs.gymnasium: the adapter passes Gymnasium's own checker for every built-in env."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env

from palaestra.core.errors import EnvError
from palaestra.core.types import EnvSpec, InvalidActionRule, Step
from palaestra.envs import make, registered
from palaestra.envs.base import Env
from palaestra.envs.gymnasium import GymnasiumAdapter, to_gymnasium

# Built-in single-agent ids (multi-agent ones go through the PettingZoo adapter instead).
SINGLE = sorted(i for i, s in registered().items() if not s.multi_agent and s.entry_point.startswith("palaestra.envs."))


@pytest.mark.parametrize("env_id", SINGLE)
def test_gymnasium_env_checker_passes_without_warnings(env_id: str) -> None:
    env = to_gymnasium(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gymnasium_check_env(env, skip_render_check=True)  # no render modes to check
    env.close()
    assert [str(w.message) for w in caught] == []


def test_reset_and_step_follow_the_gymnasium_api() -> None:
    env = to_gymnasium(make("maze-fo-v0", layout="double_t"))
    assert isinstance(env, gymnasium.Env) and isinstance(env, GymnasiumAdapter)
    obs, info = env.reset(seed=5, options={"start": [7, 6]})
    assert obs.startswith("The goal is at position 8, 6. Your current position is at position 7, 6.")
    assert obs in env.observation_space and info["invalid_action"] is False
    obs, reward, terminated, truncated, info = env.step("move down")
    assert (reward, terminated, truncated, info["success"]) == (0.0, True, False, True)
    env.close()
    env.close()  # closing twice is allowed


def test_unseeded_resets_continue_the_seeded_sequence() -> None:
    env = to_gymnasium("wordle-v0")
    env.reset(seed=7)
    env.step("crane")
    first = [env.reset()[0] for _ in range(3)] + [env.step("slate")[0]]
    env.reset(seed=7)
    env.step("crane")
    again = [env.reset()[0] for _ in range(3)] + [env.step("slate")[0]]
    assert first == again
    env.close()


async def test_adapter_works_while_an_event_loop_is_running() -> None:
    env = to_gymnasium("maze-po-v0")
    obs, _ = env.reset(seed=1)
    assert obs.startswith("Find the goal.")
    assert env.step("move up")[0]
    env.close()


class EchoEnv(Env):
    """Echoes the action back verbatim, to test the adapter's handling of odd characters and length."""

    instructions = "Say anything."

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        return Step("héllo 🙂", info={"invalid_action": False})

    async def step(self, action: str) -> Step:
        return Step(action, -0.0, info={"invalid_action": False})


def echo_env() -> Env:
    env = EchoEnv()
    env.spec = EnvSpec("echo-v0", f"{__name__}:EchoEnv", invalid_action=InvalidActionRule("penalty", 0.0))
    return env


def test_characters_outside_the_charset_are_replaced() -> None:
    env = to_gymnasium(echo_env(), max_observation_length=20)
    obs, _ = env.reset(seed=0)
    assert obs == "h?llo ?" and obs in env.observation_space
    with pytest.raises(EnvError, match="max_observation_length"):
        env.step("x" * 21)
    env.close()

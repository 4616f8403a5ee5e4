"""Tests of palaestra.testing.check_env: every built-in passes, and deliberately broken envs are caught."""

from __future__ import annotations

import random
from typing import Any

import pytest

from palaestra.core.errors import EnvError, PalaestraError
from palaestra.core.types import EnvSpec, InvalidActionRule, Step
from palaestra.envs import make, registered
from palaestra.envs.base import Env, Policy
from palaestra.testing import EnvCheckError, acheck_env, check_env

# Built-in single-agent ids (not the toys of palaestra.testing that other test modules register).
SINGLE = sorted(i for i, s in registered().items() if not s.multi_agent and s.entry_point.startswith("palaestra.envs."))


@pytest.mark.parametrize("env_id", SINGLE)
def test_every_builtin_env_passes(env_id: str) -> None:
    check_env(env_id, seeds=range(5))
    check_env(make(env_id), seeds=[11_000])


async def test_check_env_works_inside_a_running_event_loop() -> None:
    check_env("maze-po-v0", seeds=[1])
    await acheck_env("wordle-v0", seeds=[2])


def test_env_check_error_is_an_assertion_and_a_palaestra_error() -> None:
    assert issubclass(EnvCheckError, AssertionError) and issubclass(EnvCheckError, PalaestraError)


# --------------------------------------------------------------------------- a correct toy environment
# Count to 3: the action "inc" adds one; reaching 3 succeeds. Anything else is invalid (penalty -1).


class CountEnv(Env):
    instructions = "Reply 'inc' to add one to the counter; reach 3."

    def __init__(self) -> None:
        self.count: int | None = None
        self.turns = 0
        self.done = False

    def observe(self) -> str:
        return f"count={self.count}"

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        self.count, self.turns, self.done = 0, 0, False
        return Step(self.observe(), 0.0, info={"invalid_action": False})

    async def step(self, action: str) -> Step:
        if self.count is None or self.done:
            raise EnvError("reset first")
        self.turns += 1
        invalid = action.strip() != "inc"
        if not invalid:
            self.count += 1
        terminated = self.count >= 3
        truncated = not terminated and self.turns >= self.spec.max_turns
        info: dict[str, Any] = {"invalid_action": invalid}
        if terminated or truncated:
            self.done = True
            info["success"] = terminated
        reward = self.spec.invalid_action.penalty if invalid else (0.0 if terminated else -1.0)
        return Step(self.observe(), reward, terminated, truncated, info)

    def scripted_policies(self) -> dict[str, Policy]:
        return {"inc": lambda env, rng: "inc", "noise": lambda env, rng: rng.choice(["inc", "dec"])}


def made(cls: type[Env], max_turns: int = 6, **spec_fields: Any) -> Env:
    env = cls()
    env.spec = EnvSpec(
        id="count-v0",
        entry_point=f"{__name__}:{cls.__name__}",
        max_turns=max_turns,
        reward_range=(-1.0, 0.0),
        invalid_action=InvalidActionRule("penalty", -1.0),
        **spec_fields,
    )
    return env


def test_the_toy_env_passes() -> None:
    check_env(made(CountEnv), seeds=range(4))


# --------------------------------------------------------------------------- broken variants


class NonDeterministic(CountEnv):
    def observe(self) -> str:
        return f"count={self.count} weather={random.random():.6f}"


class IgnoresInvalidRule(CountEnv):
    async def step(self, action: str) -> Step:
        step = await super().step(action)
        return Step(
            step.observation,
            0.0 if step.info["invalid_action"] else step.reward,
            step.terminated,
            step.truncated,
            step.info,
        )


class NeverTruncates(CountEnv):
    async def step(self, action: str) -> Step:
        step = await super().step(action)
        return Step(step.observation, step.reward, step.terminated, False, step.info)


class IntegerReward(CountEnv):
    async def step(self, action: str) -> Step:
        step = await super().step(action)
        return Step(step.observation, int(step.reward), step.terminated, step.truncated, step.info)  # type: ignore[arg-type]


class SharedCopy(CountEnv):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []

    def observe(self) -> str:
        return f"count={self.count} log={len(self.log)}"

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        self.log = []
        return await super().reset(seed=seed, options=options)

    async def step(self, action: str) -> Step:
        self.log.append(action)
        return await super().step(action)

    def copy(self) -> Env:
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)  # shallow: the log list is shared with the original
        return clone


class CrashesOnGarbage(CountEnv):
    async def step(self, action: str) -> Step:
        if len(action) > 1000:
            raise ValueError("too long")
        return await super().step(action)


class NoSuccessFlag(CountEnv):
    async def step(self, action: str) -> Step:
        step = await super().step(action)
        step.info.pop("success", None)
        return step


class SteppableBeforeReset(CountEnv):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0


class RewardOutOfRange(CountEnv):
    async def step(self, action: str) -> Step:
        step = await super().step(action)
        return Step(
            step.observation,
            1.0 if step.terminated else step.reward,
            step.terminated,
            step.truncated,
            step.info,
        )


@pytest.mark.parametrize(
    ("cls", "check"),
    [
        (NonDeterministic, "determinism"),
        (IgnoresInvalidRule, "invalid action"),
        (NeverTruncates, "max_turns"),
        (IntegerReward, "types"),
        (SharedCopy, "copy independence"),
        (CrashesOnGarbage, "(no exceptions|invalid action)"),
        (NoSuccessFlag, "success flag"),
        (SteppableBeforeReset, "step before reset"),
        (RewardOutOfRange, "reward range"),
    ],
)
def test_broken_envs_fail_the_named_check(cls: type[Env], check: str) -> None:
    with pytest.raises(EnvCheckError, match=f"failed check '{check}'"):
        check_env(made(cls, max_turns=4), seeds=range(6))


def test_spec_that_does_not_round_trip_is_caught() -> None:
    env = made(CountEnv, kwargs={"sizes": (1, 2)})  # a tuple comes back from JSON as a list
    with pytest.raises(EnvCheckError, match=r"failed check 'spec'.*JSON round trip"):
        check_env(env)


class NoPolicies(CountEnv):
    def scripted_policies(self) -> dict[str, Policy]:
        return {}


def test_env_without_spec_or_policies_is_told_what_to_do() -> None:
    with pytest.raises(EnvCheckError, match=r"palaestra\.make"):
        check_env(CountEnv())
    with pytest.raises(EnvCheckError, match="driver="):
        check_env(made(NoPolicies))
    check_env(made(NoPolicies), driver=lambda env, rng: "inc")

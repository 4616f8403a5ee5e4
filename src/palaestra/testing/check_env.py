"""``check_env``: the conformance checks every environment must pass (run them in your own tests).

Each failed check raises :class:`EnvCheckError` naming the check, the seed and what to fix. The checks:

- ``spec``: the environment has an ``EnvSpec`` that survives a JSON round trip, with a sane reward range
  that contains the invalid-action penalty; ``instructions`` is non-empty text.
- ``step before reset``: a fresh environment raises ``EnvError`` when stepped before ``reset``.
- ``types``: ``reset``/``step`` return ``Step`` objects with a ``str`` observation, ``float`` reward,
  ``bool`` flags and a ``dict`` info carrying ``"invalid_action"`` (a ``bool``).
- ``reward range``, ``max_turns``, ``success flag``: rewards inside ``spec.reward_range``; no episode longer
  than ``spec.max_turns``; ``truncated`` exactly when the limit is hit unfinished; every final step's info
  has a ``bool`` ``"success"`` (``False`` when truncated).
- ``no exceptions``: ``step`` never raises during an episode, whatever the action.
- ``step after end``: stepping a finished episode raises ``EnvError``.
- ``determinism``: the same seed and the same actions give identical steps.
- ``copy independence``: a copy taken mid-episode continues exactly like the original, and stepping it
  does not change the original.
- ``invalid action``: garbage actions (empty, symbols, HTML, 10,000 characters, unicode, control
  characters) never raise, are flagged ``invalid_action``, earn ``spec.invalid_action.penalty`` and end the
  episode exactly when the rule's mode is ``"terminate"``.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from palaestra.core.errors import EnvError, PalaestraError
from palaestra.core.types import EnvSpec, Step
from palaestra.envs.base import Env
from palaestra.envs.registry import make, make_from_spec


class EnvCheckError(PalaestraError, AssertionError):
    """An environment failed a conformance check; the message names the check and how to fix it."""


Driver = Callable[[Env, random.Random], str]

DEFAULT_INVALID_ACTIONS: tuple[str, ...] = (
    "",
    "%%%",
    "<script>alert(1)</script>",
    "x" * 10_000,
    "\U0001f642 ñ 日本語",
    "\x00\n\t",
)

# What to do about each failed check (the detail says what went wrong).
_FIXES = {
    "spec": "",
    "types": "return Step(observation: str, reward: float, terminated: bool, truncated: bool, info: dict) "
    'with info["invalid_action"] on every step',
    "reward range": "keep rewards inside spec.reward_range, or declare a wider range in register()",
    "max_turns": "count every step() call, valid or not, and set truncated=True at spec.max_turns",
    "success flag": 'put a bool info["success"] on the final step (False when truncated)',
    "no exceptions": "step() must turn any action text into a Step; raise only EnvError for misuse",
    "step before reset": "raise palaestra.core.errors.EnvError from step() until reset() is called",
    "step after end": "raise palaestra.core.errors.EnvError from step() once an episode has ended",
    "determinism": "derive every random choice from the seed passed to reset() (e.g. random.Random(seed))",
    "copy independence": "make copy() deep (Env.copy's default, copy.deepcopy, is) so no state is shared",
    "invalid action": "apply spec.invalid_action to any text that is not a valid action, and never raise",
}

# The default driver occasionally sends garbage mid-episode so invalid actions are exercised in context.
_GARBAGE_PROBABILITY = 0.1


def check_env(
    env_or_id: Env | str,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    driver: Driver | None = None,
    invalid_actions: Sequence[str] = DEFAULT_INVALID_ACTIONS,
) -> None:
    """Run every conformance check on an environment; raise :class:`EnvCheckError` on the first failure.

    Args:
        env_or_id: an environment made with ``palaestra.make`` (so it has a spec), or a registered id.
        seeds: one episode is played (and replayed) per seed.
        driver: chooses actions, ``(env, rng) -> str``. By default a seeded mix of the environment's scripted
            policies, with occasional garbage; environments without scripted policies must pass one.
        invalid_actions: strings the environment must treat as invalid. Pass ``()`` for environments that
            accept any text as an action.
    """
    coro = acheck_env(env_or_id, seeds, driver=driver, invalid_actions=invalid_actions)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside a running event loop (a notebook, an async test): use a loop of our own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def acheck_env(
    env_or_id: Env | str,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    driver: Driver | None = None,
    invalid_actions: Sequence[str] = DEFAULT_INVALID_ACTIONS,
) -> None:
    """The async form of :func:`check_env`, for callers already inside an event loop."""
    owned = isinstance(env_or_id, str)
    env = make(env_or_id) if isinstance(env_or_id, str) else env_or_id
    try:
        checker = _Checker(env, driver, tuple(invalid_actions))
        await checker.run(list(seeds))
    finally:
        if owned:
            await env.close()


def _short(text: str, limit: int = 30) -> str:
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _same_step(a: Step, b: Step) -> bool:
    try:
        return bool(a == b)
    except Exception:  # info values whose == is not a bool (arrays): fall back to their text
        return repr(a) == repr(b)


class _Checker:
    def __init__(self, env: Env, driver: Driver | None, invalid_actions: tuple[str, ...]) -> None:
        self.env = env
        self.invalid_actions = invalid_actions
        self.name = type(env).__name__
        self.spec = self._check_spec()
        self.driver = driver or self._default_driver()

    def fail(self, check: str, detail: str, seed: int | None = None) -> EnvCheckError:
        where = f" (seed {seed})" if seed is not None else ""
        fix = f" Fix: {_FIXES[check]}." if _FIXES.get(check) else ""
        return EnvCheckError(f"check_env({self.spec_id}) failed check '{check}'{where}: {detail}.{fix}")

    @property
    def spec_id(self) -> str:
        spec = getattr(self.env, "spec", None)
        return spec.id if isinstance(spec, EnvSpec) else self.name

    # ------------------------------------------------------------------ one-off checks

    def _check_spec(self) -> EnvSpec:
        spec = getattr(self.env, "spec", None)
        if not isinstance(spec, EnvSpec):
            raise self.fail("spec", "the environment has no EnvSpec; create it with palaestra.make(id)")
        try:
            again = EnvSpec.from_json(spec.to_json())
        except (TypeError, ValueError) as exc:
            raise self.fail("spec", f"spec does not serialise to JSON ({exc}); keep kwargs JSON-able") from exc
        if again != spec:
            raise self.fail(
                "spec",
                f"spec changes in a JSON round trip ({spec} != {again}); use lists, not tuples, in kwargs",
            )
        lo, hi = spec.reward_range
        if not lo <= hi:
            raise self.fail("spec", f"reward_range {spec.reward_range} is empty; give (low, high)")
        if not lo <= spec.invalid_action.penalty <= hi:
            raise self.fail(
                "spec",
                f"invalid-action penalty {spec.invalid_action.penalty} is outside reward_range {spec.reward_range}",
            )
        if spec.max_turns < 1:
            raise self.fail("spec", f"max_turns is {spec.max_turns}; it must be at least 1")
        if not isinstance(self.env.instructions, str) or not self.env.instructions.strip():
            raise self.fail("spec", "instructions are empty; state the rules and the exact action format")
        return spec

    def _default_driver(self) -> Driver:
        policies = self.env.scripted_policies()
        if not policies:
            raise self.fail("spec", "the environment has no scripted policies; pass check_env(..., driver=...)")
        names = sorted(policies)
        garbage = self.invalid_actions

        def drive(env: Env, rng: random.Random) -> str:
            if garbage and rng.random() < _GARBAGE_PROBABILITY:
                return rng.choice(garbage)
            name = rng.choice(names)
            action = policies[name](env, rng)
            if not isinstance(action, str):
                raise self.fail("types", f"scripted policy {name!r} returned {type(action).__name__}, not str")
            return action

        return drive

    async def _check_step_before_reset(self) -> None:
        fresh = make_from_spec(self.spec)
        try:
            await fresh.step("anything")
        except EnvError:
            return
        except Exception as exc:
            raise self.fail("step before reset", f"raised {type(exc).__name__} instead of palaestra EnvError") from exc
        finally:
            await fresh.close()
        raise self.fail("step before reset", "step() before reset() did not raise EnvError")

    # ------------------------------------------------------------------ per-step checks

    def _check_types(self, step: Any, seed: int, what: str) -> Step:
        if not isinstance(step, Step):
            raise self.fail("types", f"{what} returned {type(step).__name__}, not palaestra Step", seed)
        problems = []
        if not isinstance(step.observation, str):
            problems.append(f"observation is {type(step.observation).__name__}, not str")
        if not isinstance(step.reward, float) or math.isnan(step.reward):
            problems.append(f"reward is {step.reward!r} ({type(step.reward).__name__}), not a float")
        for flag in ("terminated", "truncated"):
            if not isinstance(getattr(step, flag), bool):
                problems.append(f"{flag} is {type(getattr(step, flag)).__name__}, not bool")
        if not isinstance(step.info, dict):
            problems.append(f"info is {type(step.info).__name__}, not dict")
        elif what.startswith("step") and not isinstance(step.info.get("invalid_action"), bool):
            problems.append('info lacks a bool "invalid_action"')
        if problems:
            raise self.fail("types", f"{what}: " + "; ".join(problems), seed)
        return step

    def _check_step(self, step: Step, turn: int, seed: int, action: str) -> None:
        lo, hi = self.spec.reward_range
        if not lo <= step.reward <= hi:
            raise self.fail(
                "reward range",
                f"step {turn} ({_short(action)}) gave reward {step.reward} outside {self.spec.reward_range}",
                seed,
            )
        limit = self.spec.max_turns
        if turn == limit and not step.done:
            raise self.fail("max_turns", f"step {turn} reached max_turns={limit} but the episode did not end", seed)
        if step.truncated and turn < limit:
            raise self.fail("max_turns", f"truncated at step {turn}, before max_turns={limit}; use terminated", seed)
        if step.done:
            success = step.info.get("success")
            if not isinstance(success, bool):
                raise self.fail("success flag", f'final step {turn} has no bool info["success"]', seed)
            if step.truncated and not step.terminated and success:
                raise self.fail("success flag", f"truncated step {turn} claims success", seed)

    def _check_reset(self, step: Any, seed: int) -> Step:
        step = self._check_types(step, seed, "reset()")
        if step.reward != 0.0 or step.done:
            raise self.fail("types", "reset() must return reward 0.0 and an unfinished episode", seed)
        return step

    async def _step(self, env: Env, action: str, seed: int, turn: int) -> Step:
        try:
            step = await env.step(action)
        except Exception as exc:
            raise self.fail(
                "no exceptions", f"step {turn} ({_short(action)}) raised {type(exc).__name__}: {exc}", seed
            ) from exc
        return self._check_types(step, seed, f"step {turn}")

    # ------------------------------------------------------------------ episodes

    async def _play(self, seed: int) -> tuple[Step, list[str], list[Step]]:
        """Drive one episode, checking every step; returns the reset step, actions and steps."""
        rng = random.Random(seed)
        first = self._check_reset(await self.env.reset(seed=seed), seed)
        actions: list[str] = []
        steps: list[Step] = []
        while not (steps and steps[-1].done):
            if len(steps) >= self.spec.max_turns:
                raise self.fail("max_turns", f"episode still running after max_turns={self.spec.max_turns} steps", seed)
            action = self.driver(self.env, rng)
            actions.append(action)
            step = await self._step(self.env, action, seed, len(steps) + 1)
            self._check_step(step, len(steps) + 1, seed, action)
            steps.append(step)
        return first, actions, steps

    async def _replay(self, env: Env, actions: Sequence[str], seed: int, start: int = 0) -> list[Step]:
        return [await self._step(env, a, seed, start + i + 1) for i, a in enumerate(actions)]

    def _compare(self, check: str, expected: Sequence[Step], got: Sequence[Step], seed: int, offset: int = 0) -> None:
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            if not _same_step(a, b):
                raise self.fail(check, f"step {offset + i + 1} differs: {a!r} != {b!r}", seed)

    async def _check_step_after_end(self, seed: int) -> None:
        try:
            await self.env.step("anything")
        except EnvError:
            return
        except Exception as exc:
            raise self.fail(
                "step after end", f"raised {type(exc).__name__} instead of palaestra EnvError", seed
            ) from exc
        raise self.fail("step after end", "step() after the episode ended did not raise EnvError", seed)

    async def _check_determinism(self, seed: int, first: Step, actions: list[str], steps: list[Step]) -> None:
        again = self._check_reset(await self.env.reset(seed=seed), seed)
        if not _same_step(first, again):
            raise self.fail("determinism", f"reset(seed={seed}) differs: {first!r} != {again!r}", seed)
        self._compare("determinism", steps, await self._replay(self.env, actions, seed), seed)

    async def _check_copy(self, seed: int, actions: list[str], steps: list[Step]) -> None:
        k = len(actions) // 2
        await self.env.reset(seed=seed)
        await self._replay(self.env, actions[:k], seed)
        clone = self.env.copy()
        if clone is self.env:
            raise self.fail("copy independence", "copy() returned the environment itself", seed)
        self._compare("copy independence", steps[k:], await self._replay(clone, actions[k:], seed, k), seed, k)
        # The clone has now run to the end; the original must be exactly where it was.
        self._compare("copy independence", steps[k:], await self._replay(self.env, actions[k:], seed, k), seed, k)

    async def _check_invalid(self, seed: int) -> None:
        rule = self.spec.invalid_action
        for garbage in self.invalid_actions:
            await self.env.reset(seed=seed)
            try:
                step = await self.env.step(garbage)
            except Exception as exc:
                raise self.fail(
                    "invalid action", f"step({_short(garbage)}) raised {type(exc).__name__}: {exc}", seed
                ) from exc
            step = self._check_types(step, seed, f"step({_short(garbage)})")
            if step.info["invalid_action"] is not True:
                raise self.fail("invalid action", f'step({_short(garbage)}) not flagged info["invalid_action"]', seed)
            if step.reward != rule.penalty:
                raise self.fail(
                    "invalid action",
                    f"step({_short(garbage)}) gave reward {step.reward}, the rule says {rule.penalty}",
                    seed,
                )
            if step.terminated != (rule.mode == "terminate"):
                raise self.fail(
                    "invalid action",
                    f"step({_short(garbage)}) has terminated={step.terminated} under mode {rule.mode!r}",
                    seed,
                )
            if not step.observation.strip():
                raise self.fail(
                    "invalid action",
                    f"step({_short(garbage)}) gave an empty observation; say what was wrong",
                    seed,
                )

    async def run(self, seeds: list[int]) -> None:
        await self._check_step_before_reset()
        for seed in seeds:
            first, actions, steps = await self._play(seed)
            await self._check_step_after_end(seed)
            await self._check_determinism(seed, first, actions, steps)
            await self._check_copy(seed, actions, steps)
            await self._check_invalid(seed)

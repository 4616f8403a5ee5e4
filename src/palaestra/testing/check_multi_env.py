"""``check_multi_env``: the conformance checks every multi-agent environment must pass.

Each failed check raises :class:`EnvCheckError` naming the check, the seed and what to fix. The checks:

- ``spec``: a multi-agent ``EnvSpec`` that survives a JSON round trip; a known mode; ``possible_agents`` a
  non-empty list of distinct names; non-empty ``instructions(agent)`` for every player.
- ``step before reset``: a fresh environment raises ``EnvError`` when stepped.
- ``types``: ``reset`` returns a ``Step`` for every possible player and ``step`` one for every player live
  before it, with the single-agent field types and a bool ``info["invalid_action"]`` on each step.
- ``players``: ``agents`` is a subset of ``possible_agents``; ``acting()`` a non-empty subset of the live
  players (exactly one in turn mode); a player whose step is done leaves ``agents``; actions from a
  player who is not acting raise ``EnvError``.
- ``reward range``, ``max_turns``: rewards inside ``spec.reward_range``; no episode longer than
  ``spec.max_turns`` environment steps.
- ``no exceptions``: ``step`` never raises during an episode, whatever the actions.
- ``step after end``: stepping a finished episode raises ``EnvError``.
- ``determinism``: the same seed and the same actions give identical steps and metrics.
- ``copy independence``: a copy taken mid-episode continues exactly like the original, and stepping it does
  not change the original.
- ``invalid action``: garbage from every acting player never raises, each flagged step has an observation
  saying what was wrong, every player has some garbage flagged, and under a ``terminate`` rule a flagged
  player is done.
- ``metrics``: ``metrics()`` is a JSON-serialisable dict at the end of every episode.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from palaestra.core.errors import EnvError
from palaestra.core.types import EnvSpec, Step
from palaestra.envs.multi import MultiAgentEnv
from palaestra.envs.registry import build_from_spec, make_multi
from palaestra.testing.check_env import DEFAULT_INVALID_ACTIONS, EnvCheckError, _same_step, _short

MultiDriver = Callable[[MultiAgentEnv, str, random.Random], str]
Round = dict[str, str]

_FIXES = {
    "spec": "",
    "types": "return a dict of Step(observation: str, reward: float, terminated: bool, truncated: bool, info: "
    'dict with a bool "invalid_action") keyed by player',
    "players": "keep agents within possible_agents, remove a player once its step is done, and name the acting "
    "players in acting() (one in turn mode)",
    "reward range": "keep rewards inside spec.reward_range, or declare a wider range in register()",
    "max_turns": "count every step() call and end the episode (truncated=True) at spec.max_turns",
    "no exceptions": "step() must turn any action text into a Step; raise only EnvError for misuse",
    "step before reset": "raise palaestra.core.errors.EnvError from step() until reset() is called",
    "step after end": "raise palaestra.core.errors.EnvError from step() once every player is done",
    "determinism": "derive every random choice from the seed passed to reset() (e.g. random.Random(seed))",
    "copy independence": "make copy() deep (the default, copy.deepcopy, is) so no state is shared",
    "invalid action": "apply spec.invalid_action to any text that is not a valid action, and never raise",
    "metrics": "return plain JSON values (str, int, float, bool, None, list, dict) from metrics()",
}

_GARBAGE_PROBABILITY = 0.1


def check_multi_env(
    env_or_id: MultiAgentEnv | str,
    seeds: Sequence[int] = (0, 1),
    *,
    driver: MultiDriver | None = None,
    invalid_actions: Sequence[str] = DEFAULT_INVALID_ACTIONS,
) -> None:
    """Run every conformance check on a multi-agent environment; raise :class:`EnvCheckError` on a failure.

    Args:
        env_or_id: an environment made with ``palaestra.make_multi``, or a registered id.
        seeds: one episode is played (and replayed) per seed.
        driver: chooses one player's action, ``(env, agent, rng) -> str``. By default a seeded mix of the
            environment's scripted policies with occasional garbage.
        invalid_actions: strings to send from every acting player; each player must have some of them flagged.
    """
    coro = acheck_multi_env(env_or_id, seeds, driver=driver, invalid_actions=invalid_actions)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:  # called from inside a running event loop
        return pool.submit(asyncio.run, coro).result()


async def acheck_multi_env(
    env_or_id: MultiAgentEnv | str,
    seeds: Sequence[int] = (0, 1),
    *,
    driver: MultiDriver | None = None,
    invalid_actions: Sequence[str] = DEFAULT_INVALID_ACTIONS,
) -> None:
    """The async form of :func:`check_multi_env`."""
    owned = isinstance(env_or_id, str)
    env = make_multi(env_or_id) if isinstance(env_or_id, str) else env_or_id
    try:
        await _MultiChecker(env, driver, tuple(invalid_actions)).run(list(seeds))
    finally:
        if owned:
            await env.close()


class _MultiChecker:
    def __init__(self, env: MultiAgentEnv, driver: MultiDriver | None, invalid_actions: tuple[str, ...]) -> None:
        self.env = env
        self.invalid_actions = invalid_actions
        self.spec = self._check_spec()
        self.driver = driver or self._default_driver()

    def fail(self, check: str, detail: str, seed: int | None = None) -> EnvCheckError:
        where = f" (seed {seed})" if seed is not None else ""
        fix = f" Fix: {_FIXES[check]}." if _FIXES.get(check) else ""
        spec = getattr(self.env, "spec", None)
        name = spec.id if isinstance(spec, EnvSpec) else type(self.env).__name__
        return EnvCheckError(f"check_multi_env({name}) failed check '{check}'{where}: {detail}.{fix}")

    def _check_spec(self) -> EnvSpec:
        spec = getattr(self.env, "spec", None)
        if not isinstance(spec, EnvSpec):
            raise self.fail("spec", "the environment has no EnvSpec; create it with palaestra.make_multi(id)")
        if not spec.multi_agent:
            raise self.fail("spec", "spec.multi_agent is False; register it with multi_agent=True")
        if EnvSpec.from_json(spec.to_json()) != spec:
            raise self.fail("spec", "spec changes in a JSON round trip; use lists, not tuples, in kwargs")
        if self.env.mode not in ("parallel", "turn"):
            raise self.fail("spec", f"mode is {self.env.mode!r}; use 'parallel' or 'turn'")
        agents = self.env.possible_agents
        if not agents or not all(isinstance(a, str) and a for a in agents) or len(set(agents)) != len(agents):
            raise self.fail("spec", f"possible_agents {agents!r} must be distinct non-empty names")
        for agent in agents:
            text = self.env.instructions(agent)
            if not isinstance(text, str) or not text.strip():
                raise self.fail("spec", f"instructions({agent!r}) are empty; state the rules and the action format")
        return spec

    def _default_driver(self) -> MultiDriver:
        policies = self.env.scripted_policies()
        if not policies:
            raise self.fail("spec", "no scripted policies; pass check_multi_env(..., driver=...)")
        names = sorted(policies)
        garbage = self.invalid_actions

        def drive(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
            if garbage and rng.random() < _GARBAGE_PROBABILITY:
                return rng.choice(garbage)
            action = policies[rng.choice(names)](env, agent, rng)
            if not isinstance(action, str):
                raise self.fail("types", f"a scripted policy returned {type(action).__name__}, not str")
            return action

        return drive

    # ------------------------------------------------------------------ per-step checks

    def _check_steps(self, steps: Any, expected: Sequence[str], seed: int, what: str) -> dict[str, Step]:
        if not isinstance(steps, dict) or set(steps) != set(expected):
            got = sorted(steps) if isinstance(steps, dict) else type(steps).__name__
            raise self.fail("types", f"{what} returned steps for {got}, expected {sorted(expected)}", seed)
        lo, hi = self.spec.reward_range
        for agent, step in steps.items():
            problems = []
            if not isinstance(step, Step):
                raise self.fail("types", f"{what}[{agent}] is {type(step).__name__}, not Step", seed)
            if not isinstance(step.observation, str):
                problems.append("observation is not str")
            if not isinstance(step.reward, float) or math.isnan(step.reward):
                problems.append(f"reward {step.reward!r} is not a float")
            elif not lo <= step.reward <= hi:
                raise self.fail("reward range", f"{what}[{agent}] reward {step.reward} outside ({lo}, {hi})", seed)
            if not isinstance(step.terminated, bool) or not isinstance(step.truncated, bool):
                problems.append("terminated/truncated are not bool")
            if not isinstance(step.info, dict):
                problems.append("info is not a dict")
            elif what != "reset()" and not isinstance(step.info.get("invalid_action"), bool):
                problems.append('info lacks a bool "invalid_action"')
            if problems:
                raise self.fail("types", f"{what}[{agent}]: " + "; ".join(problems), seed)
        return steps

    def _check_live(self, seed: int) -> list[str]:
        env = self.env
        if not set(env.agents) <= set(env.possible_agents):
            raise self.fail("players", f"agents {env.agents} are not all in possible_agents", seed)
        acting = env.acting()
        if not acting or not set(acting) <= set(env.agents):
            raise self.fail("players", f"acting() = {acting} is not a non-empty subset of agents {env.agents}", seed)
        if env.mode == "turn" and len(acting) != 1:
            raise self.fail("players", f"turn mode but acting() names {len(acting)} players", seed)
        return acting

    async def _step(self, actions: Round, seed: int, n: int) -> dict[str, Step]:
        before = list(self.env.agents)
        try:
            steps = await self.env.step(actions)
        except Exception as exc:
            shown = {a: _short(t) for a, t in actions.items()}
            raise self.fail("no exceptions", f"step {n} {shown} raised {type(exc).__name__}: {exc}", seed) from exc
        steps = self._check_steps(steps, before, seed, f"step {n}")
        for agent, step in steps.items():
            if step.done and agent in self.env.agents:
                raise self.fail("players", f"step {n}: {agent} is done but still in agents", seed)
        return steps

    # ------------------------------------------------------------------ episodes

    async def _play(self, seed: int) -> tuple[dict[str, Step], list[Round], list[dict[str, Step]], Any]:
        rng = random.Random(seed)
        first = self._check_steps(await self.env.reset(seed=seed), self.env.possible_agents, seed, "reset()")
        if any(s.reward != 0.0 or s.done for s in first.values()):
            raise self.fail("types", "reset() must give reward 0.0 and unfinished steps", seed)
        rounds: list[Round] = []
        results: list[dict[str, Step]] = []
        while self.env.agents:
            if len(rounds) >= self.spec.max_turns:
                raise self.fail("max_turns", f"still running after max_turns={self.spec.max_turns} steps", seed)
            actions = {agent: self.driver(self.env, agent, rng) for agent in self._check_live(seed)}
            rounds.append(actions)
            results.append(await self._step(actions, seed, len(rounds)))
        return first, rounds, results, self._check_metrics(seed)

    def _check_metrics(self, seed: int) -> Any:
        metrics = self.env.metrics()
        try:
            return json.loads(json.dumps(metrics))
        except (TypeError, ValueError) as exc:
            raise self.fail("metrics", f"metrics() is not JSON: {exc}", seed) from exc

    async def _replay(self, env: MultiAgentEnv, rounds: Sequence[Round], seed: int) -> list[dict[str, Step]]:
        out = []
        for i, actions in enumerate(rounds):
            try:
                out.append(await env.step(actions))
            except Exception as exc:
                raise self.fail(
                    "determinism", f"replayed step {i + 1} raised {type(exc).__name__}: {exc}", seed
                ) from exc
        return out

    def _compare(
        self, check: str, expected: Sequence[Mapping[str, Step]], got: Sequence[Mapping[str, Step]], seed: int
    ) -> None:
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            if set(a) != set(b) or not all(_same_step(a[k], b[k]) for k in a):
                raise self.fail(check, f"step {i + 1} differs: {a!r} != {b!r}", seed)

    async def _check_misuse(self, seed: int) -> None:
        fresh = build_from_spec(self.spec)
        try:
            if not isinstance(fresh, MultiAgentEnv):
                raise self.fail("spec", f"{self.spec.entry_point} builds a single-agent Env")
            try:
                await fresh.step(dict.fromkeys(fresh.possible_agents, "anything"))
            except EnvError:
                pass
            except Exception as exc:
                raise self.fail("step before reset", f"raised {type(exc).__name__}, not EnvError") from exc
            else:
                raise self.fail("step before reset", "step() before reset() did not raise EnvError")
        finally:
            await fresh.close()
        await self.env.reset(seed=seed)
        acting = self.env.acting()
        others = [a for a in self.env.possible_agents if a not in acting]
        wrong: Round = {a: "anything" for a in acting[:-1] + others[:1]}
        if set(wrong) != set(acting):
            try:
                await self.env.step(wrong)
            except EnvError:
                pass
            else:
                raise self.fail(
                    "players", f"step() with actions from {sorted(wrong)} while {acting} act did not raise", seed
                )

    async def _check_step_after_end(self, seed: int) -> None:
        try:
            await self.env.step({a: "anything" for a in self.env.possible_agents})
        except EnvError:
            return
        except Exception as exc:
            raise self.fail("step after end", f"raised {type(exc).__name__} instead of EnvError", seed) from exc
        raise self.fail("step after end", "step() after the episode ended did not raise EnvError", seed)

    async def _check_invalid(self, seed: int) -> None:
        flagged: set[str] = set()
        for garbage in self.invalid_actions:
            await self.env.reset(seed=seed)
            # Up to one step per player: in turn mode (or a converted parallel game) a move may only be judged
            # once every player has chosen.
            for n in range(1, len(self.env.possible_agents) + 1):
                if not self.env.agents:
                    break
                steps = await self._step(dict.fromkeys(self.env.acting(), garbage), seed, n)
                for agent, step in steps.items():
                    if not step.info["invalid_action"]:
                        continue
                    flagged.add(agent)
                    if not step.observation.strip():
                        raise self.fail("invalid action", f"{_short(garbage)} flagged with an empty observation", seed)
                    if self.spec.invalid_action.mode == "terminate" and not step.done:
                        raise self.fail("invalid action", f"{_short(garbage)} flagged but {agent} is not done", seed)
        await self.env.reset(seed=seed)
        unflagged = set(self.env.acting()) - flagged
        if self.invalid_actions and unflagged:
            raise self.fail("invalid action", f"no garbage action was flagged invalid for {sorted(unflagged)}", seed)

    async def run(self, seeds: list[int]) -> None:
        for seed in seeds:
            await self._check_misuse(seed)
            first, rounds, results, metrics = await self._play(seed)
            await self._check_step_after_end(seed)
            again = await self.env.reset(seed=seed)
            if set(again) != set(first) or not all(_same_step(first[a], again[a]) for a in first):
                raise self.fail("determinism", f"reset(seed={seed}) gave different first steps", seed)
            self._compare("determinism", results, await self._replay(self.env, rounds, seed), seed)
            if self._check_metrics(seed) != metrics:
                raise self.fail("determinism", "the same episode gave different metrics", seed)
            k = len(rounds) // 2
            await self.env.reset(seed=seed)
            await self._replay(self.env, rounds[:k], seed)
            clone = self.env.copy()
            if clone is self.env:
                raise self.fail("copy independence", "copy() returned the environment itself", seed)
            self._compare("copy independence", results[k:], await self._replay(clone, rounds[k:], seed), seed)
            self._compare("copy independence", results[k:], await self._replay(self.env, rounds[k:], seed), seed)
            await self._check_invalid(seed)

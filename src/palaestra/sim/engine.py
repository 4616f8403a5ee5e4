"""``Simulation``: runs a population scenario step by step, deciding every agent's action by scripted rules,
one model call per agent, or one model call per archetype, with the fidelity dial in between.

Archetype mode follows AgentTorch (8.4 million agents for New York City, model calls made per archetype, not
per agent): agents are grouped by the exact tuple of variables their prompt depends on; each group gets
``samples`` completions of one prompt (one request per sample, distinct seeds), the replies are parsed into
a distribution over the action space, and every member's action is drawn from it with the simulation's
seeded RNG. The dial ``fidelity`` gives ``round(F * M)`` of the M model-policy agents their own call (the
most influential, or a random draw) and the rest archetypes. OASIS, by contrast, makes one call per active
agent (about 18 hours per step for a million agents on 27 A100 GPUs), which is ``fidelity=1`` here.

All calls of a step are issued at once, so a local model batches them. A call that fails is retried
(``retries`` times); if it still fails, the step is recorded with the failure and ``SimulationError``
names the archetype (or agent): nothing is filled in silently.

With ``measure_fidelity=K``, every step also asks the model for K sampled agents' own actions and compares
them with their archetypes' distributions: total variation distance between the two action distributions
over the sample, and the agreement rate (the mean probability the archetype gives each agent's own action).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from palaestra.core.errors import PalaestraError, SpecError
from palaestra.core.types import ChatRequest, Completion, EnvSpec, SamplingParams
from palaestra.models.base import Model
from palaestra.sim.commons import CommonsScenario
from palaestra.sim.network import NetworkScenario
from palaestra.sim.population import check_memory
from palaestra.sim.scenario import Scenario, sample_rows

SCENARIOS: dict[str, type[Scenario]] = {"commons": CommonsScenario, "network": NetworkScenario}
FIDELITY_BY = ("influence", "random")


class SimulationError(PalaestraError):
    """A simulation step could not be completed (a model call failed after its retries).

    ``record`` is the failed step's record (its metrics list the failures), for the caller to store.
    """

    def __init__(self, message: str, record: StepRecord | None = None) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class SimConfig:
    """Everything that defines a simulation run; stored as the run's config.

    ``policy``: ``scripted`` (rules, no model), ``model`` (every agent decides through the model) or
    ``mix:<share>`` (that share of agents, drawn once from the seed, are model agents; the rest scripted).
    ``fidelity``: share of the model agents with their own call; the rest share archetype calls.
    ``samples``: completions per archetype that make its action distribution.
    """

    scenario: str
    agents: int
    steps: int = 1
    seed: int = 0
    policy: str = "scripted"
    fidelity: float = 0.0
    fidelity_by: str = "influence"
    samples: int = 4
    temperature: float = 1.0
    max_tokens: int = 6
    retries: int = 2
    measure_fidelity: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise SpecError(f"unknown scenario {self.scenario!r}; choose one of {', '.join(SCENARIOS)}")
        if self.agents < 1 or self.steps < 1:
            raise SpecError(f"a simulation needs at least 1 agent and 1 step, not {self.agents} and {self.steps}")
        if not 0.0 <= self.fidelity <= 1.0:
            raise SpecError(f"fidelity is a share between 0 and 1, not {self.fidelity}")
        if self.fidelity_by not in FIDELITY_BY:
            raise SpecError(f"fidelity-by must be one of {', '.join(FIDELITY_BY)}, not {self.fidelity_by!r}")
        if self.samples < 1 or self.retries < 0 or self.measure_fidelity < 0:
            raise SpecError("samples must be at least 1; retries and measure-fidelity at least 0")
        _ = self.model_share  # validates the policy

    @property
    def model_share(self) -> float:
        """The share of agents that decide through the model."""
        if self.policy == "scripted":
            return 0.0
        if self.policy == "model":
            return 1.0
        kind, _, share = self.policy.partition(":")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if kind != "mix" or not 0.0 <= value <= 1.0:
            raise SpecError(
                f"policy {self.policy!r}: use 'scripted', 'model' or 'mix:<share>' with a share in [0, 1], "
                "e.g. 'mix:0.2'"
            )
        return value


@dataclass
class StepRecord:
    """What one simulated step did: its population metrics, the model calls made and the time it took."""

    step: int
    metrics: dict[str, Any]
    model_calls: int
    wall_s: float
    failures: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Unit:
    """One thing that needs model calls: an archetype (``code``) or one agent (``agent``)."""

    label: str
    requests: tuple[ChatRequest, ...]
    code: int | None = None
    agent: int | None = None


class _Failed(Exception):
    def __init__(self, unit: _Unit, error: BaseException, attempts: int) -> None:
        super().__init__(f"{unit.label}: {type(error).__name__}: {error} (after {attempts} attempts)")
        self.unit = unit
        self.attempts = attempts


def request_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed for one model request, derived from the simulation seed and what the request is for."""
    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class Simulation:
    """A population scenario, its agents' policies and the model, run one step at a time.

    Args:
        config: the run's settings (see ``SimConfig``).
        model: any ``palaestra.models`` Model; required unless the policy is ``scripted``.
        available_memory: bytes to check the estimate against (default: what the machine has available).

    Raises:
        MemoryRefusedError: the population's arrays would not fit (checked before anything is allocated).
        SpecError: a model policy without a model, or a bad setting.
    """

    def __init__(self, config: SimConfig, model: Model | None = None, *, available_memory: int | None = None):
        self.config = config
        cls = SCENARIOS[config.scenario]
        self.memory_estimate = check_memory(
            config.scenario, config.agents, cls.bytes_per_agent(config.steps, config.options), available_memory
        )
        if model is None and (config.model_share > 0 or config.measure_fidelity):
            raise SpecError(
                f"policy {config.policy!r}{' with --measure-fidelity' if config.measure_fidelity else ''} needs a "
                "model; pass one (e.g. --model smollm2-135m) or use --policy scripted"
            )
        self.model = model
        streams = np.random.SeedSequence(config.seed).spawn(4)
        self._rng_profiles, self._rng_world, self._rng_policy, self._rng_sample = (
            np.random.default_rng(s) for s in streams
        )
        self.scenario: Scenario = cls(config.agents, self._rng_profiles, **config.options)
        n = config.agents
        n_model = round(config.model_share * n)
        model_agents = np.sort(self._rng_policy.choice(n, size=n_model, replace=False)) if n_model < n else None
        self.uses_model = np.zeros(n, dtype=bool)
        if model_agents is None:
            self.uses_model[:] = True
        else:
            self.uses_model[model_agents] = True
        self.step_index = 0
        self.calls = 0

    # ----------------------------------------------------------------------- one step

    async def step(self) -> StepRecord:
        """Decide every agent's action, apply them, and return the step's record.

        Raises:
            SimulationError: a model call failed after its retries; the failed step's record (with the
                failures) is on ``error.record`` so the caller can store it.
        """
        started = time.perf_counter()
        calls_before = self.calls
        cfg, scenario = self.config, self.scenario
        scenario.begin_step(self._rng_world)
        n = scenario.n
        actions = np.zeros(n, dtype=np.int8)
        scripted = np.flatnonzero(~self.uses_model)
        if scripted.size:
            actions[scripted] = scenario.scripted_actions(scripted, self._rng_policy)
        model_agents = np.flatnonzero(self.uses_model)
        own = self._own_call_agents(model_agents)
        shared = np.setdiff1d(model_agents, own, assume_unique=True)
        codes = scenario.archetype_codes() if model_agents.size or cfg.measure_fidelity else None
        measured = (
            np.sort(self._rng_policy.choice(n, size=min(cfg.measure_fidelity, n), replace=False))
            if cfg.measure_fidelity
            else np.zeros(0, dtype=np.int64)
        )
        group_codes = np.unique(codes[shared]) if codes is not None and shared.size else np.zeros(0, np.int64)
        extra = (
            np.setdiff1d(np.unique(codes[measured]), group_codes)
            if codes is not None and measured.size
            else np.zeros(0, np.int64)
        )
        units = [self._archetype_unit(int(c)) for c in np.concatenate([group_codes, extra])]
        units += [self._agent_unit(int(a), "own") for a in own]
        units += [self._agent_unit(int(a), "measure") for a in measured]
        outcomes = await asyncio.gather(*(self._run_unit(u) for u in units), return_exceptions=True)
        failures = [r for r in outcomes if isinstance(r, _Failed)]
        for r in outcomes:
            if isinstance(r, BaseException) and not isinstance(r, _Failed):
                raise r
        if failures:
            record = StepRecord(
                step=self.step_index,
                metrics={"status": "error", "failures": [str(f) for f in failures]},
                model_calls=self.calls - calls_before,
                wall_s=time.perf_counter() - started,
                failures=[{"unit": f.unit.label, "error": str(f), "attempts": f.attempts} for f in failures],
            )
            raise SimulationError(
                f"step {self.step_index}: the model failed for {failures[0].unit.label} after {cfg.retries} "
                f"retries ({len(failures)} failed in all): {failures[0]}. The step is recorded as failed and "
                "the simulation stopped; fix the model (or its server) and run again.",
                record,
            )
        replies = [r for r in outcomes if not isinstance(r, BaseException)]
        n_groups = group_codes.size + extra.size
        invalid = 0
        distributions: dict[int, np.ndarray] = {}
        for unit, completions in zip(units[:n_groups], replies[:n_groups], strict=True):
            counts = np.zeros(len(scenario.actions))
            for completion in completions:
                action = scenario.parse(completion.text)
                invalid += action is None
                counts[scenario.invalid_action if action is None else action] += 1
            assert unit.code is not None
            distributions[unit.code] = counts / counts.sum()
        if shared.size:
            assert codes is not None
            table = np.stack([distributions[int(c)] for c in group_codes])
            rows = np.searchsorted(group_codes, codes[shared])
            actions[shared] = sample_rows(table, rows, self._rng_sample)
        for agent, completions in zip(own, replies[n_groups : n_groups + own.size], strict=True):
            action = scenario.parse(completions[0].text)
            invalid += action is None
            actions[agent] = scenario.invalid_action if action is None else action
        metrics: dict[str, Any] = dict(scenario.apply(actions, self._rng_world))
        metrics.update(
            {
                "archetypes": int(group_codes.size),
                "own_calls": int(own.size),
                "invalid_replies": int(invalid),
                "action_shares": {a: float(np.mean(actions == i)) for i, a in enumerate(scenario.actions)},
            }
        )
        if measured.size:
            assert codes is not None
            parsed = [scenario.parse(c[0].text) for c in replies[n_groups + own.size :]]
            mine = np.array([scenario.invalid_action if a is None else a for a in parsed], dtype=np.int64)
            archetype = np.stack([distributions[int(c)] for c in codes[measured]])
            metrics.update(fidelity_measures(mine, archetype))
        record = StepRecord(
            step=self.step_index,
            metrics=metrics,
            model_calls=self.calls - calls_before,
            wall_s=time.perf_counter() - started,
        )
        self.step_index += 1
        return record

    def _own_call_agents(self, model_agents: np.ndarray) -> np.ndarray:
        count = round(self.config.fidelity * model_agents.size)
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if self.config.fidelity_by == "random":
            chosen = self._rng_policy.choice(model_agents, size=count, replace=False)
        else:
            influence = self.scenario.influence()[model_agents]
            chosen = model_agents[np.argsort(-influence, kind="stable")[:count]]  # ties: the lower index
        return np.sort(chosen)

    def _sampling(self, *parts: object) -> SamplingParams:
        return SamplingParams(
            temperature=self.config.temperature,
            max_tokens=self.config.max_tokens,
            stop=("\n",),
            seed=request_seed(self.config.seed, self.step_index, *parts),
        )

    def _archetype_unit(self, code: int) -> _Unit:
        prompt = self.scenario.archetype_prompt(self.scenario.decode(code))
        requests = tuple(
            ChatRequest(prompt, self._sampling("archetype", code), sample_index=j) for j in range(self.config.samples)
        )
        return _Unit(f"archetype ({self.scenario.describe(code)})", requests, code=code)

    def _agent_unit(self, agent: int, purpose: str) -> _Unit:
        request = ChatRequest(self.scenario.agent_prompt(agent), self._sampling(purpose, agent))
        return _Unit(f"agent {agent} ({purpose} call)", (request,), agent=agent)

    async def _run_unit(self, unit: _Unit) -> list[Completion]:
        # Every sample runs to its end (no orphaned task) before the first failure is raised.
        done = await asyncio.gather(*(self._call(unit, r) for r in unit.requests), return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return [c for c in done if not isinstance(c, BaseException)]

    async def _call(self, unit: _Unit, request: ChatRequest) -> Completion:
        assert self.model is not None
        for attempt in range(1, self.config.retries + 2):
            self.calls += 1
            try:
                return await self.model.generate(request)
            except Exception as e:  # any backend failure; cancellation (BaseException) passes through
                if attempt > self.config.retries:
                    raise _Failed(unit, e, attempt) from e
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------------- whole runs

    def env_spec(self) -> EnvSpec:
        """The spec recorded with the run (``sim-<scenario>-v0``; the run's env_id is ``sim:<scenario>``)."""
        cls = SCENARIOS[self.config.scenario]
        return EnvSpec(
            id=f"sim-{self.config.scenario}-v0",
            entry_point=f"{cls.__module__}:{cls.__name__}",
            description=cls.description,
            max_turns=self.config.steps,
            kwargs=dict(self.scenario.options),
        )

    async def run(
        self, store: Any = None, *, on_step: Callable[[StepRecord], None] | None = None
    ) -> tuple[str | None, list[StepRecord]]:
        """Run every step; with a ``Store``, record the run (env_id ``sim:<scenario>``) and each step.

        Returns:
            The run id (None without a store) and the step records.
        """
        run_id = None
        if store is not None:
            run_id = store.create_run(
                env_spec=self.env_spec(),
                agent_spec=f"sim:{self.config.policy}",
                model_spec=getattr(self.model, "spec", None),
                weights_hash=getattr(self.model, "weights_hash", None),
                config={**asdict(self.config), "memory_estimate_bytes": self.memory_estimate},
                env_id=f"sim:{self.config.scenario}",
            )
        records: list[StepRecord] = []
        status = "interrupted"
        try:
            for _ in range(self.config.steps):
                try:
                    record = await self.step()
                except SimulationError as e:
                    status = "incomplete"
                    failed = e.record
                    if store is not None and run_id is not None and failed is not None:
                        store.record_sim_step(
                            run_id, failed.step, failed.metrics, model_calls=failed.model_calls, wall_s=failed.wall_s
                        )
                    raise
                records.append(record)
                if store is not None and run_id is not None:
                    store.record_sim_step(
                        run_id, record.step, record.metrics, model_calls=record.model_calls, wall_s=record.wall_s
                    )
                if on_step is not None:
                    on_step(record)
            status = "complete"
        finally:
            if store is not None and run_id is not None:
                store.finish_run(run_id, status)
        return run_id, records


def fidelity_measures(own: np.ndarray, archetype: np.ndarray) -> dict[str, float]:
    """Compare agents' own actions with their archetypes' action distributions.

    Args:
        own: the action index each sampled agent's own call chose.
        archetype: one row per sampled agent, its archetype's distribution over the actions.

    Returns:
        ``fidelity_tvd``: total variation distance between the distribution of the own actions over the
        sample and the mean archetype distribution (0: the same, 1: disjoint); ``fidelity_agreement``: the
        mean probability the archetype gives each agent's own action; ``fidelity_sample``: the sample size.
    """
    k = archetype.shape[1]
    empirical = np.bincount(own, minlength=k) / own.size
    tvd = 0.5 * float(np.abs(empirical - archetype.mean(axis=0)).sum())
    agreement = float(archetype[np.arange(own.size), own].mean())
    return {"fidelity_tvd": tvd, "fidelity_agreement": agreement, "fidelity_sample": int(own.size)}

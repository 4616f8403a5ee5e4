"""The simulation engine with the deterministic scripted model: archetype grouping, the fidelity dial,
fidelity measurement, reproducibility, failing calls, memory refusal."""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np
import pytest

from palaestra.core.errors import ModelError, SpecError
from palaestra.core.types import ChatRequest
from palaestra.models import ScriptedModel
from palaestra.sim import MemoryRefusedError, SimConfig, Simulation, SimulationError, fidelity_measures
from palaestra.sim.population import AGE_BANDS, TEMPERAMENTS
from palaestra.store import Store


def user_text(request: ChatRequest) -> str:
    return request.messages[-1].content


def is_own_call(request: ChatRequest) -> bool:
    return "tons;" in user_text(request) or "villagers" in user_text(request)


def one_lake(agents: int = 10, **overrides: object) -> SimConfig:
    args: dict = {"scenario": "commons", "agents": agents, "policy": "model", "options": {"communities": 1}}
    args.update(overrides)
    return SimConfig(**args)


def run_step(sim: Simulation) -> dict:
    return asyncio.run(sim.step()).metrics


def test_agents_with_equal_prompt_variables_share_one_call() -> None:
    model = ScriptedModel(lambda r: "fair", spec="scripted:fair")
    sim = Simulation(one_lake(10, samples=1), model)
    # One full lake: the archetype is (temperament, age); count the distinct pairs among the 10 agents.
    pairs = set(zip(sim.scenario.profiles.temperament.tolist(), sim.scenario.profiles.age.tolist(), strict=True))
    record = asyncio.run(sim.step())
    assert record.model_calls == model.calls == len(pairs) < 10
    prompts = Counter(user_text(r) for r in model.requests)
    assert len(prompts) == len(pairs) and set(prompts.values()) == {1}
    expected = {f"You are a {AGE_BANDS[a]}, {TEMPERAMENTS[t]} fisher. The lake is full." for t, a in pairs}
    assert {p.split(" How much")[0] for p in prompts} == expected
    assert record.metrics["archetypes"] == len(pairs) and record.metrics["own_calls"] == 0


def test_each_archetype_gets_k_samples_with_distinct_seeds() -> None:
    model = ScriptedModel(lambda r: "fair", spec="scripted:fair")
    sim = Simulation(one_lake(10, samples=3), model)
    record = asyncio.run(sim.step())
    by_prompt: dict[str, list[ChatRequest]] = {}
    for r in model.requests:
        by_prompt.setdefault(user_text(r), []).append(r)
    assert record.model_calls == 3 * len(by_prompt)
    for requests in by_prompt.values():
        assert sorted(r.sample_index for r in requests) == [0, 1, 2]
        assert len({r.sampling.seed for r in requests}) == 1  # one seed; the backend varies it per sample


def test_members_sample_their_archetype_distribution() -> None:
    # Cautious archetypes answer "high", the others "none" (or junk, which is the invalid action: none).
    def reply(request: ChatRequest) -> str:
        return "high" if "cautious" in user_text(request) else "I like boats"

    sim = Simulation(one_lake(50, samples=2), ScriptedModel(reply, spec="scripted:by-temperament"))
    profiles = sim.scenario.profiles
    cautious = float(np.mean(profiles.temperament == 0))
    cautious_archetypes = len(set(profiles.age[profiles.temperament == 0].tolist()))
    metrics = run_step(sim)
    assert metrics["action_shares"]["high"] == pytest.approx(cautious)
    assert metrics["action_shares"]["none"] == pytest.approx(1 - cautious)
    assert metrics["invalid_replies"] == 2 * (metrics["archetypes"] - cautious_archetypes)


@pytest.mark.parametrize(("agents", "fidelity"), [(10, 0.25), (10, 0.3), (7, 1.0), (9, 0.5)])
def test_fidelity_dial_gives_exactly_round_f_n_own_calls(agents: int, fidelity: float) -> None:
    model = ScriptedModel(lambda r: "fair", spec="scripted:fair")
    sim = Simulation(one_lake(agents, samples=2, fidelity=fidelity), model)
    record = asyncio.run(sim.step())
    own = [r for r in model.requests if is_own_call(r)]
    assert len(own) == round(fidelity * agents) == record.metrics["own_calls"]
    assert record.model_calls == len(own) + 2 * record.metrics["archetypes"]
    if fidelity == 1.0:
        assert record.metrics["archetypes"] == 0


def test_fidelity_by_influence_picks_the_largest_stock_shares() -> None:
    model = ScriptedModel(lambda r: "fair", spec="scripted:fair")
    config = one_lake(60, fidelity=0.1, options={"communities": 6, "initial_stock": "random"})
    sim = Simulation(config, model)
    share = sim.scenario.fair_share()[sim.scenario.profiles.community]
    asyncio.run(sim.step())
    own = [user_text(r) for r in model.requests if is_own_call(r)]
    told = sorted(float(t.split("fair share is ")[1].split(" tons")[0]) for t in own)
    assert told == pytest.approx(sorted(np.round(np.sort(share)[-6:], 1)), abs=0.051)


def test_fidelity_measurement_by_hand() -> None:
    archetype = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    measures = fidelity_measures(np.array([0, 0, 2, 1]), archetype)
    # Own: [1/2, 1/4, 1/4]; archetypes' mean: [1/4, 1/4, 1/2]; TVD = (1/4 + 0 + 1/4) / 2.
    assert measures["fidelity_tvd"] == pytest.approx(0.25)
    assert measures["fidelity_agreement"] == pytest.approx((0.5 + 0.5 + 1.0 + 0.0) / 4)
    assert measures["fidelity_sample"] == 4


@pytest.mark.parametrize(("own_reply", "tvd", "agreement"), [("fair", 0.0, 1.0), ("high", 1.0, 0.0)])
def test_measured_fidelity_compares_own_calls_with_archetypes(own_reply: str, tvd: float, agreement: float) -> None:
    model = ScriptedModel(lambda r: own_reply if is_own_call(r) else "fair", spec="scripted:split")
    sim = Simulation(one_lake(20, policy="scripted", measure_fidelity=8), model)
    metrics = run_step(sim)
    assert metrics["fidelity_tvd"] == pytest.approx(tvd) and metrics["fidelity_agreement"] == pytest.approx(agreement)
    assert metrics["fidelity_sample"] == 8 == sum(is_own_call(r) for r in model.requests)


@pytest.mark.parametrize("scenario", ["commons", "network"])
def test_same_seed_same_run_other_seed_other_run(scenario: str) -> None:
    def run(seed: int) -> list:
        model = ScriptedModel(["fair", "post", "high", "repost", "follow", "idle", "low"], spec="scripted:mixed")
        config = SimConfig(scenario, 300, steps=3, seed=seed, policy="mix:0.5", fidelity=0.1, measure_fidelity=5)
        _, records = asyncio.run(Simulation(config, model).run())
        return [r.metrics for r in records]

    assert run(3) == run(3)
    assert run(3) != run(4)


def flaky(fail_times: int, fail_on: str = "bold") -> ScriptedModel:
    """Answers "fair"; the first ``fail_times`` requests whose prompt mentions ``fail_on`` raise ModelError."""
    failures = {"left": fail_times}

    def reply(request: ChatRequest) -> str:
        if fail_on in user_text(request) and failures["left"] > 0:
            failures["left"] -= 1
            raise ModelError("server hung up")
        return "fair"

    return ScriptedModel(reply, spec="scripted:flaky")


def test_a_failing_archetype_call_is_retried() -> None:
    model = flaky(fail_times=2)
    sim = Simulation(one_lake(10, samples=1, retries=2), model)
    record = asyncio.run(sim.step())
    assert record.model_calls == record.metrics["archetypes"] + 2  # two retries, then it answered
    assert record.metrics["action_shares"]["fair"] == 1.0


def test_an_archetype_failing_after_its_retries_stops_the_run_and_is_recorded(tmp_path) -> None:
    model = flaky(fail_times=100, fail_on="old, bold")
    config = one_lake(40, samples=1, retries=2, steps=3)
    sim = Simulation(config, model)
    with Store(f"sqlite:///{tmp_path / 'sim.db'}") as store:
        with pytest.raises(
            SimulationError, match=r"archetype \(temperament=bold, age=old, stock=full\) after 2 retries"
        ):
            asyncio.run(sim.run(store))
        [run] = store.list_runs()
        assert run.status == "incomplete" and run.env_id == "sim:commons"
        [step] = store.sim_steps(run.id)
    assert step.step == 0 and step.metrics["status"] == "error"
    assert (
        "temperament=bold, age=old" in step.metrics["failures"][0] and "server hung up" in step.metrics["failures"][0]
    )
    failing = [r for r in model.requests if "old, bold" in user_text(r)]
    assert len(failing) == 3  # the first try and 2 retries, nothing filled in


def test_memory_refusal_before_anything_is_allocated() -> None:
    with pytest.raises(MemoryRefusedError, match=r"network with 1,000,000,000,000 agents needs about .* GiB"):
        Simulation(SimConfig("network", 10**12))
    with pytest.raises(MemoryRefusedError, match=r"Ask for at most \d+ agents"):
        Simulation(SimConfig("commons", 1000), available_memory=10_000)
    assert Simulation(SimConfig("commons", 10), available_memory=10**9).memory_estimate > 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(SpecError, match="needs a model"):
        Simulation(SimConfig("commons", 10, policy="model"))
    with pytest.raises(SpecError, match="mix:<share>"):
        SimConfig("commons", 10, policy="mix:2")
    with pytest.raises(SpecError, match="unknown scenario"):
        SimConfig("market", 10)
    with pytest.raises(SpecError, match="unknown commons option"):
        Simulation(SimConfig("commons", 10, options={"capacty": 5}))

"""A small simulation step with the real embedded SmolLM2-135M in archetype mode (slow)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from palaestra.sim import SimConfig, Simulation


@pytest.mark.slow
def test_archetype_step_with_the_embedded_model(local_model: Any) -> None:
    # One lake: the archetypes are the (temperament, age) pairs, at most 9, for 200 agents.
    config = SimConfig(
        "commons", 200, steps=1, policy="model", samples=2, measure_fidelity=4, options={"communities": 1}
    )
    simulation = Simulation(config, local_model)
    record = asyncio.run(simulation.step())
    metrics = record.metrics
    assert 1 <= metrics["archetypes"] <= 9 and metrics["own_calls"] == 0
    # Every archetype's 2 samples plus the 4 measured agents' own calls, each answered (no failures).
    assert record.model_calls == 2 * metrics["archetypes"] + 4
    assert 0 <= metrics["invalid_replies"] <= record.model_calls - 4
    assert sum(metrics["action_shares"].values()) == pytest.approx(1.0)
    assert 0.0 <= metrics["fidelity_tvd"] <= 1.0 and 0.0 <= metrics["fidelity_agreement"] <= 1.0
    assert metrics["communities_alive"] in (0, 1) and metrics["total_stock"] <= 100.0

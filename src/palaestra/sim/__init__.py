"""Population simulations: thousands to millions of agents in vectorised scenarios (``commons``, ``network``),
deciding by scripted rules, by one model call each, or by one call per archetype, with a fidelity dial
between the two. See docs/simulate.md; the command is ``palaestra simulate``.
"""

from palaestra.sim.commons import CommonsScenario
from palaestra.sim.engine import SCENARIOS, SimConfig, Simulation, SimulationError, StepRecord, fidelity_measures
from palaestra.sim.network import NetworkScenario
from palaestra.sim.population import MemoryRefusedError, Profiles, available_memory, check_memory, gini
from palaestra.sim.scenario import Scenario, Variable

__all__ = [
    "SCENARIOS",
    "CommonsScenario",
    "MemoryRefusedError",
    "NetworkScenario",
    "Profiles",
    "Scenario",
    "SimConfig",
    "Simulation",
    "SimulationError",
    "StepRecord",
    "Variable",
    "available_memory",
    "check_memory",
    "fidelity_measures",
    "gini",
]

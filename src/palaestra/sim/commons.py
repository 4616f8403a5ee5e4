"""The ``commons`` scenario: many villages, each a GovSim-style shared fishery, with migration between them.

GovSim (Piatti et al., "Cooperate or Collapse") gives the rules of one community: the resource starts at 100,
harvest requests exceeding the stock are filled proportionally (GovSim's proportional variant), the resource
collapses for good when below 5 after the harvest, otherwise doubles, capped at 100; the sustainable share
per agent is (stock / 2) / number of agents. Here each of many communities follows them at once, with
arrays over agents and over communities, and adds migration: after regrowth, each agent of a collapsed or
depleted community (stock below ``depleted_below``) moves with probability ``migrate_prob`` to a community
drawn among the healthy ones with probability proportional to their stock.

Actions are multiples of the agent's sustainable share: ``none`` 0, ``low`` 0.5, ``fair`` 1, ``high`` 3 (so a
lake where most ask high is over-asked, and every request there is cut by the same ratio).
Metrics per step: total stock, communities alive, mean gain (harvest per agent this step), Gini of
accumulated wealth, migrations, and over-usage (GovSim: share of actions above the sustainable share).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from palaestra.core.errors import SpecError
from palaestra.core.types import Message
from palaestra.sim.population import AGE_BANDS, TEMPERAMENTS, Profiles, gini
from palaestra.sim.scenario import Scenario, Variable, sample_rows

FRACTIONS = np.array([0.0, 0.5, 1.0, 3.0])
STOCK_LEVELS = ("collapsed", "scarce", "half full", "plentiful", "full")

DEFAULTS: dict[str, Any] = {
    "communities": None,  # None: max(1, agents // community_size)
    "community_size": 20,
    "capacity": 100.0,
    "collapse_below": 5.0,
    "depleted_below": 25.0,
    "migrate_prob": 0.5,
    "initial_stock": None,  # None: every community starts full; a number: all start there; "random": 30-100%
}

# Scripted rule per temperament and stock level: probabilities of none / low / fair / high.
_CAUTIOUS_SCARCE = [0.0, 1.0, 0.0, 0.0]
_SCRIPTED = np.array(
    [
        # cautious: low when the lake is half full or less, else fair
        [[1.0, 0.0, 0.0, 0.0], _CAUTIOUS_SCARCE, _CAUTIOUS_SCARCE, [0, 0, 1.0, 0], [0, 0, 1.0, 0]],
        # even-tempered: always the fair share
        [[1.0, 0.0, 0.0, 0.0]] + [[0, 0, 1.0, 0]] * 4,
        # bold: twice the fair share half of the time
        [[1.0, 0.0, 0.0, 0.0]] + [[0, 0, 0.5, 0.5]] * 4,
    ]
)


class CommonsScenario(Scenario):
    """Communities of fishers sharing lakes (GovSim rules per lake), with migration from depleted lakes."""

    name: ClassVar[str] = "commons"
    description: ClassVar[str] = "many GovSim-style shared fisheries with migration between them"
    actions: ClassVar[tuple[str, ...]] = ("none", "low", "fair", "high")
    invalid_action: ClassVar[int] = 0  # an unparseable reply catches nothing
    variables: ClassVar[tuple[Variable, ...]] = (
        Variable("temperament", TEMPERAMENTS),
        Variable("age", AGE_BANDS),
        Variable("stock", STOCK_LEVELS),
    )
    metric_names: ClassVar[tuple[str, ...]] = (
        "total_stock",
        "communities_alive",
        "mean_gain",
        "gini",
        "migrations",
        "over_usage",
    )

    def __init__(self, agents: int, rng: np.random.Generator, **options: Any) -> None:
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise SpecError(f"unknown commons option(s) {sorted(unknown)}; valid: {', '.join(DEFAULTS)}")
        self.options = {**DEFAULTS, **options}
        o = self.options
        self.capacity = float(o["capacity"])
        self.collapse_below = float(o["collapse_below"])
        self.depleted_below = float(o["depleted_below"])
        self.migrate_prob = float(o["migrate_prob"])
        communities = o.get("communities") or max(1, agents // int(o["community_size"]))
        self.profiles = Profiles.draw(agents, communities, rng)
        initial = o["initial_stock"]
        if initial is None:
            self.stock = np.full(communities, self.capacity)
        elif initial == "random":
            self.stock = rng.uniform(0.3, 1.0, communities) * self.capacity
        else:
            self.stock = np.full(communities, float(initial))
        self.alive = self.stock >= self.collapse_below
        self.stock[~self.alive] = 0.0
        self.wealth = np.zeros(agents)

    @classmethod
    def from_arrays(
        cls, community: list[int], temperament: list[int], stock: list[float], **options: Any
    ) -> CommonsScenario:
        """A small population set by hand (for tests and examples): each agent's community and temperament,
        each community's stock; ages are all ``young``."""
        scenario = cls(len(community), np.random.default_rng(0), **options)
        n = len(community)
        scenario.profiles = Profiles(
            age=np.zeros(n, dtype=np.int8),
            temperament=np.array(temperament, dtype=np.int8),
            community=np.array(community, dtype=np.int32),
        )
        scenario.stock = np.array(stock, dtype=np.float64)
        scenario.alive = scenario.stock >= scenario.collapse_below
        scenario.stock[~scenario.alive] = 0.0
        return scenario

    @staticmethod
    def bytes_per_agent(steps: int, options: dict[str, Any]) -> int:
        # profiles 6, wealth 8; in a step: codes, group inverse and sort temporaries (3 x 8), request,
        # harvest, fill and sampling draws (4 x 8), the draw-vs-cumulative table (4 actions x 8), actions 1.
        # Per-community arrays are a twentieth of that. 1.5x for numpy temporaries inside expressions.
        return int((6 + 8 + 24 + 32 + 32 + 1) * 1.5)

    # ----------------------------------------------------------------------- observation

    def members(self) -> np.ndarray:
        return np.bincount(self.profiles.community, minlength=self.stock.shape[0])

    def stock_level(self) -> np.ndarray:
        """Bucket of each community's stock: collapsed, then quarters of the capacity."""
        quarter = np.clip((self.stock / self.capacity * 4).astype(np.int64), 0, 3) + 1
        return np.where(self.alive, quarter, 0)

    def begin_step(self, rng: np.random.Generator) -> None:
        self._level = self.stock_level()
        self._members = self.members()  # for the agents' own prompts

    def variable_values(self) -> list[np.ndarray]:
        return [self.profiles.temperament, self.profiles.age, self._level[self.profiles.community]]

    def fair_share(self) -> np.ndarray:
        """Each community's sustainable share per member: (stock / 2) / members (GovSim)."""
        members = self.members()
        return np.where(self.alive & (members > 0), self.stock / 2.0 / np.maximum(members, 1), 0.0)

    def influence(self) -> np.ndarray:
        # The resource an agent's choice moves: its community's stock per member.
        return self.fair_share()[self.profiles.community]

    def _rules(self) -> Message:
        # The same system message for every agent: a local model computes this shared prefix once.
        return Message(
            "system",
            "You fish in a lake your village shares. Each month the fish left in the lake double, up to "
            f"{self.capacity:g} tons; if fewer than {self.collapse_below:g} tons are left after the catch, the "
            "lake dies for good. Each month you choose your catch: none, low (half your fair share), fair "
            "(your fair share) or high (three times it).",
        )

    def _question(self) -> str:
        return f"How much do you catch this month? {self.answer_instruction()}"

    def _persona(self, temperament: int, age: int) -> str:
        return f"You are a {AGE_BANDS[age]}, {TEMPERAMENTS[temperament]} fisher."

    def archetype_prompt(self, values: dict[str, int]) -> tuple[Message, ...]:
        level = STOCK_LEVELS[values["stock"]]
        situation = "The lake has collapsed." if level == "collapsed" else f"The lake is {level}."
        persona = self._persona(values["temperament"], values["age"])
        return (self._rules(), Message("user", f"{persona} {situation} {self._question()}"))

    def agent_prompt(self, agent: int) -> tuple[Message, ...]:
        c = int(self.profiles.community[agent])
        members = int(self._members[c])
        if not self.alive[c]:
            situation = "The lake has collapsed."
        else:
            share = self.stock[c] / 2.0 / max(members, 1)
            situation = (
                f"The lake holds {self.stock[c]:.0f} tons; {members} villagers fish it, so your fair share is "
                f"{share:.1f} tons. You have caught {self.wealth[agent]:.1f} tons so far."
            )
        persona = self._persona(int(self.profiles.temperament[agent]), int(self.profiles.age[agent]))
        return (self._rules(), Message("user", f"{persona} {situation} {self._question()}"))

    def scripted_actions(self, agents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        level = self._level[self.profiles.community[agents]]
        table = _SCRIPTED.reshape(-1, len(self.actions))
        rows = self.profiles.temperament[agents].astype(np.int64) * len(STOCK_LEVELS) + level
        return sample_rows(table, rows, rng)

    # ----------------------------------------------------------------------- dynamics

    def apply(self, actions: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
        community = self.profiles.community
        n_communities = self.stock.shape[0]
        request = FRACTIONS[actions] * self.fair_share()[community]
        wanted = np.bincount(community, weights=request, minlength=n_communities)
        # Proportional filling (GovSim's variant): every request of an over-asked lake is cut by one ratio.
        fill = np.where(wanted > self.stock, self.stock / np.where(wanted > 0, wanted, 1.0), 1.0)
        harvest = request * fill[community]
        taken = np.bincount(community, weights=harvest, minlength=n_communities)
        self.stock = np.maximum(self.stock - taken, 0.0)
        self.alive &= self.stock >= self.collapse_below
        self.stock = np.where(self.alive, np.minimum(2.0 * self.stock, self.capacity), 0.0)
        self.wealth += harvest
        migrations = self._migrate(rng)
        return {
            "total_stock": float(self.stock.sum()),
            "communities_alive": int(self.alive.sum()),
            "mean_gain": float(harvest.mean()) if harvest.size else 0.0,
            "gini": gini(self.wealth),
            "migrations": migrations,
            "over_usage": float((FRACTIONS[actions] > 1.0).mean()) if actions.size else 0.0,
        }

    def _migrate(self, rng: np.random.Generator) -> int:
        depleted = ~self.alive | (self.stock < self.depleted_below)
        draws = rng.random(self.n)  # drawn every step, so the stream does not depend on who is depleted
        movers = np.flatnonzero(depleted[self.profiles.community] & (draws < self.migrate_prob))
        healthy = np.flatnonzero(~depleted)
        if movers.size == 0 or healthy.size == 0:
            return 0
        weights = self.stock[healthy] / self.stock[healthy].sum()
        self.profiles.community[movers] = rng.choice(healthy, size=movers.size, p=weights)
        return int(movers.size)

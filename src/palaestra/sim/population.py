"""Agent profiles as arrays (one entry per agent, no Python object per agent), the memory check made before a
simulation allocates anything, and the population measures (Gini) the scenarios report.

Profiles are persona variables drawn from the simulation's seeded RNG: an age band, a temperament and a
community (a commons village or a topic of interest). Each is a small integer array; its labels are what
the prompts say.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from palaestra.core.errors import PalaestraError

AGE_BANDS = ("young", "middle-aged", "old")
TEMPERAMENTS = ("cautious", "even-tempered", "bold")

# Headroom for what the estimate cannot see: numpy temporaries inside one vectorised operation, the
# interpreter, the model. The refusal compares the estimate against this share of the available memory.
MEMORY_SHARE = 0.7


class MemoryRefusedError(PalaestraError, MemoryError):
    """A simulation would need more memory than this machine has available; refused before it starts."""


@dataclass(frozen=True)
class Profiles:
    """Persona variables of every agent, one array each (int8 codes into the label tuples above)."""

    age: np.ndarray  # int8, index into AGE_BANDS
    temperament: np.ndarray  # int8, index into TEMPERAMENTS
    community: np.ndarray  # int32, community (commons) or topic (network) of each agent

    @property
    def n(self) -> int:
        return int(self.age.shape[0])

    @staticmethod
    def draw(n: int, communities: int, rng: np.random.Generator) -> Profiles:
        """Draw ``n`` profiles: age band and temperament uniform, community uniform over ``communities``."""
        return Profiles(
            age=rng.integers(0, len(AGE_BANDS), n, dtype=np.int8),
            temperament=rng.integers(0, len(TEMPERAMENTS), n, dtype=np.int8),
            community=rng.integers(0, communities, n, dtype=np.int32),
        )

    BYTES_PER_AGENT = 1 + 1 + 4


def available_memory() -> int:
    """Bytes of memory available to a new allocation: ``MemAvailable`` of /proc/meminfo where there is one
    (it counts reclaimable page cache), else free pages times the page size from ``os.sysconf``."""
    try:
        with open("/proc/meminfo") as fp:
            for line in fp:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))


def check_memory(scenario: str, agents: int, bytes_per_agent: int, available: int | None = None) -> int:
    """Refuse, before anything is allocated, a population whose arrays would not fit in memory.

    Args:
        scenario: named in the message.
        agents: the population size.
        bytes_per_agent: the scenario's estimate for its arrays (state, profiles and one step's temporaries).
        available: bytes available (default: ``available_memory()``).

    Returns:
        The estimate in bytes.

    Raises:
        MemoryRefusedError: the estimate is above ``MEMORY_SHARE`` of the available memory.
    """
    estimate = agents * bytes_per_agent
    free = available_memory() if available is None else available
    if estimate > MEMORY_SHARE * free:
        most = int(MEMORY_SHARE * free // bytes_per_agent)
        raise MemoryRefusedError(
            f"{scenario} with {agents:,} agents needs about {_gib(estimate)} ({bytes_per_agent} bytes per agent) "
            f"but only {_gib(free)} is available (the limit is {MEMORY_SHARE:.0%} of it). "
            f"Ask for at most {most:,} agents, fewer steps, or run on a machine with more memory."
        )
    return estimate


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: all equal; near 1: one holds everything); 0 when all are 0."""
    if values.size == 0:
        return 0.0
    x = np.sort(values.astype(np.float64))
    total = x.sum()
    if total <= 0:
        return 0.0
    n = x.size
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float((2.0 * (ranks * x).sum()) / (n * total) - (n + 1.0) / n)

"""Who plays which seat of a multi-agent environment: the player-mix spec and the agents built from it.

A mix is written ``entry + entry + ...`` where an entry is an agent spec with an optional count,
``spec*n``. Seats are filled in ``possible_agents`` order. A single entry without a count plays every seat:
``prompt`` puts the prompt agent in all five GovSim seats; ``greedy + sustainable*4`` puts a greedy outsider
in the first seat and sustainable agents in the other four; ``prompt + tit-for-tat`` pits the model against a
scripted partner in a two-player game.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from palaestra.agents.base import Agent
from palaestra.core.errors import SpecError
from palaestra.envs.multi import MultiAgentEnv, PlayerView
from palaestra.models.base import Model

_COUNT = re.compile(r"^(?P<spec>.+?)\*(?P<n>\d+)$")


def mix_entries(mix: str) -> list[tuple[str, int | None]]:
    """``"greedy + sustainable*4"`` -> ``[("greedy", None), ("sustainable", 4)]``."""
    entries: list[tuple[str, int | None]] = []
    for part in mix.split("+"):
        part = part.strip()
        if not part:
            raise SpecError(f"empty entry in the player mix {mix!r}; write e.g. 'greedy + sustainable*4'")
        match = _COUNT.match(part)
        if match:
            n = int(match["n"])
            if n < 1:
                raise SpecError(f"player count in {part!r} must be at least 1")
            entries.append((match["spec"].strip(), n))
        else:
            entries.append((part, None))
    return entries


def mix_specs(mix: str) -> list[str]:
    """The distinct agent specs named in a mix, in order."""
    return list(dict.fromkeys(spec for spec, _ in mix_entries(mix)))


def assign_players(mix: str, players: Sequence[str]) -> dict[str, str]:
    """Seat -> agent spec for the players of an environment; an error when the counts do not add up."""
    entries = mix_entries(mix)
    if len(entries) == 1 and entries[0][1] is None:
        return dict.fromkeys(players, entries[0][0])
    specs = [spec for spec, n in entries for _ in range(n or 1)]
    if len(specs) != len(players):
        raise SpecError(
            f"the player mix {mix!r} fills {len(specs)} seats but the environment has {len(players)} players "
            f"({', '.join(players[:8])}{', ...' if len(players) > 8 else ''}); give one spec for every seat, "
            f"counts with '*', e.g. 'greedy + sustainable*{len(players) - 1}', or a single spec for all seats"
        )
    return dict(zip(players, specs, strict=True))


def make_players(mix: str, env: MultiAgentEnv, model: Model | None, *, seed: int = 0) -> dict[str, Agent]:
    """One agent per seat of ``env``, each built for that seat's ``PlayerView`` with its own seed."""
    from palaestra.agents import make_agent

    seats = assign_players(mix, env.possible_agents)
    return {
        player: make_agent(spec, PlayerView(env, player), model, seed=seed * 100_003 + i)
        for i, (player, spec) in enumerate(seats.items())
    }

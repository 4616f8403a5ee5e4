"""Teams: several model-called members that act as one agent, in five topologies.

``make_team("dylan:4", env, model, seed=0)`` builds one from a spec (grammar in ``palaestra.teams.spec``);
``make_agent`` does the same for any spec whose name is a topology, so a team plays wherever an agent does.
``palaestra.teams.accounting`` measures what a team costs and how its errors compare with a single agent's.
"""

from __future__ import annotations

from palaestra.core.errors import SpecError
from palaestra.envs.base import Env
from palaestra.models.base import Model
from palaestra.teams.base import Team, TeamConfig, vote, vote_key
from palaestra.teams.centralized import CentralizedTeam
from palaestra.teams.decentralized import DecentralizedTeam
from palaestra.teams.dylan import DylanTeam, TeamSelection, optimize_team
from palaestra.teams.independent import IndependentTeam
from palaestra.teams.single import SingleTeam
from palaestra.teams.spec import (
    COMMON_OPTIONS,
    TeamSpec,
    bool_option,
    int_option,
    is_team_spec,
    parse_team_spec,
    roster_option,
)

TOPOLOGIES: dict[str, type[Team]] = {
    "single": SingleTeam,
    "independent": IndependentTeam,
    "centralized": CentralizedTeam,
    "decentralized": DecentralizedTeam,
    "dylan": DylanTeam,
}


def team_config(parsed: TeamSpec) -> TeamConfig:
    """The options of a parsed spec, checked against what its topology accepts, with its defaults."""
    cls = TOPOLOGIES[parsed.topology]
    spec, opts = parsed.text, parsed.options
    allowed = (*COMMON_OPTIONS, *cls.options)
    unknown = [k for k in opts if k not in allowed]
    if unknown:
        raise SpecError(
            f"{parsed.topology} teams have no option {unknown[0]!r} (in {spec!r}); their options: {', '.join(allowed)}"
        )
    roster = roster_option(spec, opts["roster"]) if "roster" in opts else ()
    members = (
        int_option(spec, "members", opts["members"], 1) if "members" in opts else len(roster) or cls.default_members
    )
    if roster and len(roster) != members:
        raise SpecError(f"{spec!r} asks for {members} members but its roster names {len(roster)}")
    if not cls.min_members <= members <= cls.max_members:
        raise SpecError(
            f"a {parsed.topology} team has {cls.min_members} to {cls.max_members} members, not {members} (in {spec!r})"
        )
    rounds = int_option(spec, "rounds", opts["rounds"], 1) if "rounds" in opts else cls.default_rounds
    if rounds > cls.max_rounds:
        raise SpecError(f"a {parsed.topology} team plays at most {cls.max_rounds} rounds, not {rounds} (in {spec!r})")
    values: dict[str, int] = {
        k: int_option(spec, k, opts[k], 1) for k in ("stalls", "rank_round", "planner_tokens") if k in opts
    }
    if "keep" in opts:
        values["keep"] = int_option(spec, "keep", opts["keep"], 1)
        if values["keep"] > members:
            raise SpecError(f"keep={values['keep']} is more than the team's {members} members (in {spec!r})")
    audit = bool_option(spec, "audit", opts["audit"]) if "audit" in opts else True
    return TeamConfig(members=members, rounds=rounds, audit=audit, roster=roster, **values)


def make_team(spec: str, env: Env, model: Model | None, *, seed: int = 0) -> Team:
    """Build the team named by ``spec`` to play ``env`` (an environment or a player's view of one).

    Raises ``SpecError`` for a malformed spec, an unknown topology or option, or a missing model.
    """
    parsed = parse_team_spec(spec)
    config = team_config(parsed)
    if model is None:
        raise SpecError(f"the team {spec!r} is made of model agents: pass --model (e.g. --model smollm2-135m)")
    return TOPOLOGIES[parsed.topology](model, config, parsed.member, seed=seed, spec=spec.strip())


__all__ = [
    "TOPOLOGIES",
    "CentralizedTeam",
    "DecentralizedTeam",
    "DylanTeam",
    "IndependentTeam",
    "SingleTeam",
    "Team",
    "TeamConfig",
    "TeamSelection",
    "TeamSpec",
    "is_team_spec",
    "make_team",
    "optimize_team",
    "parse_team_spec",
    "team_config",
    "vote",
    "vote_key",
]

"""The team spec grammar: ``<topology>[:<n members>][,key=value...][/<member agent spec>]``.

Examples: ``single``, ``dylan:4``, ``independent:3,rounds=2/prompt:temperature=0.7``,
``centralized:3,rounds=6,stalls=2``, ``dylan:2,roster=m1.m3``. The member part is a ``prompt`` agent spec
(default ``prompt``): its options (temperature, max_tokens, history, shots, ...) are the members' settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from palaestra.agents.prompt import PromptConfig
from palaestra.core.errors import SpecError

TOPOLOGY_NAMES = ("single", "independent", "centralized", "decentralized", "dylan")
COMMON_OPTIONS = ("members", "rounds", "audit", "roster")
_INT_OPTIONS = ("members", "rounds", "stalls", "keep", "rank_round", "planner_tokens")
_NAME = re.compile(r"^[a-z_]+")


def spec_name(spec: str) -> str:
    """The name of an agent spec: the text before the first ``:``, ``,`` or ``/``."""
    return re.split(r"[:,/]", spec.strip(), maxsplit=1)[0]


def is_team_spec(spec: str) -> bool:
    return spec_name(spec) in TOPOLOGY_NAMES


@dataclass(frozen=True)
class TeamSpec:
    """A parsed team spec: the topology, its raw options (``members`` included when given) and the members'."""

    topology: str
    options: dict[str, str]
    member: PromptConfig
    member_spec: str
    text: str


def parse_team_spec(spec: str) -> TeamSpec:
    """Split a team spec into its parts; a ``SpecError`` says what is wrong and shows the grammar."""
    grammar = (
        "write <topology>[:<n members>][,key=value...][/prompt[:options]], e.g. 'dylan:4' or "
        "'independent:3,rounds=2/prompt:temperature=0.7'"
    )
    head, slash, member_spec = spec.strip().partition("/")
    name = spec_name(head)
    if name not in TOPOLOGY_NAMES:
        raise SpecError(f"unknown team topology {name!r} in {spec!r}; choose one of {', '.join(TOPOLOGY_NAMES)}")
    rest = head[len(name) :]
    options: dict[str, str] = {}
    if rest:
        if rest[0] not in ":,":
            raise SpecError(f"bad team spec {spec!r}: {grammar}")
        parts = [p.strip() for p in rest[1:].split(",")]
        if rest[0] == ":" and parts and parts[0].isdigit():
            options["members"] = parts.pop(0)
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise SpecError(f"bad team option {part!r} in {spec!r}: options are key=value; {grammar}")
            if key.strip() in options:
                raise SpecError(f"team option {key.strip()!r} is given twice in {spec!r}")
            options[key.strip()] = value.strip()
    if slash and not member_spec.strip():
        raise SpecError(f"empty member spec after '/' in {spec!r}; write e.g. '/prompt:temperature=0.7' or drop '/'")
    member_spec = member_spec.strip() or "prompt"
    member_name, _, member_options = member_spec.partition(":")
    if member_name != "prompt":
        raise SpecError(
            f"team members are model agents: the member spec must be 'prompt[:options]', not {member_spec!r}"
        )
    return TeamSpec(name, options, PromptConfig.parse(member_options), member_spec, spec.strip())


def int_option(spec: str, key: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SpecError(f"team option {key} needs a whole number, got {value!r} in {spec!r}") from None
    if number < minimum:
        raise SpecError(f"team option {key} must be at least {minimum}, got {number} in {spec!r}")
    return number


def bool_option(spec: str, key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SpecError(f"team option {key} is true or false, got {value!r} in {spec!r}")


def roster_option(spec: str, value: str) -> tuple[int, ...]:
    """``m1.m3`` -> ``(1, 3)``: the members by name, i.e. by persona number (team optimisation writes these).

    Names are joined by ``.`` because ``+`` joins the entries of a multi-agent player mix.
    """
    names = value.split(".")
    if not all(re.fullmatch(r"m[1-9]\d*", n) for n in names) or len(set(names)) != len(names):
        raise SpecError(
            f"team option roster lists distinct member names joined by '.', e.g. roster=m1.m3; "
            f"got {value!r} in {spec!r}"
        )
    return tuple(int(n[1:]) for n in names)

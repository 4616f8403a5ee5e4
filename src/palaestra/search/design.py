"""Agent designs as data: ``Design`` (one point), ``DesignSpace`` (what a search walks), and design files.

A design says how a model plays: the reasoning pattern, how much of the episode it sees, extra instructions,
demonstrations, sampling, and optionally a team topology or generated code. It is plain, frozen data that
serialises to JSON and has a stable hash, so ``design:<hash>`` names it wherever an agent spec goes (the
file lives under ``$PALAESTRA_DESIGNS``, default ``$PALAESTRA_HOME/designs``). ``palaestra.search.patterns``
plays it.

The space follows the searches of ../shared/reference/OPTIMIZATION.md: AgentSwift searches a hierarchical
space of workflow plus components (memory, planning, reflection) and predicts a design's score from its
features, so every design has a fixed-length ``features`` vector; ADAS's starting archive (chain of thought,
self-consistency, self-refine...) are patterns here, and a design whose ``code`` is set is an ADAS-style
generated agent that runs only in the sandbox (``palaestra.search.sandbox``); GEPA rewrites instructions,
so ``instructions`` is a field the ``reflect`` search changes; DyLAN optimises teams, so ``team`` is a
topology of ``palaestra.teams`` whose members are this design's prompt agent.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from palaestra.core.errors import SpecError
from palaestra.search.space import Candidate, stable_hash
from palaestra.teams import parse_team_spec, team_config
from palaestra.teams.spec import TOPOLOGY_NAMES

if TYPE_CHECKING:
    from palaestra.models.base import Model
    from palaestra.search.patterns import DesignAgent
    from palaestra.search.sandbox import SandboxLimits

PATTERNS = ("direct", "cot", "react", "reflect", "plan", "self-consistency", "tree")
SAMPLING_PATTERNS = ("self-consistency", "tree")  # the patterns that draw k samples per turn
BUILTIN_TEMPLATES = ("default", "compact")  # the space's grid; any template of palaestra/agents/prompts is valid
DEFAULT_SHOT_SOURCE = "scripted:optimal"
MAX_K = 16
MAX_DEPTH = 8
MAX_HISTORY = 50
MAX_SHOTS = 16
MAX_INSTRUCTIONS_CHARS = 4000
MAX_TOKENS_LIMIT = 4096
_SHOT_SOURCE = re.compile(r"^(?:scripted:[a-z][a-z0-9_]*|run:[A-Za-z0-9][A-Za-z0-9_\-]*)$")
_HASH = re.compile(r"^d-[0-9a-f]{12}$")


@functools.cache
def builtin_templates() -> tuple[str, ...]:
    """The prompt agent's built-in templates (the ``.jinja`` files of ``palaestra/agents/prompts``)."""
    folder = resources.files("palaestra.agents") / "prompts"
    return tuple(sorted(p.name.removesuffix(".jinja") for p in folder.iterdir() if p.name.endswith(".jinja")))


def _bad(name: str, allowed: str, value: Any) -> SpecError:
    return SpecError(f"design field {name!r} must be {allowed}; got {value!r}")


def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(name, f"a whole number from {low} to {high}", value)
    return value


def _float(name: str, value: Any, low: float, high: float, *, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(name, f"a number from {low:g} to {high:g}", value)
    number = float(value)
    if not (low < number if open_low else low <= number) or number > high:
        interval = f"above {low:g} and at most {high:g}" if open_low else f"from {low:g} to {high:g}"
        raise _bad(name, f"a number {interval}", value)
    return number


def _fields_of(cls: type, data: Any, prefix: str) -> dict[str, Any]:
    """``data`` as a dict whose keys are all fields of ``cls``; ``SpecError`` names an unknown one."""
    if not isinstance(data, Mapping):
        raise SpecError(f"design {prefix or 'data'} must be a JSON object, got {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    for key in data:
        if key not in names:
            where = f"design field {prefix + '.' if prefix else ''}{key}"
            raise SpecError(f"unknown {where!s}; the fields{' of ' + prefix if prefix else ''} are: {', '.join(names)}")
    return dict(data)


@dataclass(frozen=True)
class Memory:
    """What the prompt keeps of the episode.

    ``history``: how many past turns the prompt shows (the prompt agent's ``history``). ``persist``: whether a
    plan or a reflection stays in the context of every later turn (True) or only the turn right after it was
    written (False).
    """

    history: int = 2
    persist: bool = True

    def __post_init__(self) -> None:
        _int("memory.history", self.history, 0, MAX_HISTORY)
        if not isinstance(self.persist, bool):
            raise _bad("memory.persist", "true or false", self.persist)

    def to_dict(self) -> dict[str, Any]:
        return {"history": self.history, "persist": self.persist}

    @classmethod
    def from_dict(cls, data: Any) -> Memory:
        return cls(**_fields_of(cls, data, "memory"))


@dataclass(frozen=True)
class Shots:
    """Demonstration turns shown before the episode.

    ``source``: ``scripted:<policy>`` (the environment's scripted policy playing the first train seeds, as
    the prompt agent's demonstrations; ``scripted:optimal`` is exactly those), or ``run:<run id>`` (the turns
    of a stored run's best episodes on train seeds, from the store at ``$PALAESTRA_DB``, else ./palaestra.db).
    """

    count: int = 2
    source: str = DEFAULT_SHOT_SOURCE

    def __post_init__(self) -> None:
        _int("shots.count", self.count, 0, MAX_SHOTS)
        if not isinstance(self.source, str) or not _SHOT_SOURCE.match(self.source):
            raise _bad("shots.source", "'scripted:<policy>' (e.g. scripted:optimal) or 'run:<run id>'", self.source)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "source": self.source}

    @classmethod
    def from_dict(cls, data: Any) -> Shots:
        return cls(**_fields_of(cls, data, "shots"))


@dataclass(frozen=True)
class Design:
    """One agent design: frozen, JSON-serialisable data with a stable hash (a ``Candidate`` of design search).

    Fields:
        pattern: how a turn is decided (``PATTERNS``; docs/design.md says what each does and costs).
        k: samples per turn for ``self-consistency`` and ``tree`` (2..16); 1 for every other pattern.
        depth: steps each ``tree`` candidate is tried for on a copy of the environment (1..8); 1 otherwise.
        memory: turns of history shown, and whether plans and reflections persist.
        instructions: text appended to the environment's instructions (None: none).
        shots: how many demonstration turns, and where they come from.
        temperature, top_p, max_tokens: sampling of the action calls (max_tokens None: the environment's
            ``action_tokens``, plus ``REASON_TOKENS`` for the patterns that think before acting).
        template: the prompt agent's system template (a built-in name or a ``.jinja`` path).
        team: None, or a team topology spec (``dylan:3``, ``centralized:2,rounds=3``) whose members are this
            design's prompt agent (pattern ``direct``, demonstrations ``scripted:optimal``).
        code: None, or the source of a generated agent (``palaestra.search.sandbox`` API), played in the
            sandbox; the other fields then stay at their defaults, except ``instructions``.
    """

    pattern: str = "direct"
    k: int = 1
    depth: int = 1
    memory: Memory = field(default_factory=Memory)
    instructions: str | None = None
    shots: Shots = field(default_factory=Shots)
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int | None = None
    template: str = "default"
    team: str | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise _bad("pattern", f"one of {', '.join(PATTERNS)}", self.pattern)
        if self.pattern in SAMPLING_PATTERNS:
            _int("k", self.k, 2, MAX_K)
        elif self.k != 1:
            raise _bad(
                "k",
                f"1 for pattern {self.pattern!r} (k counts the samples of {' and '.join(SAMPLING_PATTERNS)})",
                self.k,
            )
        if self.pattern == "tree":
            _int("depth", self.depth, 1, MAX_DEPTH)
        elif self.depth != 1:
            raise _bad("depth", f"1 for pattern {self.pattern!r} (depth is the lookahead of 'tree')", self.depth)
        if not isinstance(self.memory, Memory):
            raise _bad("memory", "a Memory", self.memory)
        if not isinstance(self.shots, Shots):
            raise _bad("shots", "a Shots", self.shots)
        if self.instructions is not None and (
            not isinstance(self.instructions, str)
            or not self.instructions.strip()
            or len(self.instructions) > MAX_INSTRUCTIONS_CHARS
        ):
            raise _bad(
                "instructions",
                f"null or a non-empty text of at most {MAX_INSTRUCTIONS_CHARS} characters",
                self.instructions,
            )
        # Floats are stored as floats so 0 and 0.0 give one JSON text and one hash.
        object.__setattr__(self, "temperature", _float("temperature", self.temperature, 0.0, 2.0))
        object.__setattr__(self, "top_p", _float("top_p", self.top_p, 0.0, 1.0, open_low=True))
        if self.max_tokens is not None:
            _int("max_tokens", self.max_tokens, 1, MAX_TOKENS_LIMIT)
        if (
            not isinstance(self.template, str)
            or not (self.template.endswith(".jinja") or self.template in builtin_templates())
            or "," in self.template
        ):
            raise _bad(
                "template",
                f"one of {', '.join(builtin_templates())} or a path to a .jinja file (no commas)",
                self.template,
            )
        if self.team is not None:
            self._check_team()
        if self.code is not None:
            self._check_code()

    def _check_team(self) -> None:
        if not isinstance(self.team, str) or "/" in self.team:
            raise _bad(
                "team",
                "null or a topology spec without a member part, e.g. 'dylan:3' "
                f"(topologies: {', '.join(TOPOLOGY_NAMES)})",
                self.team,
            )
        try:
            team_config(parse_team_spec(self.team))
        except SpecError as exc:
            raise SpecError(f"design field 'team': {exc}") from None
        if self.pattern != "direct":
            raise _bad("pattern", "'direct' in a team design (its members are prompt agents)", self.pattern)
        if self.shots.source != DEFAULT_SHOT_SOURCE:
            raise _bad(
                "shots.source",
                f"{DEFAULT_SHOT_SOURCE!r} in a team design (members show the optimal policy)",
                self.shots.source,
            )
        if self.code is not None:
            raise _bad("code", "null in a team design", "<source>")

    def _check_code(self) -> None:
        if not isinstance(self.code, str) or not self.code.strip():
            raise _bad("code", "null or the non-empty source of an agent", self.code)
        plain = Design()
        for name in ("pattern", "k", "depth", "memory", "shots", "temperature", "top_p", "max_tokens", "template"):
            if getattr(self, name) != getattr(plain, name):
                raise _bad(
                    name,
                    f"its default {getattr(plain, name)!r} in a code design (the code decides how to play)",
                    getattr(self, name),
                )

    # ------------------------------------------------------------------ the Candidate protocol

    @property
    def hash(self) -> str:
        """``d-`` + 12 hex digits of the canonical JSON: the same design has the same hash in every process."""
        return stable_hash(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "k": self.k,
            "depth": self.depth,
            "memory": self.memory.to_dict(),
            "instructions": self.instructions,
            "shots": self.shots.to_dict(),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "template": self.template,
            "team": self.team,
            "code": self.code,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Design:
        """The design ``data`` describes (missing fields take their defaults); ``SpecError`` names a bad field."""
        values = _fields_of(cls, data, "")
        if "memory" in values:
            values["memory"] = Memory.from_dict(values["memory"])
        if "shots" in values:
            values["shots"] = Shots.from_dict(values["shots"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def agent_spec(self) -> str:
        return f"design:{self.hash}"

    # ------------------------------------------------------------------ derived

    def member_spec(self) -> str:
        """The ``prompt`` agent spec of this design's single-agent part (what a team's members are)."""
        options = [
            f"template={self.template}",
            f"temperature={self.temperature:g}",
            f"top_p={self.top_p:g}",
            f"history={self.memory.history}",
            f"shots={self.shots.count}",
        ]
        if self.max_tokens is not None:
            options.append(f"max_tokens={self.max_tokens}")
        return "prompt:" + ",".join(options)

    def team_spec(self) -> str | None:
        """The full team spec (topology and members), or None when this design is not a team."""
        return None if self.team is None else f"{self.team}/{self.member_spec()}"

    def team_size(self) -> int:
        return 0 if self.team is None else team_config(parse_team_spec(self.team)).members

    def call_estimate(self) -> int:
        """The most model calls one turn makes: exact for the single-agent patterns; for a team the members
        times the rounds plus one (orchestrator or ranker); 1 for code (unknown until it runs)."""
        if self.code is not None:
            return 1
        if self.team is not None:
            config = team_config(parse_team_spec(self.team))
            return config.members * config.rounds + 1
        return {
            "direct": 1,
            "cot": 1,
            "react": 1,
            "reflect": 2,
            "plan": 2,
            "self-consistency": self.k,
            "tree": self.k * self.depth,
        }[self.pattern]


# --------------------------------------------------------------------------- design files


def designs_dir() -> Path:
    """Where design files live: ``$PALAESTRA_DESIGNS``, else ``$PALAESTRA_HOME/designs``."""
    from palaestra.models.spec import palaestra_home

    return Path(os.environ.get("PALAESTRA_DESIGNS") or palaestra_home() / "designs").expanduser()


def save_design(design: Design, root: str | Path | None = None) -> Path:
    """Write ``<root>/<hash>.json`` atomically (a temporary file renamed into place); return its path."""
    folder = Path(root).expanduser() if root is not None else designs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{design.hash}.json"
    descriptor, temporary = tempfile.mkstemp(prefix=f".{design.hash}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(design.to_json())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_design_file(path: str | Path) -> Design:
    """The design in a JSON file; ``SpecError`` when it is missing, not JSON, or not a design."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read the design file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SpecError(f"the design file {path} is not JSON: {exc}") from None
    try:
        return Design.from_dict(data)
    except SpecError as exc:
        raise SpecError(f"the design file {path} is not a valid design: {exc}") from None


def load_design(ref: str, root: str | Path | None = None) -> Design:
    """The design named by the part of a spec after ``design:``: a hash (``d-0123456789ab``, looked up in
    ``root`` or ``designs_dir()``) or ``@PATH`` (a design file anywhere)."""
    ref = ref.strip()
    if ref.startswith("@"):
        if not ref[1:]:
            raise SpecError("design:@ needs a file path, e.g. design:@my_design.json")
        return read_design_file(ref[1:])
    if not _HASH.match(ref):
        raise SpecError(
            f"bad design reference {ref!r}: write design:<hash> (e.g. design:d-0123456789ab) or design:@FILE.json"
        )
    folder = Path(root).expanduser() if root is not None else designs_dir()
    path = folder / f"{ref}.json"
    if not path.is_file():
        raise SpecError(
            f"no design {ref!r}: looked for {path} (set PALAESTRA_DESIGNS or PALAESTRA_HOME if designs live "
            "elsewhere; a search saves the designs it evaluates, or use design:@FILE.json)"
        )
    design = read_design_file(path)
    if design.hash != ref:
        raise SpecError(f"the design file {path} holds design {design.hash}, not {ref}: it was edited; save it again")
    return design


def make_design_agent(
    ref: str,
    model: Model | None,
    *,
    seed: int = 0,
    spec: str | None = None,
    limits: SandboxLimits | None = None,
) -> DesignAgent:
    """The agent that plays the design named by ``ref`` (what follows ``design:`` in an agent spec)."""
    from palaestra.search.patterns import DesignAgent

    design = load_design(ref)
    return DesignAgent(design, model, seed=seed, spec=spec or f"design:{ref.strip()}", limits=limits)


# --------------------------------------------------------------------------- the space

DEFAULT_TEAMS = ("independent:3", "centralized:2", "dylan:3")


def _field_edits(design: Design, name: str, value: Any) -> Design:
    """``design`` with one field set, and the fields that depend on it adjusted so the result is valid."""
    values: dict[str, Any] = {name: value}
    if name == "pattern":
        values["k"] = (
            design.k if value in SAMPLING_PATTERNS and design.k > 1 else (3 if value in SAMPLING_PATTERNS else 1)
        )
        values["depth"] = design.depth if value == "tree" else 1
        if value != "direct":
            values["team"] = None
        if value in SAMPLING_PATTERNS and design.temperature == 0.0:
            values["temperature"] = 0.7  # k greedy samples would all be the same reply
    elif name == "team" and value is not None:
        values.update(pattern="direct", k=1, depth=1, shots=replace(design.shots, source=DEFAULT_SHOT_SOURCE))
    elif name == "shots" and value.source != DEFAULT_SHOT_SOURCE:
        values["team"] = None
    if "shots" in values and values["shots"].count == 0:
        values["shots"] = Shots(0, DEFAULT_SHOT_SOURCE)  # no demonstrations: the source does not matter
    return replace(design, **values)


_NUMERIC = ("k", "depth", "memory.history", "shots.count", "temperature", "max_tokens")


class DesignSpace:
    """The space of ``Design`` s a search walks: a finite grid of values per field, in a fixed order.

    Args:
        patterns: the patterns designs may use (the default ``direct`` is always allowed: it is the baseline).
        ks: sample counts for self-consistency and tree.
        depths: lookahead depths for tree.
        histories: turns of history.
        shot_counts: demonstration counts.
        shot_sources: demonstration sources (``scripted:<policy>``, ``run:<id>``).
        temperatures, top_ps, max_tokens: sampling values (``None`` in ``max_tokens``: the environment's).
        templates: prompt templates.
        instructions: candidate instruction texts the caller supplies (None, no extra text, is always one).
        teams: team topology specs (ignored when ``allow_team`` is False).
        allow_team: whether designs may be teams.
        allow_code: whether code designs (ADAS-style) are accepted by ``from_dict``; they are never made by
            ``sample``, ``mutate`` or ``children``, which only change a code design's instructions.
    """

    name = "design"

    def __init__(
        self,
        *,
        patterns: Sequence[str] = PATTERNS,
        ks: Sequence[int] = (3, 5),
        depths: Sequence[int] = (1, 2),
        histories: Sequence[int] = (0, 1, 2, 4),
        shot_counts: Sequence[int] = (0, 1, 2, 4),
        shot_sources: Sequence[str] = (DEFAULT_SHOT_SOURCE,),
        temperatures: Sequence[float] = (0.0, 0.3, 0.7, 1.0),
        top_ps: Sequence[float] = (1.0, 0.9),
        max_tokens: Sequence[int | None] = (None, 32, 64, 128),
        templates: Sequence[str] = BUILTIN_TEMPLATES,
        instructions: Sequence[str] = (),
        teams: Sequence[str] = DEFAULT_TEAMS,
        allow_team: bool = True,
        allow_code: bool = True,
    ) -> None:
        unknown = [p for p in patterns if p not in PATTERNS]
        if unknown:
            raise SpecError(f"unknown pattern {unknown[0]!r} for the design space; choose from {', '.join(PATTERNS)}")
        self.patterns = tuple(dict.fromkeys(("direct", *patterns)))
        self.allow_team = allow_team
        self.allow_code = allow_code
        probe = Design()
        # Every grid value is checked once here, so a bad option fails at construction, not mid-search.
        self.grid: dict[str, tuple[Any, ...]] = {
            "pattern": self.patterns,
            "k": self._checked(ks, lambda v: replace(probe, pattern="self-consistency", k=v)),
            "depth": self._checked(depths, lambda v: replace(probe, pattern="tree", k=2, depth=v)),
            "memory.history": self._checked(histories, lambda v: Memory(history=v)),
            "memory.persist": (True, False),
            "shots.count": self._checked(shot_counts, lambda v: Shots(count=v)),
            "shots.source": self._checked(shot_sources, lambda v: Shots(source=v)),
            "temperature": self._checked(temperatures, lambda v: replace(probe, temperature=v)),
            "top_p": self._checked(top_ps, lambda v: replace(probe, top_p=v)),
            "max_tokens": self._checked(max_tokens, lambda v: replace(probe, max_tokens=v)),
            "template": self._checked(templates, lambda v: replace(probe, template=v)),
            "instructions": (None, *self._checked(instructions, lambda v: replace(probe, instructions=v))),
            "team": (None, *self._checked(teams, lambda v: replace(probe, team=v))) if allow_team else (None,),
        }
        self.templates = self.grid["template"]
        self.instruction_texts = self.grid["instructions"][1:]
        # The largest grid value of each numeric option: ``features`` divides by it (never by 0).
        self._top = {key: float(max((v or 0 for v in self.grid[key]), default=0) or 1) for key in _NUMERIC}
        team_designs = [replace(probe, team=t) for t in self.grid["team"][1:]]
        self._top["calls"] = max([self._top["k"] * self._top["depth"], *(t.call_estimate() for t in team_designs)])
        self._top["team"] = float(max((t.team_size() for t in team_designs), default=1))

    @staticmethod
    def _checked(values: Sequence[Any], build: Callable[[Any], object]) -> tuple[Any, ...]:
        out = tuple(dict.fromkeys(values))
        for value in out:
            build(value)
        return out

    # ------------------------------------------------------------------ editing

    def _value(self, design: Design, key: str) -> Any:
        head, _, tail = key.partition(".")
        value = getattr(design, head)
        return getattr(value, tail) if tail else value

    def _edit(self, design: Design, key: str, value: Any) -> Design | None:
        """One edit, with its dependent fields adjusted; None when the result is not a design of this space."""
        head, _, tail = key.partition(".")
        if design.code is not None and key != "instructions":
            return None  # a code design is its code: only the instructions it is given change
        if key in ("k", "depth") and design.pattern not in (SAMPLING_PATTERNS if key == "k" else ("tree",)):
            return None
        if design.team is not None and key == "shots.source":
            return None
        if key == "memory.persist" and design.pattern not in ("reflect", "plan"):
            return None  # only plans and reflections persist: elsewhere the edit changes nothing
        new_value = replace(getattr(design, head), **{tail: value}) if tail else value
        try:
            edited = _field_edits(design, head, new_value)
        except SpecError:
            return None
        return edited if self.contains(edited) else None

    def contains(self, design: Design) -> bool:
        """Whether ``design`` is allowed here (pattern, team, code); grid values are not required."""
        if design.pattern not in self.patterns:
            return False
        if design.team is not None and not self.allow_team:
            return False
        return design.code is None or self.allow_code

    def default(self) -> Design:
        """The design that plays exactly as the default ``prompt`` agent (``PromptConfig()``)."""
        return Design()

    def children(self, candidate: Candidate) -> list[Candidate]:
        design = self._design(candidate)
        out: dict[str, Design] = {}
        for key, values in self.grid.items():
            current = self._value(design, key)
            for value in values:
                if value == current:
                    continue
                child = self._edit(design, key, value)
                if child is not None and child != design:
                    out.setdefault(child.hash, child)
        return list(out.values())

    def mutate(self, candidate: Candidate, rng: random.Random) -> Candidate:
        """One edit, and a second one half the time; the result differs from ``candidate`` when the space
        allows any edit of it (otherwise ``candidate`` itself)."""
        design = self._design(candidate)
        edits = 1 if rng.random() < 0.5 else 2
        current = design
        for _ in range(edits):
            options = self.children(current)
            options = [c for c in options if c != design] or options
            if not options:
                break
            picked = options[rng.randrange(len(options))]
            assert isinstance(picked, Design)
            current = picked
        return current

    def sample(self, rng: random.Random) -> Candidate:
        """Every field drawn uniformly from its grid (a team one time in four when teams are allowed)."""
        design = Design()
        for key, values in self.grid.items():
            if key == "team":
                if len(values) > 1 and rng.random() < 0.25:
                    edited = self._edit(design, key, values[1 + rng.randrange(len(values) - 1)])
                    design = edited or design
                continue
            edited = self._edit(design, key, values[rng.randrange(len(values))])
            design = edited or design
        return design

    # ------------------------------------------------------------------ description

    def feature_names(self) -> list[str]:
        """The names of the ``features`` entries, in order (their number is fixed for this space)."""
        return [
            *(f"pattern={p}" for p in PATTERNS),
            "k",
            "depth",
            "calls_per_turn",
            "history",
            "persist",
            "shots",
            "shots_from_run",
            "temperature",
            "top_p",
            "max_tokens",
            *(f"template={t}" for t in self.templates),
            "template=other",
            "has_instructions",
            "instructions_chars",
            *(f"instructions={i}" for i in range(len(self.instruction_texts))),
            "team_members",
            *(f"topology={t}" for t in TOPOLOGY_NAMES),
            "has_code",
            "code_lines",
        ]

    def features(self, candidate: Candidate) -> list[float]:
        """Numbers a value model can learn from: one-hot choices, and counts and sampling values divided by
        the largest value of this space's grid, so that every grid value lies in 0..1 (``max_tokens`` 0 means
        the environment's default). On raw scales a distance-based value model would see ``max_tokens`` (up
        to 128) as the one option that matters, and try those edits first."""
        d = self._design(candidate)
        topology = parse_team_spec(d.team).topology if d.team is not None else None
        return [
            *(float(d.pattern == p) for p in PATTERNS),
            d.k / self._top["k"],
            d.depth / self._top["depth"],
            d.call_estimate() / self._top["calls"],
            d.memory.history / self._top["memory.history"],
            float(d.memory.persist),
            d.shots.count / self._top["shots.count"],
            float(d.shots.source.startswith("run:")),
            d.temperature / self._top["temperature"],
            d.top_p,
            (d.max_tokens or 0) / self._top["max_tokens"],
            *(float(d.template == t) for t in self.templates),
            float(d.template not in self.templates),
            float(d.instructions is not None),
            len(d.instructions or "") / MAX_INSTRUCTIONS_CHARS,
            *(float(d.instructions == text) for text in self.instruction_texts),
            d.team_size() / self._top["team"],
            *(float(topology == t) for t in TOPOLOGY_NAMES),
            float(d.code is not None),
            min(len(d.code.splitlines()) / 100, 1.0) if d.code else 0.0,
        ]

    def from_dict(self, data: Mapping[str, Any]) -> Design:
        design = Design.from_dict(data)
        if design.pattern not in self.patterns:
            raise _bad("pattern", f"one of this space's patterns: {', '.join(self.patterns)}", design.pattern)
        if design.team is not None and not self.allow_team:
            raise _bad("team", "null (this space has no teams: allow_team=False)", design.team)
        if design.code is not None and not self.allow_code:
            raise _bad("code", "null (this space has no generated code: allow_code=False)", "<source>")
        return design

    def save(self, candidate: Candidate) -> None:
        """Write the design file, so ``design:<hash>`` resolves (``designs_dir()``)."""
        save_design(self._design(candidate))

    @staticmethod
    def _design(candidate: Candidate) -> Design:
        if not isinstance(candidate, Design):
            raise SpecError(f"a DesignSpace works on Design candidates, not {type(candidate).__name__}")
        return candidate

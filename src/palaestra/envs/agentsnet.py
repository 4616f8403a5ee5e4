"""AgentsNet (Grötschla et al. 2025, "AgentsNet: Coordination and Collaborative Reasoning in Multi-Agent LLMs"):
``agentsnet-coloring-v0``, ``agentsnet-leader-election-v0``, ``agentsnet-consensus-v0``,
``agentsnet-matching-v0`` and ``agentsnet-vertex-cover-v0``.

Facts of the paper and its code implemented here: N agents sit on the nodes of a graph; each knows only its
own name and its neighbours' names and only talks to its neighbours (the LOCAL model of distributed
computing). Rounds are synchronous: in each round every agent reads what its neighbours sent in the
previous round and sends new messages; after the last round every agent gives a final answer, checked
exactly. Graphs are small-world (Watts-Strogatz, k = 4, p = 0.4), preferential attachment
(Barabasi-Albert, m = 2) or Delaunay triangulations of random points (see ``graphs.py``); agents carry
human first names. Rounds: 2 x diameter + 1 for consensus, leader election and any graph above 16 nodes;
otherwise 4, 5 and 6 rounds for 4, 8 and 16 nodes (the paper's ``main.sh``). Colouring offers
max degree + 1 colours ("groups"). Leader election: exactly one agent answers yes. Consensus: everyone
answers the same value (0 or 1 in the paper). Matching: every agent names a neighbour it pairs with or none; pairs must
name each other and no two unpaired agents may be neighbours. Vertex cover: every agent says whether it
is a coordinator; every edge must have one and every coordinator a neighbour who is not one. The paper's
partial scores are kept as the ``score`` metric (colouring: the share of properly coloured edges, zero if
any answer is invalid; matching: the share of consistent agents; vertex cover: coverage x the share of
coordinators that cannot be dropped).

Differences, chosen so that every task has a definite, checkable answer for scripted and model agents
alike: consensus gives each agent a private starting value and the agreed value must be one of them (with
the paper's free choice of 0 or 1, answering 0 blindly always wins); matching gets at least
4 + 2 log2(n) rounds, which its scripted algorithm needs (see ``default_rounds``). Players are
``agent_0`` ... ``agent_{N-1}``, fixed per instance; the names, the graph and where each player sits are
drawn from the seed, so no name is a shortcut to any answer.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, ClassVar

from palaestra.core.errors import EnvError, SpecError
from palaestra.core.types import Step
from palaestra.envs import graphs
from palaestra.envs.multi import Channel, MultiAgentEnv, MultiPolicy

TASKS = ("coloring", "leader-election", "consensus", "matching", "vertex-cover")
GRAPHS = (*graphs.FAMILIES, "random")

MESSAGE_CHARS = 500  # one message; an action may hold several, one per line
ACTION_CHARS = 8000  # a whole action; anything longer is refused unread


@cache
def name_pool() -> tuple[str, ...]:
    """The packaged first names (240, ASCII letters only, unique ignoring case)."""
    text = (resources.files("palaestra.envs") / "data" / "agent_names.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def draw_names(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct names; past the pool's size the names repeat with a number (``Ada2``, ``Ada3``...)."""
    pool = name_pool()
    copies = -(-n // len(pool))
    candidates = [name + (str(k) if k > 1 else "") for k in range(1, copies + 1) for name in pool]
    return rng.sample(candidates, n)


# --------------------------------------------------------------------------- the network


@dataclass(frozen=True)
class Network:
    """A connected graph with a named agent on each node. ``adjacency[i]`` lists node i's neighbours."""

    family: str
    names: tuple[str, ...]
    adjacency: tuple[tuple[int, ...], ...]
    diameter: int
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    _neighbour_names: tuple[tuple[str, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {name: i for i, name in enumerate(self.names)})
        names = self.names
        object.__setattr__(
            self, "_neighbour_names", tuple(tuple(sorted(names[j] for j in adj)) for adj in self.adjacency)
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> Network:
        return self  # immutable: copies of an environment share it

    @classmethod
    def generate(cls, family: str, n: int, rng: random.Random) -> Network:
        adjacency = graphs.generate(family, n, rng)
        names = draw_names(n, rng)
        return cls(family, tuple(names), tuple(tuple(a) for a in adjacency), graphs.diameter(adjacency))

    @classmethod
    def from_edges(cls, names: Sequence[str], edges: Sequence[Sequence[str]], family: str = "custom") -> Network:
        """A hand-built network (tests, examples): ``edges`` are pairs of names; it must be connected."""
        index = {name: i for i, name in enumerate(names)}
        if len(index) != len(names) or not all(re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", n) for n in names):
            raise SpecError("network names must be distinct words of letters and digits, starting with a letter")
        adj: list[set[int]] = [set() for _ in names]
        for edge in edges:
            u, v = (index.get(x) for x in edge)
            if u is None or v is None or u == v:
                raise SpecError(f"edge {list(edge)} must join two different names of {list(names)}")
            adj[u].add(v)
            adj[v].add(u)
        adjacency = [sorted(a) for a in adj]
        if len(names) < 2 or not graphs.is_connected(adjacency):
            raise SpecError("a network needs at least 2 agents and must be connected")
        return cls(family, tuple(names), tuple(tuple(a) for a in adjacency), graphs.diameter(adjacency))

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def n_edges(self) -> int:
        return sum(len(a) for a in self.adjacency) // 2

    @property
    def max_degree(self) -> int:
        return max(len(a) for a in self.adjacency)

    def neighbours(self, name: str) -> tuple[str, ...]:
        """The neighbours' names, sorted."""
        return self._neighbour_names[self.index[name]]


def default_rounds(task: str, n: int, diameter: int) -> int:
    """Message rounds by default: AgentsNet's rule, except matching, which gets at least 4 + 2 log2(n).

    AgentsNet gives 2 x diameter + 1 rounds for consensus, leader election and any graph above 16 nodes,
    and 4, 5 or 6 rounds to colouring, matching and vertex cover on up to 4, 8 or 16 nodes. The scripted
    matching pairs agents who pick each other, which takes a round to see and another for the neighbours
    to hear of it; measured over 100 seeds per family and size it needs up to 13 rounds at 8 to 200
    agents, more than the paper's 5 or 6 on small graphs, so matching gets max(AgentsNet's rounds,
    4 + 2 ceil(log2 n)), which it fitted on every measured seed (docs/envs/agentsnet.md).
    """
    paper = 4 if n <= 4 else 5 if n <= 8 else 6
    rounds = 2 * diameter + 1 if task in ("consensus", "leader-election") or n > 16 else paper
    if task == "matching":
        rounds = max(rounds, 4 + 2 * math.ceil(math.log2(n)))
    return rounds


# --------------------------------------------------------------------------- answers and checkers


@dataclass(frozen=True)
class Outcome:
    """The check of the final answers: ``success`` (every constraint holds), ``score`` (the paper's partial
    score) and ``satisfied`` (the share of agents whose own constraint holds)."""

    success: bool
    score: float
    satisfied: float


_ANSWER_PREFIX = re.compile(r"^(?:(?:my\s+)?(?:final\s+)?answer\s*(?:is|[:=\-])?\s*)?", re.IGNORECASE)
_ANSWER_KEYS = {
    "coloring": r"(?:(?:my\s+)?(?:colou?r|group)\s*(?:is|[:=#\-])?\s*)?",
    "leader-election": r"(?:(?:am\s+i\s+(?:the\s+)?)?leader\s*\??\s*(?:is|[:=\-])?\s*)?",
    "consensus": r"(?:(?:my\s+)?value\s*(?:is|[:=\-])?\s*)?",
    "matching": r"(?:(?:my\s+)?(?:partner|paired\s+with|matched\s+with|group\s+with)\s*(?:is|[:=\-])?\s*)?",
    "vertex-cover": r"(?:(?:in\s+(?:the\s+)?cover|coordinator)\s*\??\s*(?:is|[:=\-])?\s*)?",
}
_ANSWER_VALUES = {
    "coloring": r"(\d{1,6})",
    "leader-election": r"(yes|no)",
    "consensus": r"(\d{1,6})",
    "matching": r"([A-Za-z][A-Za-z0-9]*)",
    "vertex-cover": r"(yes|no)",
}
ANSWER_FORMATS = {
    "coloring": "colour: <number>",
    "leader-election": "leader: yes|no",
    "consensus": "value: <number>",
    "matching": "partner: <neighbour's name>|none",
    "vertex-cover": "in cover: yes|no",
}


def parse_answer(task: str, text: str) -> str | None:
    """The bare answer in ``text`` (``"Colour: 3."`` -> ``"3"``, ``"leader: Yes"`` -> ``"yes"``), or None.

    The key (``colour:``, ``leader:``...) and a leading ``answer:`` are optional; case, surrounding
    whitespace, markdown emphasis and a final full stop are ignored. Range and neighbourhood are checked
    by the environment, not here.
    """
    if len(text) > 200:
        return None
    body = text.strip().strip("*`_ ").rstrip(".!").strip("*`_ ")
    body = _ANSWER_PREFIX.sub("", body, count=1)
    match = re.fullmatch(_ANSWER_KEYS[task] + _ANSWER_VALUES[task], body, re.IGNORECASE)
    if not match:
        return None
    value = match.group(1)
    return value if task == "matching" and value.lower() != "none" else value.lower()


def check_coloring(net: Network, colours: Mapping[str, int | None], k: int) -> Outcome:
    """Proper colouring with colours 1..k: neighbours differ, everyone answered a colour in range."""
    ok = [c is not None and 1 <= c <= k for c in (colours.get(name) for name in net.names)]
    good = 0
    proper_edges = 0
    for i, name in enumerate(net.names):
        c = colours.get(name)
        clash = any(colours.get(net.names[j]) == c for j in net.adjacency[i])
        good += ok[i] and not clash
        proper_edges += sum(1 for j in net.adjacency[i] if j > i and colours.get(net.names[j]) != c)
    share_edges = proper_edges / net.n_edges if net.n_edges else 1.0
    satisfied = good / net.n
    return Outcome(satisfied == 1.0, share_edges if all(ok) else 0.0, satisfied)


def check_leader(net: Network, answers: Mapping[str, bool | None]) -> Outcome:
    """Exactly one agent says it is the leader and every other agent says it is not."""
    yes = sum(1 for name in net.names if answers.get(name) is True)
    no = sum(1 for name in net.names if answers.get(name) is False)
    success = yes == 1 and no == net.n - 1
    # Agents whose answer fits the best single leader: the one who said yes, or (none did) any silent agent.
    fitting = no + 1 if yes else no if no < net.n else no - 1
    return Outcome(success, 1.0 if success else 0.0, fitting / net.n)


def check_consensus(net: Network, answers: Mapping[str, int | None], initial: Mapping[str, int]) -> Outcome:
    """Everyone answers the same value, and some agent started with it."""
    counts: dict[int, int] = {}
    for name in net.names:
        v = answers.get(name)
        if v is not None and v in initial.values():
            counts[v] = counts.get(v, 0) + 1
    best = max(counts.values(), default=0)
    success = best == net.n
    return Outcome(success, 1.0 if success else 0.0, best / net.n)


def check_matching(net: Network, partners: Mapping[str, str | None]) -> Outcome:
    """A maximal matching: partners name each other, and no two unpaired agents are neighbours.

    ``partners`` maps a name to its answer: a neighbour's name, ``"none"``, or None for no valid answer.
    """
    good = 0
    for i, name in enumerate(net.names):
        answer = partners.get(name)
        if answer is None:
            continue
        if answer == "none":
            good += all(partners.get(net.names[j]) not in (None, "none") for j in net.adjacency[i])
        else:
            good += answer in net.index and net.index[answer] in net.adjacency[i] and partners.get(answer) == name
    satisfied = good / net.n
    return Outcome(satisfied == 1.0, satisfied, satisfied)


def check_vertex_cover(net: Network, cover: Mapping[str, bool | None]) -> Outcome:
    """A minimal vertex cover: every edge has an endpoint in the cover and none of its members can leave it
    (each has a neighbour outside). An agent without a valid answer is outside and fails its own check."""
    inside = [cover.get(name) is True for name in net.names]
    good = 0
    covered = 0
    necessary = 0
    for i, name in enumerate(net.names):
        outside_neighbours = sum(1 for j in net.adjacency[i] if not inside[j])
        covered += sum(1 for j in net.adjacency[i] if j > i and (inside[i] or inside[j]))
        if inside[i]:
            necessary += outside_neighbours > 0
            good += outside_neighbours > 0
        elif cover.get(name) is False:
            good += outside_neighbours == 0
    coverage = covered / net.n_edges if net.n_edges else 1.0
    size = sum(inside)
    score = coverage * necessary / size if size else 0.0
    satisfied = good / net.n
    return Outcome(satisfied == 1.0, score, satisfied)


# --------------------------------------------------------------------------- what an agent sees


@dataclass(frozen=True)
class Received:
    """One message in an agent's inbox."""

    sender: str
    text: str
    to_all: bool  # sent to all the sender's neighbours (else to this agent by name)


@dataclass(frozen=True)
class AgentView:
    """Everything one agent knows now, and nothing more: what scripted policies may read.

    ``round`` is 1..``rounds`` in the message rounds and ``rounds + 1`` in the answer round;
    ``inbox`` holds the messages received from the previous round and ``last_action`` this agent's own
    previous action text (both empty in round 1).
    """

    task: str
    name: str
    neighbours: tuple[str, ...]
    n_agents: int
    round: int
    rounds: int
    inbox: tuple[Received, ...]
    last_action: str
    value: int | None  # consensus: this agent's private starting value
    colours: int | None  # colouring: the number of colours allowed

    @property
    def answering(self) -> bool:
        return self.round > self.rounds


_ALL_RE = re.compile(r"(?:all|everyone)\s*:\s*(.*)", re.IGNORECASE | re.DOTALL)
_TO_RE = re.compile(r"to\s+([^:]+?)\s*:\s*(.*)", re.IGNORECASE | re.DOTALL)
_PASS_RE = re.compile(r"[\W_]*pass[\W_]*", re.IGNORECASE)


def _shown(text: str, limit: int = 60) -> str:
    clean = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in text[:limit])
    return clean + ("..." if len(text) > limit else "")


class AgentsNetEnv(MultiAgentEnv):
    """N agents on a graph solve a coordination task by talking to their neighbours in synchronous rounds.

    Args:
        task: one of ``TASKS``.
        graph: ``"small-world"``, ``"preferential-attachment"``, ``"delaunay"`` or ``"random"`` (one of the
            three, drawn from the seed).
        n_agents: the number of agents (4 or more); fixed for the instance, since players are seated before
            an episode starts.
        rounds: message rounds; None for ``default_rounds`` of the drawn graph.
        colours: colours allowed in the colouring task; None for max degree + 1 (AgentsNet).
        values: consensus starting values are drawn from ``0 .. values - 1``.
        message_chars: the longest message accepted.
    """

    action_tokens = 256
    demo_policy: ClassVar[str] = "optimal"

    def __init__(
        self,
        task: str,
        graph: str = "random",
        n_agents: int = 8,
        rounds: int | None = None,
        colours: int | None = None,
        values: int = 2,
        message_chars: int = MESSAGE_CHARS,
    ) -> None:
        if task not in TASKS:
            raise SpecError(f"unknown AgentsNet task {task!r}; choose one of {', '.join(TASKS)}")
        if graph not in GRAPHS:
            raise SpecError(f"unknown graph {graph!r}; choose one of {', '.join(GRAPHS)}")
        if not isinstance(n_agents, int) or n_agents < graphs.MIN_NODES:
            raise SpecError(f"n_agents must be an integer of at least {graphs.MIN_NODES}, not {n_agents!r}")
        if rounds is not None and (not isinstance(rounds, int) or rounds < 1):
            raise SpecError(f"rounds must be a positive integer or None, not {rounds!r}")
        if colours is not None and (not isinstance(colours, int) or colours < 1):
            raise SpecError(f"colours must be a positive integer or None, not {colours!r}")
        if not isinstance(values, int) or values < 1:
            raise SpecError(f"values must be a positive integer, not {values!r}")
        self.task, self.graph, self.n_agents = task, graph, n_agents
        self.rounds_override, self.colours_override, self.values = rounds, colours, values
        self.message_chars = message_chars
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents = []
        self.network: Network | None = None
        self.rounds = 0
        self.colours: int | None = None
        self.initial: dict[str, int] = {}  # consensus: name -> private starting value
        self.round = 0  # the round now being played: 1..rounds, then rounds + 1 (answers)
        self._name_of: dict[str, str] = {}  # player id -> name
        self._player_of: dict[str, str] = {}
        self._inbox: dict[str, list[Received]] = {}
        self._last_action: dict[str, str] = {}
        self._problems: dict[str, list[str]] = {}
        self._answers: dict[str, Any] = {}
        self._answer_text: dict[str, str] = {}
        self.channel = Channel([])
        self._steps = 0
        self._invalid = 0
        self._outcome: Outcome | None = None
        self._truncated = False

    # ------------------------------------------------------------------ agent-facing text

    def instructions(self, agent: str) -> str:
        if agent not in self.possible_agents:
            raise EnvError(f"{agent!r} is not a player of this environment ({self.possible_agents[0]}...)")
        goal = {
            "coloring": "Together you must split into groups (colours) so that no two neighbours share a colour. "
            "The colours are numbered 1 to K; your first message says K.",
            "leader-election": "Together you must elect exactly one leader: in the end exactly one agent says it is "
            "the leader and every other agent says it is not.",
            "consensus": "Together you must agree on one value: each agent starts with a private value, and in the "
            "end every agent must give the same value, which must be the starting value of at least one agent.",
            "matching": "Together you must form pairs of neighbours: in the end every agent names the neighbour it "
            "is paired with, or none. Partners must name each other, nobody is in two pairs, and two neighbours "
            "may not both stay unpaired.",
            "vertex-cover": "Together you must choose coordinators: in the end every agent says whether it is a "
            "coordinator (in the cover). For every two neighbours at least one must be a coordinator, and every "
            "coordinator must have at least one neighbour who is not a coordinator.",
        }[self.task]
        answer = {
            "coloring": "'colour: <number>', a number from 1 to K",
            "leader-election": "'leader: yes' if you are the leader, else 'leader: no'",
            "consensus": "'value: <number>'",
            "matching": "'partner: <name>' naming one of your neighbours, or 'partner: none'",
            "vertex-cover": "'in cover: yes' or 'in cover: no'",
        }[self.task]
        return (
            f"You are one of {self.n_agents} agents placed on the nodes of a network. Every agent has a unique "
            "name. You know only your own name and your neighbours' names (given in your first message), and you "
            "can only send messages to your neighbours; they can pass information on to theirs. "
            f"{goal}\n\n"
            "The exchange runs in synchronous rounds; your first message says how many. In each round you read "
            "the messages your neighbours sent in the previous round, then send your messages, which they read in "
            "the next round. Everyone sends at the same time.\n\n"
            "In a message round, reply with one message per line, each either\n"
            "  All: <text>            (to all your neighbours)\n"
            "  To <name>: <text>      (to one neighbour; 'To Ana, Ben: <text>' for several)\n"
            f"or just 'Pass' to send nothing. A message has at most {self.message_chars} characters. A line that "
            "is not a message, or a message to someone who is not your neighbour, is dropped and you are told "
            "why; your other lines are still sent.\n\n"
            f"After the last round you give your final answer: reply with exactly {answer}. An answer in another "
            "form counts as no answer, and then the team fails. If the team succeeds every agent gets reward 1, "
            "otherwise every agent gets 0."
        )

    def _view_text(self, agent: str) -> str:
        net = self._require_network()
        name = self._name_of[agent]
        lines: list[str] = []
        if self.round == 1:
            lines.append(f"You are {name}. Your neighbours are {', '.join(net.neighbours(name))}.")
            if self.task == "consensus":
                lines.append(f"Your private starting value is {self.initial[name]}.")
            if self.task == "coloring":
                lines.append(f"There are {self.colours} colours, numbered 1 to {self.colours}.")
            lines.append(f"There are {self.rounds} message rounds, then you give your final answer. No messages yet.")
        else:
            inbox = self._inbox.get(agent, [])
            if inbox:
                lines.append(f"Messages you received in round {self.round - 1}:")
                lines += [f"{m.sender}{'' if m.to_all else ' (to you)'}: {m.text}" for m in inbox]
            else:
                lines.append(f"You received no messages in round {self.round - 1}.")
            problems = self._problems.get(agent)
            if problems:
                lines.append("Problems with your last reply: " + " ".join(problems))
        if self.round <= self.rounds:
            left = self.rounds - self.round
            after = "this is the last message round" if left == 0 else f"{left} more after this one"
            lines.append(f"Round {self.round} of {self.rounds} ({after}): send your messages.")
        else:
            lines.append(f"Message passing is over. Give your final answer: {ANSWER_FORMATS[self.task]}.")
        return "\n".join(lines)

    # ------------------------------------------------------------------ the environment contract

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> dict[str, Step]:
        """Start an episode. ``options`` may give ``"network"`` (a ``Network`` of ``n_agents`` names, e.g. from
        ``Network.from_edges``), ``"values"`` (consensus: name -> starting value) and ``"rounds"``."""
        options = dict(options or {})
        rng = random.Random(seed)
        network = options.pop("network", None)
        if network is None:
            family = self.graph if self.graph != "random" else rng.choice(graphs.FAMILIES)
            network = Network.generate(family, self.n_agents, rng)
        elif not isinstance(network, Network) or network.n != self.n_agents:
            raise SpecError(f"options['network'] must be a Network of {self.n_agents} agents")
        self.network = network
        order = list(network.names)
        rng.shuffle(order)  # which player sits where
        self._name_of = dict(zip(self.possible_agents, order, strict=True))
        self._player_of = {name: agent for agent, name in self._name_of.items()}
        rounds = options.pop("rounds", None) or self.rounds_override
        self.rounds = rounds or default_rounds(self.task, network.n, network.diameter)
        self.colours = (self.colours_override or network.max_degree + 1) if self.task == "coloring" else None
        values = options.pop("values", None)
        self.initial = (
            {name: int(values[name]) if values else rng.randrange(self.values) for name in network.names}
            if self.task == "consensus"
            else {}
        )
        if options:
            raise SpecError(f"unknown reset options {sorted(options)}; use network, values, rounds")
        self.channel = Channel(
            network.names,
            neighbours={name: network.neighbours(name) for name in network.names},
            max_chars=self.message_chars,
        )
        self.round = 1
        self.agents = list(self.possible_agents)
        self._inbox, self._last_action, self._problems = {}, {}, {}
        self._answers, self._answer_text = {}, {}
        self._steps = self._invalid = 0
        self._outcome = None
        self._truncated = False
        return {a: Step(self._view_text(a), 0.0, info={"invalid_action": False}) for a in self.possible_agents}

    async def step(self, actions: Mapping[str, str]) -> dict[str, Step]:
        self._check_actions(actions)
        self._steps += 1
        invalid: dict[str, bool] = {}
        if self.round <= self.rounds:
            inbox: dict[str, list[Received]] = {a: [] for a in self.agents}
            self._problems = {}
            for agent in self.agents:  # a stable order: the transcript is the same for the same actions
                text = actions[agent]
                self._last_action[agent] = text if isinstance(text, str) else ""
                problems = self._send(agent, self._last_action[agent], inbox)
                if problems:
                    self._problems[agent] = problems
                invalid[agent] = bool(problems)
            self._inbox = inbox
            self.round += 1
        else:
            for agent in self.agents:
                invalid[agent] = not self._record_answer(agent, actions[agent])
            self._outcome = self._check()
        self._invalid += sum(invalid.values())
        over = self._outcome is not None
        if not over and self._steps >= self._require_spec().max_turns:
            self._truncated = over = True
        steps: dict[str, Step] = {}
        for agent in self.agents:
            info: dict[str, Any] = {"invalid_action": invalid[agent]}
            if over:
                success = self._outcome.success if self._outcome else False
                info["success"] = success
                reward = 1.0 if success else 0.0
                steps[agent] = Step(self._final_text(agent), reward, self._outcome is not None, self._truncated, info)
            else:
                steps[agent] = Step(self._view_text(agent), 0.0, False, False, info)
        if over:
            self.agents = []
        return steps

    def _send(self, agent: str, text: str, inbox: dict[str, list[Received]]) -> list[str]:
        """Deliver the messages of one action; return what was wrong with it (empty when all is well)."""
        net = self._require_network()
        name = self._name_of[agent]
        if len(text) > ACTION_CHARS:
            return [f"Your reply has {len(text)} characters, over the limit of {ACTION_CHARS}; nothing was sent."]
        lines = [line.strip().strip("*`").strip() for line in text.splitlines()]
        lines = [line for line in lines if line]
        if len(lines) == 1 and _PASS_RE.fullmatch(lines[0]):
            return []
        if not lines:
            return ["Your reply was empty; reply 'Pass' to send nothing."]
        problems = []
        for line in lines:
            to: list[str] | None = None
            match = _ALL_RE.fullmatch(line)
            if match:
                body = match.group(1).strip()
            else:
                match = _TO_RE.fullmatch(line)
                if not match:
                    problems.append(f"'{_shown(line)}' is not a message ('All: <text>' or 'To <name>: <text>').")
                    continue
                body = match.group(2).strip()
                to = []
                for raw in re.split(r"\s*,\s*|\s+and\s+", match.group(1).strip()):
                    known = self._lookup_name(raw)
                    if known is None:
                        problems.append(f"There is no agent named '{_shown(raw, 30)}'; that message was dropped.")
                        to = None
                        break
                    to.append(known)
                else:
                    if to is not None and not to:
                        problems.append("A 'To' line needs a name.")
                        continue
                if to is None:
                    continue
            if not body:
                problems.append(f"'{_shown(line)}' has no text after the colon.")
                continue
            refused = self.channel.send(name, body, round=self.round, to=to)
            if refused:
                problems.append(f"Message '{_shown(body, 40)}' not sent: {refused}.")
                continue
            received = Received(name, body, to is None)
            for target in net.neighbours(name) if to is None else dict.fromkeys(to):
                inbox[self._player_of[target]].append(received)
        return problems

    def _lookup_name(self, raw: str) -> str | None:
        net = self._require_network()
        if raw in net.index:
            return raw
        lowered = raw.lower()
        for name in net.names if len(raw) < 40 else ():
            if name.lower() == lowered:
                return name
        return None

    def _record_answer(self, agent: str, text: str) -> bool:
        """Parse and store one final answer; False (no answer) when it is not a valid one."""
        net = self._require_network()
        name = self._name_of[agent]
        value = parse_answer(self.task, text) if isinstance(text, str) else None
        self._answer_text[agent] = _shown(text) if isinstance(text, str) else ""
        answer: Any = None
        if value is not None:
            if self.task == "coloring":
                number = int(value)
                answer = number if 1 <= number <= (self.colours or 0) else None
            elif self.task == "consensus":
                answer = int(value)
            elif self.task in ("leader-election", "vertex-cover"):
                answer = value == "yes"
            else:
                partner = "none" if value.lower() == "none" else self._lookup_name(value)
                answer = partner if partner == "none" or partner in net.neighbours(name) else None
        self._answers[name] = answer
        return answer is not None

    def _check(self) -> Outcome:
        net = self._require_network()
        if self.task == "coloring":
            return check_coloring(net, self._answers, self.colours or 0)
        if self.task == "leader-election":
            return check_leader(net, self._answers)
        if self.task == "consensus":
            return check_consensus(net, self._answers, self.initial)
        if self.task == "matching":
            return check_matching(net, self._answers)
        return check_vertex_cover(net, self._answers)

    def _final_text(self, agent: str) -> str:
        if self._outcome is None:
            return f"The episode was cut off at {self._steps} rounds before the final answers; the team failed."
        name = self._name_of[agent]
        answer = self._answers.get(name)
        mine = (
            f"Your answer '{self._answer_text.get(agent, '')}' was not valid ({ANSWER_FORMATS[self.task]}"
            + (", a neighbour's name or none" if self.task == "matching" else "")
            + (f", 1 to {self.colours}" if self.task == "coloring" else "")
            + "), so it counts as no answer."
            if answer is None
            else f"Your answer: {ANSWER_FORMATS[self.task].split(':')[0]}: {self._shown_answer(answer)}."
        )
        result = "The team succeeded." if self._outcome.success else "The team failed."
        return f"{mine} {result} Share of agents whose own condition holds: {self._outcome.satisfied:.0%}."

    @staticmethod
    def _shown_answer(answer: Any) -> str:
        if isinstance(answer, bool):
            return "yes" if answer else "no"
        return str(answer)

    # ------------------------------------------------------------------ state for policies and metrics

    def name_of(self, agent: str) -> str:
        """The name the player ``agent`` carries in this episode."""
        if agent not in self._name_of:
            raise EnvError(f"{agent!r} is not a player of the current episode; call reset() first")
        return self._name_of[agent]

    def player_of(self, name: str) -> str:
        """The player id behind an agent's name."""
        return self._player_of[name]

    def view(self, agent: str) -> AgentView:
        """What ``agent`` knows now: its name, neighbours, inbox and last action (see ``AgentView``)."""
        net = self._require_network()
        name = self.name_of(agent)
        return AgentView(
            task=self.task,
            name=name,
            neighbours=net.neighbours(name),
            n_agents=net.n,
            round=self.round,
            rounds=self.rounds,
            inbox=tuple(self._inbox.get(agent, ())),
            last_action=self._last_action.get(agent, ""),
            value=self.initial.get(name),
            colours=self.colours,
        )

    def answers(self) -> dict[str, Any]:
        """The final answers by name (None for a missing or invalid one); empty before the answer round."""
        return dict(self._answers)

    def metrics(self) -> dict[str, Any]:
        net = self.network
        outcome = self._outcome
        return {
            "success": bool(outcome and outcome.success),
            "score": outcome.score if outcome else 0.0,
            "satisfied": outcome.satisfied if outcome else 0.0,
            "task": self.task,
            "graph": net.family if net else None,
            "n_agents": self.n_agents,
            "n_edges": net.n_edges if net else 0,
            "diameter": net.diameter if net else 0,
            "max_degree": net.max_degree if net else 0,
            "rounds": self.rounds,
            "colours": self.colours,
            "messages": len(self.channel.messages),
            "invalid_actions": self._invalid,
            "answered": sum(1 for v in self._answers.values() if v is not None),
        }

    def scripted_policies(self) -> dict[str, MultiPolicy]:
        """``optimal``: the task's distributed algorithm (below); ``random``: random messages and answers."""
        return {"optimal": OPTIMAL[self.task], "random": random_policy}

    def _require_network(self) -> Network:
        if self.network is None:
            raise EnvError("AgentsNetEnv: step() before reset()")
        return self.network


# --------------------------------------------------------------------------- scripted distributed algorithms
#
# Each reads only ``env.view(agent)``: its own name, neighbours, private value, the messages it received in
# the previous round and its own previous action. Every algorithm repeats its state in every message, so
# that the previous round is all it needs (no memory beyond the transcript the agent itself sees).

_LAST_NAME = re.compile(r"last name I know is ([A-Za-z][A-Za-z0-9]*)")
_SMALLEST = re.compile(r"smallest value I know is (\d+)")
_TRY = re.compile(r"I try colour (\d+)")
_FINAL = re.compile(r"My colour is (\d+), final")
_PICK = re.compile(r"I pick ([A-Za-z][A-Za-z0-9]*) \(my number is (\d+)\)")
_FREE = re.compile(r"I am free \(my number is (\d+)\)")
_PAIRED = re.compile(r"I am paired with ([A-Za-z][A-Za-z0-9]*)")
_SINGLE = re.compile(r"I stay single")
_UNDECIDED = re.compile(r"I am undecided \(my number is (\d+)\)")
_OUT = re.compile(r"I am out of the cover")
_IN = re.compile(r"I am in the cover")


def _view(env: MultiAgentEnv, agent: str) -> AgentView:
    if not isinstance(env, AgentsNetEnv):
        raise EnvError(f"an AgentsNet policy needs an AgentsNetEnv, not {type(env).__name__}")
    return env.view(agent)


def leader_flood_max(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Flood the alphabetically last name: after ``diameter`` rounds everyone knows it; its owner leads."""
    v = _view(env, agent)
    known = max([v.name, *_LAST_NAME.findall(v.last_action), *(n for m in v.inbox for n in _LAST_NAME.findall(m.text))])
    if v.answering:
        return "leader: yes" if known == v.name else "leader: no"
    return f"All: The alphabetically last name I know is {known}."


def consensus_flood_min(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Flood the smallest starting value; after ``diameter`` rounds everyone knows the same one."""
    v = _view(env, agent)
    heard = [int(x) for x in _SMALLEST.findall(v.last_action)] + [
        int(x) for m in v.inbox for x in _SMALLEST.findall(m.text)
    ]
    known = min([v.value if v.value is not None else 0, *heard])
    return f"value: {known}" if v.answering else f"All: The smallest value I know is {known}."


def coloring_trials(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Randomised trials with priority by name: an agent tries a random colour that no neighbour holds and
    no later-named neighbour tried; it keeps its try when no later-named neighbour tried the same colour
    and no neighbour holds it. Kept colours are repeated every round."""
    v = _view(env, agent)
    k = v.colours or 1
    finals: dict[str, int] = {}
    tries: dict[str, int] = {}
    for m in v.inbox:
        if match := _FINAL.search(m.text):
            finals[m.sender] = int(match.group(1))
        elif match := _TRY.search(m.text):
            tries[m.sender] = int(match.group(1))
    taken = set(finals.values())
    colour = None
    if match := _FINAL.search(v.last_action):
        colour = int(match.group(1))
    elif match := _TRY.search(v.last_action):
        tried = int(match.group(1))
        if tried not in taken and not any(c == tried and s > v.name for s, c in tries.items()):
            colour = tried
    if colour is not None:
        return f"colour: {colour}" if v.answering else f"All: My colour is {colour}, final."
    blocked = taken | {c for s, c in tries.items() if s > v.name}
    free = [c for c in range(1, k + 1) if c not in blocked] or [c for c in range(1, k + 1) if c not in taken]
    choice = rng.choice(free or list(range(1, k + 1)))
    return f"colour: {choice}" if v.answering else f"All: I try colour {choice}."


def matching_mutual_picks(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Each free agent draws a number every round and picks the free neighbour whose number, added to its own,
    is the largest (both ends of an edge see the same sum, so the locally heaviest edges are picked from both
    ends); two agents who pick each other are paired. An agent whose neighbours are all paired stays single."""
    v = _view(env, agent)
    picks: dict[str, str] = {}
    numbers: dict[str, int] = {}
    for m in v.inbox:
        if match := _PICK.search(m.text):
            picks[m.sender] = match.group(1)
            numbers[m.sender] = int(match.group(2))
        elif match := _FREE.search(m.text):
            numbers[m.sender] = int(match.group(1))
    paired = _PAIRED.search(v.last_action)
    picked = _PICK.search(v.last_action)
    partner = paired.group(1) if paired else None
    if picked and picks.get(picked.group(1)) == v.name:
        partner = picked.group(1)
    if partner is not None:
        return f"partner: {partner}" if v.answering else f"All: I am paired with {partner}."
    single = bool(_SINGLE.search(v.last_action)) or (v.round > 1 and not numbers)
    if v.answering or single:
        return "partner: none" if v.answering else "All: I stay single: all my neighbours are paired."
    number = rng.randrange(1000)
    own = _PICK.search(v.last_action) or _FREE.search(v.last_action)
    if not numbers or own is None:
        return f"All: I am free (my number is {number})."
    mine = int(own.group(own.re.groups))

    def weight(s: str) -> tuple[int, str, str]:
        return (numbers[s] + mine, max(s, v.name), min(s, v.name))

    return f"All: I pick {max(numbers, key=weight)} (my number is {number})."


def cover_independent_set(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """Luby's maximal independent set; its complement is a minimal vertex cover. An undecided agent draws a
    number every round; one that beat every undecided neighbour's last number leaves the cover, and a
    neighbour of an agent out of the cover joins it."""
    v = _view(env, agent)
    rivals: dict[str, int] = {}
    neighbour_out = False
    for m in v.inbox:
        if match := _UNDECIDED.search(m.text):
            rivals[m.sender] = int(match.group(1))
        neighbour_out = neighbour_out or bool(_OUT.search(m.text))
    status = None
    mine = _UNDECIDED.search(v.last_action)
    if _OUT.search(v.last_action):
        status = "out"
    elif _IN.search(v.last_action) or neighbour_out:
        status = "in"
    elif mine and all((int(mine.group(1)), v.name) > (n, s) for s, n in rivals.items()):
        status = "out"
    if v.answering:
        return "in cover: no" if status == "out" else "in cover: yes"
    if status == "out":
        return "All: I am out of the cover (final)."
    if status == "in":
        return "All: I am in the cover (final)."
    return f"All: I am undecided (my number is {rng.randrange(1000)})."


def random_policy(env: MultiAgentEnv, agent: str, rng: random.Random) -> str:
    """A baseline: random chatter to random neighbours, then a random answer of the right form."""
    v = _view(env, agent)
    if not v.answering:
        if rng.random() < 0.2:
            return "Pass"
        if rng.random() < 0.5:
            return f"All: hello, I am {v.name}"
        return f"To {rng.choice(v.neighbours)}: my lucky number is {rng.randrange(100)}"
    if v.task == "coloring":
        return f"colour: {rng.randint(1, v.colours or 1)}"
    if v.task == "consensus":
        return f"value: {rng.choice([v.value or 0, rng.randrange(2)])}"
    if v.task == "matching":
        return f"partner: {rng.choice([*v.neighbours, 'none'])}"
    key = "leader" if v.task == "leader-election" else "in cover"
    return f"{key}: {rng.choice(['yes', 'no'])}"


OPTIMAL: dict[str, MultiPolicy] = {
    "coloring": coloring_trials,
    "leader-election": leader_flood_max,
    "consensus": consensus_flood_min,
    "matching": matching_mutual_picks,
    "vertex-cover": cover_independent_set,
}

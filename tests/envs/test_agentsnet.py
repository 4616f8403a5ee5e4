"""Tests of the AgentsNet environments (agentsnet-*-v0), their graphs, checkers and scripted algorithms."""

from __future__ import annotations

import itertools
import random

import networkx as nx
import pytest

import palaestra
from palaestra.core.errors import EnvError, SpecError
from palaestra.envs import graphs
from palaestra.envs.agentsnet import (
    TASKS,
    AgentsNetEnv,
    Network,
    check_coloring,
    check_consensus,
    check_leader,
    check_matching,
    check_vertex_cover,
    default_rounds,
    draw_names,
    name_pool,
    parse_answer,
)
from palaestra.testing import check_multi_env

IDS = [f"agentsnet-{task}-v0" for task in TASKS]

# A hand-built network: the triangle Ann-Bob-Cat with Dan hanging off Cat, and Eve off Dan.
#   Ann - Bob
#     \   /
#      Cat - Dan - Eve
NAMES = ["Ann", "Bob", "Cat", "Dan", "Eve"]
EDGES = [("Ann", "Bob"), ("Ann", "Cat"), ("Bob", "Cat"), ("Cat", "Dan"), ("Dan", "Eve")]
NET = Network.from_edges(NAMES, EDGES)


def make(task: str, **kwargs: object) -> AgentsNetEnv:
    env = palaestra.make_multi(f"agentsnet-{task}-v0", **kwargs)
    assert isinstance(env, AgentsNetEnv)
    return env


async def start(task: str, network: Network = NET, **options: object) -> AgentsNetEnv:
    env = make(task, n_agents=network.n)
    await env.reset(seed=0, options={"network": network, **options})
    return env


def by_name(env: AgentsNetEnv, texts: dict[str, str]) -> dict[str, str]:
    """Actions keyed by player id from actions keyed by name."""
    return {env.player_of(name): text for name, text in texts.items()}


async def answer(env: AgentsNetEnv, texts: dict[str, str]) -> dict[str, palaestra.Step]:
    """Skip the message rounds (everyone passes), then give the answers."""
    while env.round <= env.rounds:
        await env.step(dict.fromkeys(env.acting(), "Pass"))
    return await env.step(by_name(env, texts))


# --------------------------------------------------------------------------- graphs


def test_hand_built_network_has_the_diameter_computed_by_hand() -> None:
    # The longest shortest paths: Ann or Bob to Eve, via Cat and Dan: 3 hops.
    assert NET.diameter == 3
    assert NET.n_edges == 5 and NET.max_degree == 3
    assert NET.neighbours("Cat") == ("Ann", "Bob", "Dan")


def test_rounds_formula_on_the_hand_built_network() -> None:
    # 2 x 3 + 1 = 7 for consensus and leader election; the paper's 5 rounds for 5..8 nodes otherwise;
    # matching at least 4 + 2 * ceil(log2 5) = 10.
    assert default_rounds("consensus", 5, 3) == 7
    assert default_rounds("leader-election", 5, 3) == 7
    assert default_rounds("coloring", 5, 3) == 5
    assert default_rounds("vertex-cover", 5, 3) == 5
    assert default_rounds("matching", 5, 3) == 10
    assert default_rounds("coloring", 17, 3) == 7  # above 16 nodes: 2 x diameter + 1
    assert default_rounds("coloring", 4, 1) == 4


async def test_env_uses_the_rounds_formula_and_the_override() -> None:
    env = await start("leader-election")
    assert env.rounds == 7 and env.metrics()["rounds"] == 7 and env.metrics()["diameter"] == 3
    env = make("leader-election", n_agents=5, rounds=2)
    await env.reset(seed=0, options={"network": NET})
    assert env.rounds == 2


@pytest.mark.parametrize("family", graphs.FAMILIES)
@pytest.mark.parametrize("n", [4, 5, 9, 30, 120])
def test_generated_graphs_are_connected_and_have_the_exact_diameter(family: str, n: int) -> None:
    adj = graphs.generate(family, n, random.Random(n))
    assert len(adj) == n and graphs.is_connected(adj)
    assert all(u in adj[v] for u in range(n) for v in adj[u])  # undirected, no self-loops
    assert all(u not in adj[u] for u in range(n))
    g = nx.Graph((u, v) for u in range(n) for v in adj[u])
    assert graphs.diameter(adj) == nx.diameter(g) == graphs._diameter_ifub(adj)


def test_family_parameters_follow_agentsnet() -> None:
    ws = graphs.generate("small-world", 100, random.Random(1))
    ba = graphs.generate("preferential-attachment", 100, random.Random(1))
    assert sum(map(len, ws)) // 2 == 200  # Watts-Strogatz keeps n * k / 2 edges, k = 4
    assert sum(map(len, ba)) // 2 == 2 * (100 - 2)  # Barabasi-Albert, m = 2


def _brute_delaunay(points: list[tuple[float, float]]) -> set[tuple[int, int]]:
    edges = set()
    for a, b, c in itertools.combinations(range(len(points)), 3):
        if graphs._orient(points[a], points[b], points[c]) < 0:
            b, c = c, b
        others = (points[d] for d in range(len(points)) if d not in (a, b, c))
        if not any(graphs._in_circle(points[a], points[b], points[c], p) for p in others):
            edges |= {(min(a, b), max(a, b)), (min(b, c), max(b, c)), (min(a, c), max(a, c))}
    return edges


@pytest.mark.parametrize("seed", range(6))
def test_delaunay_matches_the_empty_circle_definition(seed: int) -> None:
    rng = random.Random(seed)
    points = [(rng.random(), rng.random()) for _ in range(rng.randint(4, 25))]
    assert graphs.delaunay_edges(points) == _brute_delaunay(points)


def test_delaunay_of_a_square_with_a_centre_point() -> None:
    points = [(0.0, 0.0), (1.0, 0.1), (1.1, 1.0), (0.1, 0.9), (0.5, 0.5)]
    assert graphs.delaunay_edges(points) == {(0, 1), (1, 2), (2, 3), (0, 3), (0, 4), (1, 4), (2, 4), (3, 4)}


def test_bad_graph_arguments_raise_spec_errors() -> None:
    with pytest.raises(SpecError, match="family"):
        graphs.generate("grid", 10, random.Random(0))
    with pytest.raises(SpecError, match="at least 4"):
        graphs.generate("delaunay", 3, random.Random(0))
    with pytest.raises(SpecError, match="connected"):
        Network.from_edges(["Ann", "Bob", "Cat"], [("Ann", "Bob")])
    with pytest.raises(SpecError, match="n_agents"):
        make("consensus", n_agents=2)
    with pytest.raises(SpecError, match="task"):
        AgentsNetEnv("sorting")


def test_names_are_distinct_and_numbered_past_the_pool() -> None:
    pool = name_pool()
    assert len(pool) == 240 and len({n.lower() for n in pool}) == 240
    names = draw_names(1000, random.Random(0))
    assert len(set(names)) == 1000 and all(n.isalnum() for n in names)
    assert any(n[-1].isdigit() for n in names)


# --------------------------------------------------------------------------- checkers


def test_coloring_checker() -> None:
    proper = {"Ann": 1, "Bob": 2, "Cat": 3, "Dan": 1, "Eve": 2}
    assert check_coloring(NET, proper, 3).success
    improper = {**proper, "Dan": 3}  # Dan shares colour 3 with his neighbour Cat
    outcome = check_coloring(NET, improper, 3)
    assert not outcome.success and outcome.score == 4 / 5 and outcome.satisfied == 3 / 5
    assert not check_coloring(NET, proper, 2).success  # colour 3 is out of range with 2 colours
    missing = {**proper, "Eve": None}
    outcome = check_coloring(NET, missing, 3)
    assert not outcome.success and outcome.score == 0.0  # the paper: any invalid answer scores 0


def test_leader_checker() -> None:
    one = {"Ann": False, "Bob": False, "Cat": True, "Dan": False, "Eve": False}
    assert check_leader(NET, one).success
    two = {**one, "Eve": True}
    outcome = check_leader(NET, two)
    assert not outcome.success and outcome.satisfied == 4 / 5
    none = dict.fromkeys(NAMES, False)
    assert not check_leader(NET, none).success and check_leader(NET, none).satisfied == 4 / 5
    assert not check_leader(NET, {**one, "Ann": None}).success


def test_consensus_checker() -> None:
    initial = {"Ann": 0, "Bob": 1, "Cat": 1, "Dan": 1, "Eve": 1}
    assert check_consensus(NET, dict.fromkeys(NAMES, 0), initial).success  # Ann started with 0
    assert not check_consensus(NET, dict.fromkeys(NAMES, 1), dict.fromkeys(NAMES, 0)).success  # nobody had 1
    split = {**dict.fromkeys(NAMES, 1), "Eve": 0}
    outcome = check_consensus(NET, split, initial)
    assert not outcome.success and outcome.satisfied == 4 / 5


def test_matching_checker() -> None:
    maximal = {"Ann": "Bob", "Bob": "Ann", "Cat": "Dan", "Dan": "Cat", "Eve": "none"}
    assert check_matching(NET, maximal).success
    # Ann-Bob paired, Cat, Dan and Eve alone: Cat-Dan (and Dan-Eve) could still pair, so not maximal.
    not_maximal = {"Ann": "Bob", "Bob": "Ann", "Cat": "none", "Dan": "none", "Eve": "none"}
    outcome = check_matching(NET, not_maximal)
    assert not outcome.success and outcome.satisfied == 2 / 5
    inconsistent = {**maximal, "Eve": "Dan"}  # Dan names Cat, not Eve
    assert not check_matching(NET, inconsistent).success
    assert not check_matching(NET, {**maximal, "Eve": "Ann"}).success  # not a neighbour


def test_vertex_cover_checker() -> None:
    minimal = {"Ann": True, "Bob": True, "Cat": False, "Dan": True, "Eve": False}
    assert check_vertex_cover(NET, minimal).success
    everyone = dict.fromkeys(NAMES, True)  # a cover, but no member has a neighbour outside it
    outcome = check_vertex_cover(NET, everyone)
    assert not outcome.success and outcome.score == 0.0
    not_minimal = {**minimal, "Eve": True}  # Dan covers Dan-Eve already: Eve could leave
    outcome = check_vertex_cover(NET, not_minimal)
    assert not outcome.success and outcome.score == pytest.approx(3 / 4)
    uncovered = {**minimal, "Dan": False}  # Dan-Eve and Cat-Dan have no coordinator
    outcome = check_vertex_cover(NET, uncovered)
    assert not outcome.success and outcome.score == pytest.approx(3 / 5)


@pytest.mark.parametrize(
    ("task", "text", "value"),
    [
        ("coloring", "3", "3"),
        ("coloring", "Colour: 3.", "3"),
        ("coloring", "**color: 12**", "12"),
        ("coloring", "Final answer: group 2", "2"),
        ("leader-election", "leader: Yes", "yes"),
        ("leader-election", "NO", "no"),
        ("consensus", "value: 1", "1"),
        ("consensus", "Answer: 0", "0"),
        ("matching", "partner: Bob", "Bob"),
        ("matching", "Partner: none", "none"),
        ("matching", "paired with Eve", "Eve"),
        ("vertex-cover", "in cover: yes", "yes"),
        ("vertex-cover", "coordinator: no", "no"),
    ],
)
def test_parse_answer_accepts_the_documented_forms(task: str, text: str, value: str) -> None:
    assert parse_answer(task, text) == value


@pytest.mark.parametrize(
    ("task", "text"),
    [
        ("coloring", ""),
        ("coloring", "red"),
        ("coloring", "3 or 4"),
        ("leader-election", "maybe"),
        ("leader-election", "yes no"),
        ("consensus", "-1"),
        ("matching", "Bob and Eve"),
        ("vertex-cover", "x" * 10_000),
        ("vertex-cover", "是"),
    ],
)
def test_parse_answer_rejects_everything_else(task: str, text: str) -> None:
    assert parse_answer(task, text) is None


# --------------------------------------------------------------------------- messages


async def test_first_observation_names_the_agent_its_neighbours_and_the_rounds() -> None:
    env = make("consensus", n_agents=5)
    steps = await env.reset(seed=0, options={"network": NET, "values": dict(zip(NAMES, [0, 1, 1, 0, 1], strict=True))})
    assert steps[env.player_of("Cat")].observation == (
        "You are Cat. Your neighbours are Ann, Bob, Dan.\n"
        "Your private starting value is 1.\n"
        "There are 7 message rounds, then you give your final answer. No messages yet.\n"
        "Round 1 of 7 (6 more after this one): send your messages."
    )
    assert "agents placed on the nodes of a network" in env.instructions("agent_0")


async def test_broadcast_reaches_only_neighbours_and_private_only_the_recipient() -> None:
    env = await start("coloring")
    actions = dict.fromkeys(env.acting(), "Pass")
    actions.update(by_name(env, {"Cat": "All: hello neighbours", "Ann": "To Bob: only for Bob"}))
    steps = await env.step(actions)
    assert not any(s.info["invalid_action"] for s in steps.values())
    seen = {name: steps[env.player_of(name)].observation for name in NAMES}
    for name in ("Ann", "Bob", "Dan"):
        assert "Cat: hello neighbours" in seen[name]
    assert "hello neighbours" not in seen["Eve"]  # Eve is not Cat's neighbour
    assert "Ann (to you): only for Bob" in seen["Bob"]
    assert all("only for Bob" not in seen[n] for n in ("Cat", "Dan", "Eve"))
    assert seen["Eve"].startswith("You received no messages in round 1.")
    assert env.metrics()["messages"] == 2


async def test_message_to_a_non_neighbour_is_dropped_and_flagged() -> None:
    env = await start("coloring")
    actions = dict.fromkeys(env.acting(), "Pass")
    actions[env.player_of("Ann")] = "All: hi\nTo Eve: secret"
    steps = await env.step(actions)
    ann = steps[env.player_of("Ann")]
    assert ann.info["invalid_action"] is True and ann.reward == 0.0 and not ann.done
    assert "cannot message Eve: you may only message your neighbours (Bob, Cat)" in ann.observation
    eve = steps[env.player_of("Eve")].observation
    assert eve.startswith("You received no messages in round 1.") and "secret" not in eve
    assert "Ann: hi" in steps[env.player_of("Bob")].observation  # the valid line still went out
    assert env.metrics()["invalid_actions"] == 1 and env.metrics()["messages"] == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "Your reply was empty"),
        ("hello everyone", "is not a message"),
        ("To Zed: hi", "no agent named 'Zed'"),
        ("All:", "has no text after the colon"),
        ("All: " + "x" * 600, "over the limit of 500"),
        ("x" * 9000, "nothing was sent"),
        ("<script>alert(1)</script>", "is not a message"),
    ],
)
async def test_garbage_messages_are_invalid_and_explained(text: str, problem: str) -> None:
    env = await start("vertex-cover")
    actions = dict.fromkeys(env.acting(), "Pass")
    actions[env.player_of("Dan")] = text
    steps = await env.step(actions)
    dan = steps[env.player_of("Dan")]
    assert dan.info["invalid_action"] is True and problem in dan.observation
    assert env.metrics()["messages"] == 0
    assert not any(s.info["invalid_action"] for a, s in steps.items() if a != env.player_of("Dan"))


async def test_names_are_matched_ignoring_case_and_several_recipients_allowed() -> None:
    env = await start("matching")
    actions = dict.fromkeys(env.acting(), "Pass")
    actions[env.player_of("Cat")] = "to ann, BOB: pair with me?"
    steps = await env.step(actions)
    assert not steps[env.player_of("Cat")].info["invalid_action"]
    assert "Cat (to you): pair with me?" in steps[env.player_of("Ann")].observation
    assert "pair with me?" in steps[env.player_of("Bob")].observation
    assert "pair with me?" not in steps[env.player_of("Dan")].observation


async def test_scripted_inboxes_only_ever_hold_neighbours_messages() -> None:
    env = make("leader-election", graph="preferential-attachment", n_agents=30)
    await env.reset(seed=4)
    net = env.network
    assert net is not None
    policy, rng = env.scripted_policies()["optimal"], random.Random(0)
    while env.agents:
        for agent in env.acting():
            view = env.view(agent)
            assert {m.sender for m in view.inbox} <= set(net.neighbours(view.name))
        await env.step({a: policy(env, a, rng) for a in env.acting()})
    for message in env.channel.messages:  # every broadcast went to neighbours only, by the channel's rule
        audience = {n for n in net.names if n != message.sender and env.channel.visible_to(n, message)}
        assert audience == set(net.neighbours(message.sender))


# --------------------------------------------------------------------------- answers and rewards


async def test_success_gives_every_agent_reward_one() -> None:
    env = await start("coloring")
    steps = await answer(env, {"Ann": "colour: 1", "Bob": "colour: 2", "Cat": "3", "Dan": "1", "Eve": "2"})
    assert all(s.reward == 1.0 and s.terminated and not s.truncated for s in steps.values())
    assert all(s.info["success"] is True and s.info["invalid_action"] is False for s in steps.values())
    assert "The team succeeded." in steps[env.player_of("Ann")].observation
    assert env.agents == [] and env.metrics()["success"] is True and env.metrics()["score"] == 1.0
    with pytest.raises(EnvError):
        await env.step({"agent_0": "1"})


async def test_an_invalid_answer_counts_as_none_and_fails_the_team() -> None:
    env = await start("coloring")
    steps = await answer(env, {"Ann": "colour: 1", "Bob": "colour: 2", "Cat": "3", "Dan": "1", "Eve": "colour: 9"})
    eve = steps[env.player_of("Eve")]
    assert eve.info["invalid_action"] is True and "not valid" in eve.observation
    assert all(s.reward == 0.0 and s.info["success"] is False for s in steps.values())
    assert env.answers()["Eve"] is None and env.metrics()["answered"] == 4


async def test_matching_answer_naming_a_non_neighbour_is_invalid() -> None:
    env = await start("matching")
    steps = await answer(
        env, {"Ann": "partner: Bob", "Bob": "partner: Ann", "Cat": "partner: Dan", "Dan": "Cat", "Eve": "partner: Ann"}
    )
    assert steps[env.player_of("Eve")].info["invalid_action"] is True
    assert env.metrics()["success"] is False


async def test_leader_and_consensus_answers() -> None:
    env = await start("leader-election")
    await answer(env, {"Ann": "leader: no", "Bob": "no", "Cat": "no", "Dan": "leader: yes", "Eve": "no"})
    assert env.metrics()["success"] is True
    env = await start("consensus", values=dict.fromkeys(NAMES, 1))
    await answer(env, dict.fromkeys(NAMES, "value: 0"))  # nobody started with 0
    assert env.metrics()["success"] is False and env.metrics()["satisfied"] == 0.0


async def test_max_turns_cuts_the_episode_off_as_a_failure() -> None:
    env = make("leader-election", n_agents=5, max_turns=3)
    await env.reset(seed=0, options={"network": NET})
    steps = {}
    for _ in range(3):
        steps = await env.step(dict.fromkeys(env.acting(), "Pass"))
    assert all(s.truncated and not s.terminated and s.reward == 0.0 for s in steps.values())
    assert env.agents == [] and env.metrics()["success"] is False


async def test_step_before_reset_and_wrong_players_raise() -> None:
    env = make("consensus")
    with pytest.raises(EnvError, match="reset"):
        await env.step({"agent_0": "Pass"})
    await env.reset(seed=0)
    with pytest.raises(EnvError, match="one action for each acting player"):
        await env.step({"agent_0": "Pass"})


# --------------------------------------------------------------------------- scripted algorithms


async def play(env: AgentsNetEnv, seed: int, policy: str = "optimal") -> dict[str, object]:
    await env.reset(seed=seed)
    chosen, rng = env.scripted_policies()[policy], random.Random(seed)
    while env.agents:
        await env.step({a: chosen(env, a, rng) for a in env.acting()})
    return env.metrics()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", graphs.FAMILIES)
async def test_optimal_solves_every_size_from_4_to_200(task: str, family: str) -> None:
    for n in (4, 8, 16, 50, 100, 200):
        env = make(task, graph=family, n_agents=n)
        metrics = await play(env, seed=n)
        assert metrics["success"] is True, (task, family, n, metrics)
        assert metrics["invalid_actions"] == 0 and metrics["answered"] == n
        assert metrics["graph"] == family and metrics["n_agents"] == n


@pytest.mark.parametrize("task", TASKS)
async def test_random_policy_fails_on_16_agents(task: str) -> None:
    wins = [(await play(make(task, n_agents=16), seed, "random"))["success"] for seed in range(5)]
    assert wins == [False] * 5


async def test_optimal_messages_read_naturally() -> None:
    env = make("leader-election", n_agents=5)
    await env.reset(seed=0, options={"network": NET})
    policy = env.scripted_policies()["optimal"]
    assert policy(env, env.player_of("Eve"), random.Random(0)) == "All: The alphabetically last name I know is Eve."


# --------------------------------------------------------------------------- determinism, copies, conformance


async def test_same_seed_same_episode_and_other_seeds_differ() -> None:
    a, b = make("coloring", n_agents=12), make("coloring", n_agents=12)
    first_a, first_b = await a.reset(seed=7), await b.reset(seed=7)
    assert {k: s.observation for k, s in first_a.items()} == {k: s.observation for k, s in first_b.items()}
    assert a.network == b.network
    assert await play(a, 7) == await play(b, 7)
    await b.reset(seed=8)
    assert a.network != b.network


async def test_random_graph_draws_every_family() -> None:
    families = set()
    for seed in range(12):
        env = make("consensus", graph="random", n_agents=6)
        await env.reset(seed=seed)
        families.add(env.metrics()["graph"])
    assert families == set(graphs.FAMILIES)


async def test_copy_is_independent() -> None:
    env = make("vertex-cover", n_agents=10)
    await env.reset(seed=3)
    policy, rng = env.scripted_policies()["optimal"], random.Random(0)
    await env.step({a: policy(env, a, rng) for a in env.acting()})
    clone = env.copy()
    actions = {a: policy(env, a, random.Random(1)) for a in env.acting()}
    steps = await clone.step(dict(actions))
    assert env.round == 2 and clone.round == 3
    assert len(env.channel.messages) == 10 and len(clone.channel.messages) == 20
    again = await env.step(dict(actions))
    assert {k: s.observation for k, s in again.items()} == {k: s.observation for k, s in steps.items()}


@pytest.mark.parametrize("env_id", IDS)
def test_check_multi_env(env_id: str) -> None:
    check_multi_env(env_id, seeds=(0, 11_000))

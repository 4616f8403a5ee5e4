"""Agent designs: JSON and hashes, refusals, every pattern playing real maze episodes with a scripted model,
the lookahead of ``tree`` checked by hand, design files through ``make_agent`` and ``palaestra eval``, teams
and generated code as designs, the design space, and the docs' examples."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from palaestra.agents import PromptAgent, make_agent, needs_model
from palaestra.cli import main
from palaestra.core.errors import SpecError
from palaestra.core.types import ChatRequest
from palaestra.envs import make
from palaestra.envs.maze import MazeEnv
from palaestra.models.scripted import ScriptedModel
from palaestra.runner.episode import run_episode
from palaestra.search.design import (
    PATTERNS,
    Design,
    DesignSpace,
    Memory,
    Shots,
    load_design,
    save_design,
)
from palaestra.search.patterns import PLAN_ASK, REFLECT_ASK, DesignAgent, failed
from palaestra.search.space import Candidate, SearchSpace, stable_hash

DOC = Path(__file__).resolve().parents[2] / "docs" / "design.md"
RICH = Design(
    pattern="tree",
    k=4,
    depth=2,
    memory=Memory(history=3, persist=False),
    instructions="Prefer moves toward the goal's column first.",
    shots=Shots(count=1, source="scripted:noisy"),
    temperature=0.7,
    top_p=0.9,
    max_tokens=24,
    template="compact",
)


@pytest.fixture(autouse=True)
def designs_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "designs"
    monkeypatch.setenv("PALAESTRA_DESIGNS", str(folder))
    return folder


def maze(max_turns: int = 4, layout: str = "zigzag") -> MazeEnv:
    env = make("maze-fo-v0", max_turns=max_turns, layout=layout)
    assert isinstance(env, MazeEnv)
    return env


def actions_model(actions: list[str]) -> ScriptedModel:
    """A scripted model answering plans and reflections with fixed text and action requests with
    ``actions`` in turn (cycling)."""
    turns = itertools.cycle(actions)

    def reply(request: ChatRequest) -> str:
        last = request.messages[-1].content
        if REFLECT_ASK in last:
            return "The move was not valid. I will answer with one of the four moves."
        if PLAN_ASK in last:
            return "Go right along the row, then down."
        return next(turns)

    return ScriptedModel(reply, spec="scripted:design-test")


# --------------------------------------------------------------------------- data, JSON, hash


def test_round_trip_and_hash() -> None:
    data = RICH.to_dict()
    assert Design.from_dict(json.loads(json.dumps(data))) == RICH
    assert RICH.hash == stable_hash(data) and re.fullmatch(r"d-[0-9a-f]{12}", RICH.hash)
    assert RICH.agent_spec() == f"design:{RICH.hash}"
    shuffled = dict(reversed(list(data.items())))
    shuffled["memory"] = {"persist": False, "history": 3}
    assert Design.from_dict(shuffled).hash == RICH.hash
    # 0 and 0.0 are one temperature, one hash; missing fields take their defaults
    assert Design.from_dict({"temperature": 0}).hash == Design().hash == Design.from_dict({}).hash
    assert Design(temperature=0.3).hash != Design().hash
    assert isinstance(RICH, Candidate) and isinstance(DesignSpace(), SearchSpace)


def test_hash_is_the_same_in_another_process() -> None:
    code = (
        "import json, sys; from palaestra.search.design import Design; "
        "print(Design.from_dict(json.loads(sys.argv[1])).hash)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(RICH.to_dict())], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == RICH.hash


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"pattern": "zigzag"}, "'pattern'.*direct, cot, react"),
        ({"k": 3}, "'k'"),
        ({"pattern": "self-consistency", "k": 1}, "'k'"),
        ({"pattern": "cot", "depth": 2}, "'depth'"),
        ({"pattern": "tree", "k": 2, "depth": 9}, "'depth'.*1 to 8"),
        ({"colour": "red"}, "colour.*pattern, k, depth"),
        ({"memory": {"turns": 2}}, "memory.turns.*history, persist"),
        ({"memory": {"history": -1}}, "'memory.history'"),
        ({"memory": {"persist": "yes"}}, "'memory.persist'"),
        ({"shots": {"source": "web:cats"}}, "'shots.source'.*scripted:<policy>"),
        ({"shots": {"count": 2.5}}, "'shots.count'"),
        ({"temperature": 3}, "'temperature'.*0 to 2"),
        ({"temperature": True}, "'temperature'"),
        ({"top_p": 0}, "'top_p'"),
        ({"max_tokens": 0}, "'max_tokens'"),
        ({"instructions": "  "}, "'instructions'"),
        ({"template": "fancy"}, "'template'.*compact.*default.*jinja"),
        ({"team": "dylan:1"}, "'team'.*members"),
        ({"team": "dylan:3/prompt"}, "'team'.*member part"),
        ({"team": "swarm:3"}, "'team'.*topology"),
        ({"team": "dylan:3", "pattern": "cot"}, "'pattern'.*team"),
        ({"team": "dylan:3", "shots": {"count": 2, "source": "scripted:noisy"}}, "'shots.source'"),
        ({"code": "def act(o, h, i, llm): return 'x'", "temperature": 0.5}, "'temperature'.*code design"),
        ({"code": ""}, "'code'"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_design_data_is_refused_with_the_field_named(data: Any, named: str) -> None:
    with pytest.raises(SpecError, match=named):
        Design.from_dict(data)


# --------------------------------------------------------------------------- every pattern plays


@pytest.mark.parametrize(
    ("design", "replies", "calls_per_turn"),
    [
        (Design(), ["move right"], [1, 1, 1, 1]),
        (Design(pattern="cot"), ["I am left of the goal.\nAction: move right"], [1, 1, 1, 1]),
        (Design(pattern="react"), ["Thought: the goal is to the right.\nAction: move right"], [1, 1, 1, 1]),
        # invalid, then valid: a reflection (one more call) after each invalid step, none after a valid one
        (Design(pattern="reflect"), ["fly away", "move left"], [1, 2, 1, 2]),
        (Design(pattern="plan"), ["move right"], [2, 1, 1, 1]),
        (Design(pattern="self-consistency", k=3, temperature=0.7), ["Action: move right"], [3, 3, 3, 3]),
        # all three proposals are the same action: one candidate, one rollout call per extra depth step, except
        # on the last turn, where the copy's episode ends (max_turns) after the first lookahead step
        (Design(pattern="tree", k=3, depth=2), ["move right"], [4, 4, 4, 3]),
    ],
    ids=lambda v: v.pattern if isinstance(v, Design) else None,
)
async def test_every_pattern_plays_a_maze_episode(
    design: Design, replies: list[str], calls_per_turn: list[int]
) -> None:
    assert {d.pattern for d in (design,)} <= set(PATTERNS)
    env = maze(layout="zigzag")
    model = actions_model(replies)
    agent = make_agent(save_and_spec(design), env, model, seed=1)
    episode = await run_episode(env, agent, seed=1)  # zigzag from seed 1: 4 moves never reach the goal
    assert episode.status == "ok", episode.error
    assert [len(t.action.calls) for t in episode.turns] == calls_per_turn
    assert model.calls == sum(calls_per_turn)
    for turn in episode.turns:
        assert turn.action.meta["design"] == design.hash and turn.action.meta["pattern"] == design.pattern
        json.dumps(turn.action.meta)  # JSON values only
        assert turn.action.raw == turn.action.calls[-1].text  # the call that gave the action comes last
    await env.close()


def save_and_spec(design: Design) -> str:
    save_design(design)
    return design.agent_spec()


async def test_default_design_sends_the_prompt_agents_requests() -> None:
    seen = []
    for agent_of in (lambda m: PromptAgent(m), lambda m: DesignAgent(Design(), m)):
        env = maze(max_turns=3)
        model = ScriptedModel(["move up", "go", "move down"])
        episode = await run_episode(env, agent_of(model), seed=5)
        seen.append((model.requests, episode.total_return))
    assert seen[0] == seen[1] and len(seen[0][0]) == 3


async def test_cot_and_react_keep_or_drop_their_thoughts() -> None:
    for pattern, kept in (("cot", False), ("react", True)):
        env = maze(max_turns=2)
        model = ScriptedModel(["Thought: right is open.\nAction: move right"])
        episode = await run_episode(env, DesignAgent(Design(pattern=pattern), model), seed=1)
        assert episode.turns[0].action.text == "move right"
        assert episode.turns[0].action.meta["thought"] == "right is open."
        second = model.requests[1]
        assert second.sampling.max_tokens == env.action_tokens + 96
        assistant = [m.content for m in second.messages if m.role == "assistant"][-1]
        assert ("Thought:" in assistant) is kept
        assert "Action:" in second.messages[0].content  # the pattern's guidance is in the system message


async def test_reflections_and_plans_stay_in_the_context() -> None:
    env = maze(max_turns=4)
    model = actions_model(["fly away", "move left"])
    episode = await run_episode(env, DesignAgent(Design(pattern="reflect"), model), seed=1)
    assert [t.action.meta["reflection"] is not None for t in episode.turns] == [False, True, False, True]
    assert episode.turns[3].action.meta["reflections"] == [
        "The move was not valid.",
        "The move was not valid.",
    ]
    last_action_request = model.requests[-1]
    assert "Lessons from your mistakes" in last_action_request.messages[0].content
    assert failed(episode.turns[:1]) and not failed(episode.turns[:2])

    env = maze(max_turns=3)
    model = actions_model(["move right"])
    episode = await run_episode(env, DesignAgent(Design(pattern="plan"), model), seed=1)
    assert episode.turns[0].action.meta["plan"] == "Go right along the row, then down."
    assert all("Your plan for this episode: Go right" in r.messages[0].content for r in model.requests[1:])
    assert PLAN_ASK in model.requests[0].messages[-1].content

    env = maze(max_turns=3)
    model = actions_model(["move right"])
    await run_episode(env, DesignAgent(Design(pattern="plan", memory=Memory(persist=False)), model), seed=1)
    assert ["Your plan" in r.messages[0].content for r in model.requests] == [False, True, False, False]


async def test_self_consistency_takes_the_majority_counted_by_hand() -> None:
    env = maze()
    await env.reset(seed=0, options={"start": (1, 3)})
    # "Move Up" and "move up." are one vote (case and punctuation do not count): 2 against 1 for "move down"
    model = ScriptedModel(["Action: move down", "Action: Move Up", "I think so.\nAction: move up."])
    agent = DesignAgent(Design(pattern="self-consistency", k=3, temperature=0.7), model)
    action = await agent.act(env, [], "The goal is somewhere.")
    assert action.text == "Move Up"  # the first answer given among the winners
    assert action.meta["votes"] == {"move down": 1, "move up": 2}
    assert [c.text for c in action.calls] == ["Action: move down", "I think so.\nAction: move up.", "Action: Move Up"]
    assert [r.sample_index for r in model.requests] == [0, 1, 2]
    assert len({r.sampling.seed for r in model.requests}) == 3  # distinct, reproducible samples

    unreadable = DesignAgent(Design(pattern="self-consistency", k=2, temperature=0.7), ScriptedModel(["", "  "]))
    action = await unreadable.act(env, [], "The goal is somewhere.")
    assert not action.parsed and action.meta["chosen"] is None
    step = await env.step(action.text)
    assert step.info["invalid_action"] and step.reward == -4.0  # the environment's invalid-action rule


async def test_tree_picks_the_action_with_the_best_lookahead_reward() -> None:
    env = maze(max_turns=10)
    await env.reset(seed=0, options={"start": (5, 6)})  # zigzag: the goal (5, 7) is to the right, walls above and below
    observation = "The goal is at position 5, 7. Your current position is at position 5, 6."
    model = ScriptedModel(["move up", "move up", "move right"])
    action = await DesignAgent(Design(pattern="tree", k=3), model).act(env, [], observation)
    # "move up" has the votes (2 of 3) but hits a wall (-1); "move right" reaches the goal (0)
    assert action.text == "move right"
    scores = {s["action"]: (s["reward"], s["votes"], s["success"]) for s in action.meta["scores"]}
    assert scores == {"move up": (-1.0, 2, None), "move right": (0.0, 1, True)}
    assert len(action.calls) == 3 and action.calls[-1].text == "move right"
    assert env.position == (5, 6) and env._turns == 0  # the lookahead used copies only

    await env.reset(seed=0, options={"start": (5, 5)})
    # proposals "move left" and "move right"; the rollout policy then always answers "move right":
    # left: (5, 4) -1, back to (5, 5) -1 -> -2; right: (5, 6) -1, then the goal 0 -> -1 and done
    model = ScriptedModel(["move left", "move right", "move right", "move right"])
    action = await DesignAgent(Design(pattern="tree", k=2, depth=2), model).act(env, [], observation)
    scores = {s["action"]: (s["reward"], s["steps"], s["done"]) for s in action.meta["scores"]}
    assert scores == {"move left": (-2.0, 2, False), "move right": (-1.0, 2, True)}
    assert action.text == "move right" and len(action.calls) == 4
    # proposals, then the two rollouts (their prompts hold one more turn), then the chosen proposal moved last
    assert [c.text for c in action.calls] == ["move left", "move right", "move right", "move right"]
    prompt_sizes = [len(c.prompt_token_ids or ()) for c in action.calls]
    assert prompt_sizes[0] == prompt_sizes[3] < min(prompt_sizes[1], prompt_sizes[2])
    assert env.position == (5, 5) and env._turns == 0
    step = await env.step(action.text)
    assert step.reward == -1.0 and env.position == (5, 6)  # the real environment moves only when told


# --------------------------------------------------------------------------- teams and code


async def test_a_team_design_plays_an_episode_with_the_designs_instructions() -> None:
    design = Design(team="independent:2", instructions="Prefer moving right.", memory=Memory(history=1))
    env = maze(max_turns=3)
    model = ScriptedModel(["move right"])
    episode = await run_episode(env, make_agent(save_and_spec(design), env, model), seed=1)
    assert episode.status == "ok", episode.error
    assert [len(t.action.calls) for t in episode.turns] == [2, 2, 2]  # two members, one round
    meta = episode.turns[0].action.meta
    assert meta["pattern"] == "team" and meta["topology"] == "independent" and meta["design"] == design.hash
    assert all("Prefer moving right." in r.messages[0].content for r in model.requests)
    assert design.team_spec() == ("independent:2/prompt:template=default,temperature=0,top_p=1,history=1,shots=2")


AGENT_CODE = """
def act(observation, history, instructions, llm):
    if "Prefer moving right." in instructions:
        return "move right"
    return llm([{"role": "user", "content": observation}], temperature=0.0, max_tokens=16)
"""


async def test_a_code_design_plays_in_the_sandbox() -> None:
    for instructions, expected, calls in ((None, "move down", 1), ("Prefer moving right.", "move right", 0)):
        design = Design(code=AGENT_CODE, instructions=instructions)
        env = maze(max_turns=2)
        agent = make_agent(save_and_spec(design), env, ScriptedModel(["move down"]))
        try:
            episode = await run_episode(env, agent, seed=1)
        finally:
            await agent.close()  # type: ignore[attr-defined]
        assert episode.status == "ok", episode.error
        assert [t.action.text for t in episode.turns] == [expected, expected]
        assert [len(t.action.calls) for t in episode.turns] == [calls, calls]
        assert episode.turns[0].action.meta == {"design": design.hash, "pattern": "code"}


# --------------------------------------------------------------------------- files, make_agent, the CLI


def test_design_files_and_specs(designs_home: Path, tmp_path: Path) -> None:
    path = save_design(RICH)
    assert path == designs_home / f"{RICH.hash}.json" and load_design(RICH.hash) == RICH
    assert not list(designs_home.glob("*.tmp"))  # written atomically: no temporary file is left
    env = maze()
    assert needs_model(RICH.agent_spec())
    with pytest.raises(SpecError, match="needs a model"):
        make_agent(RICH.agent_spec(), env)
    with pytest.raises(SpecError, match=re.escape(str(designs_home / "d-000000000000.json"))):
        make_agent("design:d-000000000000", env, ScriptedModel())
    with pytest.raises(SpecError, match="design:<hash>"):
        make_agent("design:../../etc/passwd", env, ScriptedModel())
    elsewhere = tmp_path / "mine.json"
    elsewhere.write_text(json.dumps({"pattern": "cot", "instructions": "Go."}))
    agent = make_agent(f"design:@{elsewhere}", env, ScriptedModel())
    assert isinstance(agent, DesignAgent) and agent.design == Design(pattern="cot", instructions="Go.")
    tampered = designs_home / f"{RICH.hash}.json"
    tampered.write_text(json.dumps({**RICH.to_dict(), "k": 5}))
    with pytest.raises(SpecError, match="edited"):
        load_design(RICH.hash)
    (tmp_path / "bad.json").write_text('{"pattern": "cot", "k": 2}')
    with pytest.raises(SpecError, match=r"bad\.json.*'k'"):
        make_agent(f"design:@{tmp_path / 'bad.json'}", env, ScriptedModel())


def test_eval_plays_a_design_end_to_end(tmp_path: Path) -> None:
    design = Design(pattern="cot", memory=Memory(history=1))
    DesignSpace().save(design)
    db = str(tmp_path / "runs.db")
    args = ["eval", "maze-fo-v0", "--agent", design.agent_spec(), "--model", "scripted:cycle:Action: move up"]
    result = CliRunner().invoke(main, [*args, "-n", "2", "--max-turns", "3", "--db", db, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)["runs"]
    assert run["episodes"] == 2

    from palaestra.store import Store

    with Store(db, readonly=True) as store:
        assert store.get_run(run["run_id"]).agent_spec == design.agent_spec()
        episodes = store.episodes(run["run_id"], with_turns=True)
    turns = [t for e in episodes for t in e.turns]
    assert len(turns) == 6 and {t.action.text for t in turns} == {"move up"}
    assert all(t.action.meta["pattern"] == "cot" and len(t.action.calls) == 1 for t in turns)

    missing = CliRunner().invoke(main, ["eval", "maze-fo-v0", "--agent", "design:d-0123456789ab", "--db", db])
    assert missing.exit_code != 0 and "d-0123456789ab.json" in missing.output


def test_demonstrations_from_a_stored_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = str(tmp_path / "runs.db")
    monkeypatch.setenv("PALAESTRA_DB", db)
    played = {}
    for split in ("train", "test"):
        args = ["eval", "maze-fo-v0", "--agent", "noisy", "-n", "3", "--split", split, "--db", db, "--json", "-q"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        played[split] = json.loads(result.output)["runs"][0]["run_id"]

    from palaestra.store import Store

    with Store(db, readonly=True) as store:
        episodes = store.episodes(played["train"], with_turns=True)
    ranked = sorted(episodes, key=lambda e: (-e.total_return, e.seed))  # best first
    assert ranked[0].total_return > ranked[-1].total_return
    turns = [t for e in ranked for t in e.turns][:3]
    env = make("maze-fo-v0")
    agent = DesignAgent(Design(shots=Shots(count=3, source=f"run:{played['train']}")), ScriptedModel())
    shots = asyncio.run(agent.demonstrations(env))
    assert [(m.role, m.content) for m in shots] == [
        pair for t in turns for pair in (("user", t.observation), ("assistant", t.action.text))
    ]
    assert all(e.seed < 10_000 for e in episodes)
    test_run = DesignAgent(Design(shots=Shots(count=2, source=f"run:{played['test']}")), ScriptedModel())
    with pytest.raises(SpecError, match="train seeds"):
        asyncio.run(test_run.demonstrations(env))


# --------------------------------------------------------------------------- the space


def test_children_and_features_are_deterministic() -> None:
    space = DesignSpace(instructions=["Think about walls.", "Go straight to the goal."])
    default = space.default()
    children = space.children(default)
    assert [c.hash for c in children] == [
        c.hash for c in DesignSpace(instructions=space.instruction_texts).children(default)
    ]
    assert len({c.hash for c in children}) == len(children) and default.hash not in {c.hash for c in children}
    width = len(space.feature_names())
    designs = [default, *children, *(space.sample(random.Random(i)) for i in range(20))]
    assert all(len(space.features(d)) == width for d in designs)
    assert space.features(default) == space.features(Design.from_dict(default.to_dict()))
    named = dict(zip(space.feature_names(), space.features(default), strict=True))
    # numeric options are divided by the grid's largest value (history 0..4, shots 0..4; calls per turn up to
    # 13, the dylan:3 team's, more than tree's 5 x 2)
    assert named["pattern=direct"] == 1.0 and named["history"] == 0.5 and named["shots"] == 0.5
    assert named["calls_per_turn"] == 1 / 13 and named["has_instructions"] == 0.0 and named["team_members"] == 0.0
    # so no option outweighs the others in a value model's distances: every grid design lies in the unit cube
    assert all(0.0 <= x <= 1.0 for d in designs for x in space.features(d))
    patterns = {c.pattern for c in children}
    assert patterns == set(PATTERNS)  # one edit reaches every pattern
    sc = next(c for c in children if c.pattern == "self-consistency")
    assert (sc.k, sc.temperature) == (3, 0.7)  # k greedy samples would be one reply: the edit samples too
    instructed = [c.instructions for c in children if c.instructions]
    assert instructed == ["Think about walls.", "Go straight to the goal."]
    tree = space.features(Design(pattern="tree", k=5, depth=2, temperature=0.7))
    assert dict(zip(space.feature_names(), tree, strict=True))["calls_per_turn"] == 10 / 13


def test_mutate_and_sample_are_reproducible_from_a_seed() -> None:
    space = DesignSpace()
    first = [space.mutate(space.default(), random.Random(seed)) for seed in range(10)]
    again = [space.mutate(space.default(), random.Random(seed)) for seed in range(10)]
    assert [d.hash for d in first] == [d.hash for d in again]
    assert all(d != space.default() for d in first)
    for d in first:
        changed = [k for k, v in d.to_dict().items() if v != space.default().to_dict()[k]]
        assert 1 <= len(changed) <= 5  # one or two edits, each with the fields it depends on
    assert space.sample(random.Random(3)) == space.sample(random.Random(3))


def test_a_restricted_space() -> None:
    space = DesignSpace(patterns=("cot",), allow_team=False, allow_code=False)
    children = space.children(space.default())
    assert {c.pattern for c in children} == {"direct", "cot"} and all(c.team is None for c in children)
    samples = [space.sample(random.Random(i)) for i in range(30)]
    assert all(s.pattern in ("direct", "cot") and s.team is None for s in samples)
    with pytest.raises(SpecError, match="'team'"):
        space.from_dict({"team": "dylan:3"})
    with pytest.raises(SpecError, match="'code'"):
        space.from_dict({"code": AGENT_CODE})
    with pytest.raises(SpecError, match=r"'pattern'.*direct, cot"):
        space.from_dict({"pattern": "plan"})
    with pytest.raises(SpecError, match="unknown pattern"):
        DesignSpace(patterns=("sorcery",))
    with pytest.raises(SpecError, match="'temperature'"):
        DesignSpace(temperatures=(0.0, 5.0))
    code = Design(code=AGENT_CODE)
    assert [c.instructions for c in DesignSpace(instructions=["Be brief."]).children(code)] == ["Be brief."]


# --------------------------------------------------------------------------- the docs and the real model

PAIRS = re.findall(r"```python\n(.*?)```\n\n```\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_doc_has_examples_with_output() -> None:
    assert len(PAIRS) == 2


@pytest.mark.parametrize("index", range(len(PAIRS)))
def test_doc_block_prints_what_the_doc_shows(index: int, capsys: pytest.CaptureFixture[str], run_doc_block) -> None:
    code, shown = PAIRS[index]
    run_doc_block(code, f"docs/design.md block {index}")
    assert capsys.readouterr().out == shown


@pytest.mark.slow
async def test_embedded_model_plays_a_cot_design(local_model) -> None:
    env = maze(max_turns=3, layout="pillars")
    episode = await run_episode(env, DesignAgent(Design(pattern="cot", max_tokens=48), local_model), seed=2)
    assert episode.status == "ok", episode.error
    assert len(episode.turns) == 3 or episode.success
    for turn in episode.turns:
        assert len(turn.action.calls) == 1 and turn.action.calls[0].usage.completion_tokens > 0
        assert isinstance(turn.action.meta["thought"], str) and turn.action.meta["pattern"] == "cot"
        assert turn.action.raw == turn.action.calls[0].text

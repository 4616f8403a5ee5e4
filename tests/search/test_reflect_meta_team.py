"""The reflect, meta-agent and team search methods: real maze episodes, a real SQLite store, real sandboxed
subprocesses for generated code, and scripted models (for the agents and for the proposer)."""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from palaestra.cli import main
from palaestra.core.errors import SpecError
from palaestra.core.types import ChatRequest
from palaestra.models.scripted import ScriptedModel
from palaestra.search.design import Design, DesignSpace
from palaestra.search.harness import Budget, Evaluation, SearchConfig, SearchResult, run_search
from palaestra.search.meta_agent import MetaAgent, extract_code
from palaestra.search.methods import make_method
from palaestra.search.reflect import Reflect, choose_parent, clean_instructions, pareto_by_task, task_scores
from palaestra.search.space import PromptSpace
from palaestra.search.team_select import TeamSelect
from palaestra.store import Store


@pytest.fixture(autouse=True)
def designs_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "designs"
    monkeypatch.setenv("PALAESTRA_DESIGNS", str(folder))
    return folder


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(str(tmp_path / "search.db")) as s:
        yield s


def config(**changes: Any) -> SearchConfig:
    values: dict[str, Any] = {
        "envs": ("maze-fo-v0",),
        "space": "design",
        "budget": Budget(calls=100_000),
        "validation_episodes": 2,
        "batch_episodes": 1,
        "test_episodes": 1,
        "max_turns": 6,
        "concurrency": 2,
        "max_candidates": 2,
    }
    return SearchConfig(**{**values, **changes})


def search(store: Store, method: Any, model: Any, **changes: Any) -> SearchResult:
    return asyncio.run(run_search(config(method=method.name, **changes), store, method.space, method, model=model))


def fingerprint(result: SearchResult) -> list[tuple[Any, ...]]:
    return [(e.hash, e.parents, tuple(e.stages), None if e.failed else e.score, e.failure) for e in result.archive]


# --------------------------------------------------------------------------- reflect

ADVICE = "Compare your position with the goal's and move toward it; never move into a wall."


def test_reflect_proposes_instructions_from_failed_turns(store: Store) -> None:
    agents = ScriptedModel("move up", spec="scripted:up")  # walks into the top wall: every maze fails
    proposer = ScriptedModel([f"The agent only moves up.\n<instructions>\n{ADVICE}\n</instructions>"])
    method = make_method("reflect", DesignSpace(), proposer=proposer)
    result = search(store, method, agents)
    default, child = result.archive
    assert isinstance(child.candidate, Design) and child.candidate.instructions == ADVICE
    assert child.candidate == Design(instructions=ADVICE) and child.parents == (default.hash,)
    # The proposer saw the default's failed turns, read back from the store: what it saw, answered, was told.
    (request,) = proposer.requests
    prompt = request.messages[-1].content
    stored = [e for run in default.run_ids for e in store.episodes(run, with_turns=True)]
    last = max(stored, key=lambda e: e.seed).turns[-1]
    assert last.observation[:100] in prompt and last.step.observation[:60] in prompt
    assert "It answered: move up" in prompt and "not solved" in prompt
    assert "The agent's current extra instructions:\n(none)" in prompt
    # The proposer's call is in the budget: spent = the agents' model calls + 1.
    assert result.spent.model_calls == sum(e.cost.model_calls for e in result.archive) + 1
    assert result.spent.calls == sum(e.cost.calls for e in result.archive) + 1


def test_reflect_rejects_empty_proposals_and_asks_again(store: Store) -> None:
    proposer = ScriptedModel(["   ", "<instructions>\n```\n\n```\n</instructions>", "<instructions>Go.</instructions>"])
    method = make_method("reflect", DesignSpace(), proposer=proposer)
    result = search(store, method, ScriptedModel("move up", spec="scripted:up"))
    assert proposer.calls == 3 and isinstance(method, Reflect) and len(method.rejected) == 2
    assert result.archive[1].candidate.to_dict()["instructions"] == "Go."


def test_clean_instructions() -> None:
    assert clean_instructions("Reasoning.\n<instructions>\nInstructions: Be brief.\n</instructions> bye") == "Be brief."
    assert clean_instructions("```text\nMove toward the goal.\n```") == "Move toward the goal."
    assert clean_instructions("<instructions>\n\n</instructions>") is None and clean_instructions(None) is None
    long = "Move toward the goal. " * 100
    cut = clean_instructions(long, max_chars=100)
    assert cut is not None and len(cut) <= 100 and cut.endswith("goal.")
    assert clean_instructions("a\x00b\x1b[31m") == "ab[31m"


def evaluation(instructions: str, values: dict[str, dict[int, float]]) -> Evaluation:
    e = Evaluation(Design(instructions=instructions), (), 0)
    e.values = values
    return e


def test_the_pareto_front_keeps_a_candidate_best_on_one_environment() -> None:
    a = evaluation("a", {"maze": {0: 90.0, 1: 90.0}, "wordle": {0: 0.0, 1: 0.0}})  # mean 45: best on maze
    b = evaluation("b", {"maze": {0: 60.0, 1: 60.0}, "wordle": {0: 60.0, 1: 60.0}})  # mean 60: best on wordle
    c = evaluation("c", {"maze": {0: 50.0, 1: 50.0}, "wordle": {0: 50.0, 1: 50.0}})  # mean 50: best on nothing
    assert a.score < c.score < b.score
    scores = {e.hash: task_scores(e, [0, 1], "env") for e in (a, b, c)}
    assert scores[a.hash] == {"maze": 90.0, "wordle": 0.0}
    front = pareto_by_task(scores)
    assert front == {a.hash: 1, b.hash: 1}
    rng = random.Random(0)
    drawn = {choose_parent(front, rng) for _ in range(100)}
    assert drawn == {a.hash, b.hash}
    # Per seed: a tie on a task lets both win it; a candidate dominated by another winner is dropped.
    per_seed = {
        "x": {"s0": 10.0, "s1": 5.0},
        "y": {"s0": 10.0, "s1": 7.0},  # ties x on s0, beats it on s1: dominates x
        "z": {"s0": 0.0, "s1": 0.0, "s2": 1.0},  # alone on s2
    }
    assert pareto_by_task(per_seed) == {"y": 2, "z": 1}


def test_reflect_refuses_the_prompt_space() -> None:
    with pytest.raises(SpecError, match="--space design"):
        make_method("reflect", PromptSpace())
    with pytest.raises(SpecError, match="code"):
        make_method("meta-agent", DesignSpace(allow_code=False))
    with pytest.raises(SpecError, match="teams"):
        make_method("team", DesignSpace(allow_team=False))


# --------------------------------------------------------------------------- meta-agent

GOOD = """Explore depth first, toward the goal first, and backtrack from dead ends.
```python
import re

DELTA = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
WALLS = {"above": "up", "below": "down", "left": "left", "right": "right"}
VISITED = set()
PATH = []


def act(observation, history, instructions, llm):
    found = re.search(r"goal is at position (\\d+), (\\d+)\\. Your current position is at position (\\d+), (\\d+)",
                      observation)
    if not found:
        return "move up"
    goal_row, goal_col, row, col = map(int, found.groups())
    here = (row, col)
    if len(PATH) > 1 and PATH[-2] == here:
        PATH.pop()
    elif not PATH or PATH[-1] != here:
        PATH.append(here)
    VISITED.add(here)
    blocked = {move for word, move in WALLS.items() if word in observation[found.end():]}
    free = sorted((m for m in DELTA if m not in blocked),
                  key=lambda m: abs(goal_row - row - DELTA[m][0]) + abs(goal_col - col - DELTA[m][1]))
    for move in free:
        if (row + DELTA[move][0], col + DELTA[move][1]) not in VISITED:
            return "move " + move
    if len(PATH) > 1:
        for move, (dr, dc) in DELTA.items():
            if (row + dr, col + dc) == PATH[-2]:
                return "move " + move
    return "move " + (free[0] if free else "up")
```"""
LOOP = "```python\ndef act(observation, history, instructions, llm):\n    while True:\n        pass\n```"
NETWORK = (
    "```python\nimport socket\n\n\ndef act(observation, history, instructions, llm):\n"
    "    socket.create_connection(('example.com', 80), timeout=1)\n    return 'move up'\n```"
)
GARBAGE = "I am a meta agent and I think the best agent is a happy agent."


def meta_script(drafts: list[str]) -> ScriptedModel:
    """Answers the i-th request for a new agent with ``drafts[i]``; fixes and reviews get prose (no code)."""
    asked = {"drafts": 0}

    def reply(request: ChatRequest) -> str:
        last = request.messages[-1].content
        if "Write a new agent" in last:
            asked["drafts"] += 1
            return drafts[(asked["drafts"] - 1) % len(drafts)]
        return "It looks right to me."

    return ScriptedModel(reply, spec="scripted:meta")


def test_meta_agent_keeps_good_code_and_archives_bad_code_with_reasons(store: Store) -> None:
    proposer = meta_script([GOOD, LOOP, NETWORK, GARBAGE])
    method = make_method("meta-agent", DesignSpace(), proposer=proposer)
    result = search(store, method, ScriptedModel("move up", spec="scripted:up"), max_candidates=5, max_turns=30)
    assert len(result.archive) == 5 and result.test_passes == 1
    default, good, loop, network, garbage = result.archive
    assert good.failure is None and not good.failed and good.score > default.score
    assert good.candidate.to_dict()["code"].startswith("import re")
    assert good.parents == (default.hash,)
    assert loop.failed and "generated code failed" in (loop.failure or "") and "(timeout)" in (loop.failure or "")
    assert network.failed and "(refused)" in (network.failure or "") and "socket" in (network.failure or "")
    assert garbage.failed and "no Python code" in (garbage.failure or "") and garbage.stages == []
    assert result.chosen is good
    # The meta agent was shown the archive: the second draft request lists the good agent's code and score.
    drafts = [r for r in proposer.requests if "Write a new agent" in r.messages[-1].content]
    assert len(drafts) == 4 and "def act" in drafts[1].messages[-1].content
    assert f"Agent {good.hash}: score {good.score:.1f}" in drafts[1].messages[-1].content
    assert "Agents that failed" in drafts[3].messages[-1].content and loop.hash in drafts[3].messages[-1].content
    # Failures with their reasons are in the stored summary.
    summary = store.get_run(result.summary_run or "").config["summary"]
    reasons = {entry["hash"]: entry["failure"] for entry in summary["archive"]}
    assert reasons[garbage.hash] == garbage.failure and reasons[good.hash] is None


def test_meta_agent_asks_to_fix_code_that_fails_the_check(store: Store) -> None:
    broken = "```python\ndef act(observation):\n    return 'move up'\n```"
    fixed = "```python\ndef act(observation, history, instructions, llm):\n    return 'move down'\n```"
    script = iter([broken, fixed, "No change needed.", "No change needed."])
    proposer = ScriptedModel(lambda _request: next(script), spec="scripted:fixer")
    method = make_method("meta-agent", DesignSpace(), proposer=proposer)
    result = search(store, method, ScriptedModel("move up", spec="scripted:up"))
    assert isinstance(method, MetaAgent) and method.attempts[0]["fixes"] == 1
    assert "signature" in proposer.requests[1].messages[-1].content  # the check's reason went back
    assert result.archive[1].candidate.to_dict()["code"] == "def act(observation, history, instructions, llm):\n" + (
        "    return 'move down'\n"
    )
    assert result.archive[1].failure is None
    assert proposer.calls == 4  # draft, one fix, two reviews: all in the budget
    assert result.spent.model_calls == sum(e.cost.model_calls for e in result.archive) + 4


def test_extract_code() -> None:
    assert extract_code(GARBAGE) is None and extract_code("") is None
    code = extract_code(GOOD)
    assert code is not None and code.startswith("import re") and "```" not in code
    bare = "Here it is:\nimport re\ndef act(o, h, i, llm):\n    return 'move up'\nThat is all."
    assert extract_code(bare) == "import re\ndef act(o, h, i, llm):\n    return 'move up'\n"
    cut = "```python\ndef act(o, h, i, llm):\n    return 'move"  # cut at the token limit: the check will fail
    assert extract_code(cut) == "def act(o, h, i, llm):\n    return 'move\n"
    two = "```python\nx = 1\n```\nbetter:\n```python\ndef act(o, h, i, llm):\n    return 'a'\n```"
    assert extract_code(two) == "def act(o, h, i, llm):\n    return 'a'\n"


# --------------------------------------------------------------------------- team

_MEMBER = re.compile(r"You are (m\d+),")
RIGHT = {"m1": True, "m2": False, "m3": True, "m4": False}


def team_player(request: ChatRequest) -> str:
    """m1 and m3 answer 'move right' in round 1, m2 and m4 'move left'; in round 2 everyone answers
    'move right' and rates the 'move right' answers 5 and the others 1."""
    member = _MEMBER.search(request.messages[0].content)
    if member is None:
        return "move up"
    prompt = request.messages[-1].content
    if "Round 2" not in prompt:
        return "move right" if RIGHT[member.group(1)] else "move left"
    seen = re.findall(r"^\d+\. m\d+: (.*)$", prompt, flags=re.MULTILINE)
    return "move right\nRatings: " + " ".join("5" if answer == "move right" else "1" for answer in seen)


def test_team_selection_keeps_the_members_with_the_highest_importance(store: Store) -> None:
    method = make_method("team", DesignSpace())
    result = search(store, method, ScriptedModel(team_player, spec="scripted:team"), max_candidates=4)
    default, pool, best, pair = result.archive  # sizes (1, 2): the best member alone first
    assert pool.candidate == Design(team="dylan:4,rounds=2") and pool.parents == (default.hash,)
    assert isinstance(method, TeamSelect)
    selection = method.selections[pool.hash]
    assert selection is not None and selection.kept == ("m1", "m3")
    # By hand: round 2 gives each member 1/4; each round-2 member passes its 1/4 to the three answers it saw,
    # in proportion to its ratings; the total (2) is normalised to 1.
    top = (0.25 + 0.25 * (5 / 11 + 5 / 7 + 5 / 11)) / 2
    low = (0.25 + 0.25 * (1 / 7 + 1 / 7 + 1 / 11)) / 2
    assert selection.scores == pytest.approx({"m1": top, "m2": low, "m3": top, "m4": low}, abs=1e-5)
    assert pair.candidate == Design(team="dylan:2,rounds=2,roster=m1.m3") and pair.parents == (pool.hash,)
    assert best.candidate == Design(team="single,roster=m1")  # m1 and m3 tie: the earlier member
    assert not pair.failed and not best.failed


# --------------------------------------------------------------------------- reproducibility


def make_reproducible(name: str) -> tuple[Any, Any, int]:
    if name == "reflect":
        proposer = ScriptedModel(lambda r: f"<instructions>Advice {len(r.messages[-1].content) % 7}.</instructions>")
        return make_method("reflect", DesignSpace(), proposer=proposer), ScriptedModel("move up", spec="s:up"), 3
    if name == "meta-agent":
        method = make_method("meta-agent", DesignSpace(), proposer=meta_script([GOOD, GARBAGE]))
        return method, ScriptedModel("move up", spec="s:up"), 3
    return make_method("team", DesignSpace()), ScriptedModel(team_player, spec="scripted:team"), 4


@pytest.mark.parametrize("name", ["reflect", "meta-agent", "team"])
def test_each_method_is_reproducible_from_a_seed(tmp_path: Path, name: str) -> None:
    results = []
    for run in ("one", "two"):
        method, model, candidates = make_reproducible(name)
        with Store(str(tmp_path / f"{run}.db")) as store:
            results.append(search(store, method, model, seed=3, max_candidates=candidates))
    assert len(results[0].archive) == len(results[1].archive) >= 3
    assert fingerprint(results[0]) == fingerprint(results[1])


# --------------------------------------------------------------------------- the command line

CLI_CODE = "```python\ndef act(observation, history, instructions, llm):\n    return 'move right'\n```"


@pytest.mark.parametrize(
    ("method", "extra", "candidates"),
    [
        ("reflect", ["--proposer-model", "scripted:cycle:<instructions>Head for the goal.</instructions>"], 2),
        ("meta-agent", ["--proposer-model", f"scripted:cycle:{CLI_CODE}"], 2),
        ("team", [], 3),
    ],
)
def test_cli_runs_each_method_end_to_end(tmp_path: Path, method: str, extra: list[str], candidates: int) -> None:
    args = ["search", "maze-fo-v0", "--method", method, "--model", "scripted:cycle:move right", *extra]
    args += ["--validation-episodes", "2", "--batch-episodes", "1", "--test-episodes", "1", "--max-turns", "5"]
    args += ["--max-candidates", str(candidates), "--db", str(tmp_path / "cli.db"), "--json"]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["space"] == "design" and result["config"]["method"] == method
    assert result["candidates"] == candidates and result["test_passes"] == 1
    found = result["archive"][1]["candidate"]
    if method == "reflect":
        assert found["instructions"] == "Head for the goal."
        assert result["spent"]["model_calls"] == sum(e["cost"]["model_calls"] for e in result["archive"]) + 1
    elif method == "meta-agent":
        assert found["code"] == CLI_CODE.split("\n", 1)[1].rsplit("```", 1)[0]
        assert result["archive"][1]["failure"] is None
    else:
        assert found["team"] == "dylan:4,rounds=2"


def test_cli_refuses_a_proposer_for_a_method_that_asks_no_model(tmp_path: Path) -> None:
    args = ["search", "maze-fo-v0", "--method", "mcts", "--proposer-model", "scripted:echo"]
    done = CliRunner().invoke(main, [*args, "--db", str(tmp_path / "x.db")])
    assert done.exit_code != 0 and "--proposer-model is for reflect and meta-agent" in done.output

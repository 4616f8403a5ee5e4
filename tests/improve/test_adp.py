"""ADP export and import: the round trip keeps every episode (single-agent, multi-agent, a team, an error,
awkward text), the files are plain ADP for other readers, plain ADP files import as text-only episodes, and
bad files write nothing. Episodes are played for real by the runner with scripted models (no model weights)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from palaestra.core import Action, Completion, Episode, SpecError, Step, Turn, Usage
from palaestra.envs.registry import spec as registered_spec
from palaestra.improve.adp import ADP_VERSION, IMPORTED_AGENT, export_adp, import_adp, iter_records
from palaestra.models.scripted import ScriptedModel
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import Store

AWKWARD = "naïve — 日本語 🎲 <script>alert('x')</script> \"quoted\" back\\slash\nsecond line <|im_end|>"

# What ADP 1.2.0's pydantic models accept (they forbid extra keys on items and on the trajectory).
TRAJECTORY_KEYS = {"schema_version", "id", "content", "details", "available_custom_tools", "available_code_languages"}
ITEM_KEYS = {
    "text_observation": {"class_", "content", "source", "reward", "tool_call_id"},
    "message_action": {"class_", "content", "description", "reasoning_content", "reward"},
}


async def _play(store: Store, env_id: str, agent: str, model: ScriptedModel, episodes: int, **kw: Any) -> str:
    config = EvalConfig(envs=(env_id,), agents=(agent,), episodes=episodes, split="train", concurrency=4, **kw)
    result = await evaluate(config, store, model=model, progress=False)
    return result.run_ids[0]


def _hand_episode() -> Episode:
    """Awkward text everywhere a string is kept, a call without tokens, nested info and meta."""
    call = Completion(
        text=AWKWARD,
        model="openai:some-model",
        usage=Usage(120, 9),
        latency_s=0.3333333333333333,
        logprobs=None,
    )
    turns = [
        Turn(
            observation=f"first {AWKWARD}",
            action=Action(text="move up", raw=AWKWARD, parsed=True, calls=(call,), meta={"note": AWKWARD}),
            step=Step(f"second {AWKWARD}", -1.0, info={"invalid_action": False, "ü": [1, 2.5, None]}),
        ),
        Turn(
            observation=f"second {AWKWARD}",
            action=Action(text="", raw=None, parsed=False),
            step=Step("", -4.0, terminated=True, info={"invalid_action": True, "success": False}),
        ),
    ]
    return Episode(
        env_id="maze-fo-v0",
        seed=7,
        turns=turns,
        first_observation=f"first {AWKWARD}",
        total_return=-5.0,
        terminated=True,
        wall_s=0.1,
        started_at=1_700_000_000.25,
    )


@pytest.fixture
async def source(tmp_path: Path) -> tuple[Store, list[str]]:
    """A store with four runs: prompt agent (one episode failed), a two-player game, a team, a hand episode."""
    store = Store(f"sqlite:///{tmp_path / 'source.db'}")
    replies = ["move up", f"I think {AWKWARD}\nAction: move right"]
    single = ScriptedModel(replies, spec="scripted:awkward", honor_max_tokens=False, fail_on_calls=[4])
    run_single = await _play(store, "maze-fo-v0", "prompt:shots=0", single, 2, max_turns=3)
    game = ScriptedModel(["J", "F", "Option: J"], spec="scripted:game", honor_max_tokens=False)
    run_multi = await _play(store, "repeated-prisoners-dilemma-v0", "prompt:shots=0", game, 1, max_turns=3)
    team = ScriptedModel(["move down", "Action: move left"], spec="scripted:team", honor_max_tokens=False)
    run_team = await _play(store, "maze-fo-v0", "independent:3/prompt:shots=0", team, 1, max_turns=2)
    run_hand = store.create_run(
        env_spec=registered_spec("maze-fo-v0"),
        agent_spec="prompt",
        model_spec="openai:some-model",
        weights_hash=None,
        config={"seeds": [7], "note": AWKWARD},
        name=AWKWARD,
    )
    store.record_episode(run_hand, _hand_episode())
    store.finish_run(run_hand, "complete")
    return store, [run_single, run_multi, run_team, run_hand]


def _normalised(path: Path, run_ids: list[str]) -> list[dict[str, Any]]:
    """The file's records with each run id replaced by its position in ``run_ids``."""
    text = path.read_text(encoding="utf-8")
    for i, run_id in enumerate(run_ids):
        text = text.replace(run_id, f"RUN{i}")
    assert not re.search(r"r-[0-9a-f]{8}", text)
    return [json.loads(line) for line in text.splitlines()]


async def test_round_trip_keeps_every_episode(source: tuple[Store, list[str]], tmp_path: Path) -> None:
    store, run_ids = source
    first = tmp_path / "first.adp.jsonl"
    with first.open("w", encoding="utf-8") as fp:
        written = export_adp(store, run_ids, fp)
    originals = {r: store.episodes(r, with_turns=True) for r in run_ids}
    assert written == sum(len(e) for e in originals.values()) == 2 + 1 + 1 + 1

    # What the fixture must contain for the round trip to prove anything.
    statuses = [e.status for e in originals[run_ids[0]]]
    assert sorted(statuses) == ["error", "ok"]
    multi = originals[run_ids[1]][0]
    assert multi.players == {"player_0": "prompt:shots=0", "player_1": "prompt:shots=0"}
    assert {t.agent for t in multi.turns} == {"player_0", "player_1"} and multi.metrics["returns"]
    team_turn = originals[run_ids[2]][0].turns[0]
    assert len(team_turn.action.calls) >= 3 and team_turn.action.meta
    single_turn = next(e for e in originals[run_ids[0]] if e.status == "ok").turns[0]
    assert single_turn.action.calls[0].prompt_token_ids and single_turn.action.calls[0].logprobs is not None

    target = Store(f"sqlite:///{tmp_path / 'target.db'}")
    new_ids = import_adp(target, first)
    assert len(new_ids) == 4 and not set(new_ids) & set(run_ids)
    for old, new in zip(run_ids, new_ids, strict=True):
        assert target.episodes(new, with_turns=True) == originals[old]
        before, after = store.get_run(old), target.get_run(new)
        assert (after.env_spec, after.agent_spec, after.model_spec, after.name, after.status) == (
            before.env_spec,
            before.agent_spec,
            before.model_spec,
            before.name,
            before.status,
        )
        assert after.config["imported"]["from_run"] == old

    second = tmp_path / "second.adp.jsonl"
    with second.open("w", encoding="utf-8") as fp:
        export_adp(target, new_ids, fp)
    assert _normalised(second, new_ids) == _normalised(first, run_ids)

    # And once more: an import of an imported run keeps the chain lossless.
    third_store = Store(f"sqlite:///{tmp_path / 'third.db'}")
    third_ids = import_adp(third_store, second)
    buffer = io.StringIO()
    export_adp(third_store, third_ids, buffer)
    third = tmp_path / "third.adp.jsonl"
    third.write_text(buffer.getvalue(), encoding="utf-8")
    assert _normalised(third, third_ids) == _normalised(first, run_ids)


async def test_export_is_plain_adp_with_extensions_in_details(source: tuple[Store, list[str]], tmp_path: Path) -> None:
    store, run_ids = source
    path = tmp_path / "out.jsonl"
    with path.open("w", encoding="utf-8") as fp:
        export_adp(store, run_ids, fp)
    records = list(iter_records(path))
    for record in records:
        assert set(record) <= TRAJECTORY_KEYS
        assert record["schema_version"] == ADP_VERSION
        for item in record["content"]:
            assert set(item) <= ITEM_KEYS[item["class_"]], item
        kinds = [item["class_"] for item in record["content"]]
        assert kinds[-1] == "text_observation"
        assert kinds[:-1] == ["text_observation", "message_action"] * (len(kinds) // 2)
    hand = next(r for r in records if r["details"]["palaestra"]["run"]["id"] == run_ids[3])
    assert hand["id"] == f"{run_ids[3]}/7"
    content = hand["content"]
    assert [i["content"] for i in content] == [f"first {AWKWARD}", AWKWARD, f"second {AWKWARD}", "", ""]
    assert [i.get("reward") for i in content] == [None, -1.0, None, -4.0, None]
    ext = hand["details"]["palaestra"]
    assert ext["reward_source"] == "environment"
    assert ext["turns"][0]["calls"][0]["latency_s"] == 0.3333333333333333
    assert ext["turns"][0]["calls"][0]["prompt_tokens"] == 120
    assert ext["run"]["config"]["note"] == AWKWARD and ext["run"]["env_spec"]["id"] == "maze-fo-v0"
    assert "next_observation" not in ext["turns"][0]  # single-agent: it is the next content observation

    game = next(r for r in records if r["details"]["env_id"] == "repeated-prisoners-dilemma-v0")
    turns = game["details"]["palaestra"]["turns"]
    assert [t["agent"] for t in turns[:2]] == ["player_0", "player_1"] and turns[0]["round"] == 0
    # Player 0's next observation is not player 1's observation, so it is kept in the extension.
    assert "next_observation" in turns[0]
    exact = next(r for r in records if r["details"]["palaestra"]["run"]["id"] == run_ids[0])
    call = exact["details"]["palaestra"]["turns"][0]["calls"][0]
    assert call["completion_token_ids"] == list(call["text"].encode())  # the scripted model's byte tokens


PLAIN = [
    {
        "schema_version": "1.2.0",
        "id": "hand-1",
        "content": [
            {"class_": "text_observation", "content": "You are at 0, 0.", "source": "environment"},
            {"class_": "message_action", "content": "move down", "description": None, "reward": -1.0},
            {"class_": "text_observation", "content": "You are at 1, 0.", "source": "environment"},
            {"class_": "text_observation", "content": "Hint: <b>go right</b> ✓", "source": "user"},
            {"class_": "message_action", "content": "move right"},
            {"class_": "text_observation", "content": "Goal!", "source": "environment", "reward": 0.0},
        ],
        "details": {"dataset": "by hand", "success": True},
    },
    {
        "id": "hand-2",
        "content": [
            {"class_": "text_observation", "content": "Start", "source": "user"},
            {"class_": "api_action", "function": "move", "kwargs": {"to": "up"}, "tool_call_id": "c1"},
            {"class_": "text_observation", "content": "moved", "source": "environment", "tool_call_id": "c1"},
        ],
        "details": {},
    },
]


def _write_plain(path: Path) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in PLAIN), encoding="utf-8")


def test_plain_adp_needs_an_environment(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    _write_plain(path)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with pytest.raises(SpecError, match=r"line 1: a plain ADP trajectory .*--env ID"):
        import_adp(store, path)
    assert store.list_runs() == []


def test_plain_adp_imports_as_text_only_episodes(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    _write_plain(path)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    (run_id,) = import_adp(store, path, env_id="maze-fo-v0")
    run = store.get_run(run_id)
    assert (run.env_id, run.agent_spec, run.model_spec, run.status) == ("maze-fo-v0", IMPORTED_AGENT, None, "complete")
    assert run.config["imported"] == {"format": "adp", "file": "plain.jsonl", "ids": ["hand-1", "hand-2"]}
    first, second = store.episodes(run_id, with_turns=True)
    assert (first.seed, second.seed) == (0, 1)
    assert [(t.observation, t.action.text, t.step.reward, t.step.observation) for t in first.turns] == [
        ("You are at 0, 0.", "move down", -1.0, "You are at 1, 0.\n\nHint: <b>go right</b> ✓"),
        ("You are at 1, 0.\n\nHint: <b>go right</b> ✓", "move right", 0.0, "Goal!"),
    ]
    assert first.first_observation == "You are at 0, 0."
    assert (first.total_return, first.success, first.turns[-1].step.terminated) == (-1.0, True, True)
    assert all(t.action.calls == () for t in first.turns)
    assert [(t.observation, t.action.text) for t in second.turns] == [("Start", 'move({"to": "up"})')]
    assert second.success is False


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"bad\.jsonl line 2: not JSON"),
        ('{"id": "x"}', r"line 2: not an ADP trajectory"),
        ('{"schema_version": "2.0.0", "id": "x", "content": []}', r"line 2: ADP schema_version '2.0.0'"),
        ('{"id": "x", "content": [{"content": "no class"}]}', r"line 2 content\[0\]: every content item"),
        ('{"id": "x", "content": [{"class_": "message_action", "content": "a", "reward": "high"}]}', "reward must"),
    ],
)
def test_a_bad_file_writes_nothing(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(PLAIN[0]) + "\n" + line + "\n", encoding="utf-8")
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with pytest.raises(SpecError, match=message):
        import_adp(store, path, env_id="maze-fo-v0")
    assert store.list_runs() == []


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with pytest.raises(SpecError, match="holds no ADP trajectories"):
        import_adp(store, path, env_id="maze-fo-v0")
    assert store.list_runs() == []


# --------------------------------------------------------------------------- the command line


def test_cli_export_and_import(source: tuple[Store, list[str]], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from palaestra.cli import main

    store, run_ids = source
    db = store.url
    out = tmp_path / "runs.adp.jsonl"
    runner = CliRunner()
    done = runner.invoke(main, ["data", "export", *run_ids, "--db", db, "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == 5
    jsonl = runner.invoke(main, ["data", "export", run_ids[3], "--format", "jsonl", "--db", db])
    assert jsonl.exit_code == 0 and json.loads(jsonl.stdout)["format"] == "palaestra.episode/1"

    target = f"sqlite:///{tmp_path / 'target.db'}"
    imported = runner.invoke(main, ["data", "import", str(out), "--db", target, "--json"])
    assert imported.exit_code == 0, imported.output
    rows = json.loads(imported.stdout)["runs"]
    assert [(r["env_id"], r["episodes"]) for r in rows] == [
        ("maze-fo-v0", 2),
        ("repeated-prisoners-dilemma-v0", 1),
        ("maze-fo-v0", 1),
        ("maze-fo-v0", 1),
    ]
    plain = tmp_path / "plain.jsonl"
    _write_plain(plain)
    refused = runner.invoke(main, ["data", "import", str(plain), "--db", target])
    assert refused.exit_code == 2 and "--env ID" in refused.stderr
    accepted = runner.invoke(main, ["data", "import", str(plain), "--db", target, "--env", "maze-fo-v0"])
    assert accepted.exit_code == 0 and re.fullmatch(r"r-[0-9a-f]{8}\n", accepted.stdout)
    assert len(Store(target).list_runs()) == 5

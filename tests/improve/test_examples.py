"""Training examples: exact tokens from the real embedded model (slow), the template fallback compared with the
requests the prompt agent really sent, labels on the agent's tokens only, and the refusals of empty runs.

The fast tests load only the embedded model's tokenizer (the real SmolLM2 one; no weights) and play episodes
for real with scripted policies or scripted models, which record every request they receive."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from palaestra.agents.prompt import PromptAgent, PromptConfig, demonstrations
from palaestra.core import ChatRequest, Completion, Episode, SpecError
from palaestra.envs.registry import make_from_spec
from palaestra.improve.adp import import_adp
from palaestra.improve.examples import (
    IGNORE_INDEX,
    NoTrainingDataError,
    TrainingExample,
    examples_from_episodes,
    examples_from_runs,
)
from palaestra.models.scripted import ScriptedModel
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import Store

IM_END = "<|im_end|>"


@pytest.fixture(scope="module")
def tokenizer(embedded_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedded_dir))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'runs.db'}")


async def _play(store: Store, env_id: str, agent: str, episodes: int, model: Any = None, **kw: Any) -> str:
    config = EvalConfig(envs=(env_id,), agents=(agent,), episodes=episodes, split="train", concurrency=4, **kw)
    return (await evaluate(config, store, model=model, progress=False)).run_ids[0]


def _template(tokenizer: Any, messages: Any) -> list[int]:
    """What LocalModel.prompt_token_ids does (the slow test checks this against the real LocalModel)."""
    chat = [{"role": m.role, "content": m.content} for m in messages]
    return list(
        tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    )


def _check_labels(example: TrainingExample) -> None:
    """Labels are -100 on a prefix and equal the input ids on the rest."""
    n = example.prompt_length
    assert 0 < n < len(example.input_ids)
    assert example.labels[:n] == [IGNORE_INDEX] * n
    assert example.labels[n:] == example.input_ids[n:]


# --------------------------------------------------------------------------- the template fallback


async def test_scripted_policy_data_is_templated_as_the_prompt_agent_would(store: Store, tokenizer: Any) -> None:
    run_id = await _play(store, "maze-fo-v0", "optimal", 2, max_turns=4)
    episodes = store.episodes(run_id, with_turns=True)
    examples = await asyncio.to_thread(examples_from_runs, store, [run_id], tokenizer=tokenizer)
    assert len(examples) == sum(len(e.turns) for e in episodes) > 2
    env = make_from_spec(store.get_run(run_id).env_spec)
    agent = PromptAgent(ScriptedModel("echo"), PromptConfig())
    shots = await demonstrations(env, 2)
    assert len(shots) == 4  # the default prompt agent shows two demonstration turns
    i = 0
    for episode in episodes:
        for t, turn in enumerate(episode.turns):
            example = examples[i]
            i += 1
            _check_labels(example)
            expected = _template(tokenizer, agent.messages(env, episode.turns[:t], turn.observation, shots))
            assert example.prompt_ids == expected
            assert tokenizer.decode(example.prompt_ids).endswith(
                f"<|im_start|>user\n{turn.observation}{IM_END}\n<|im_start|>assistant\n"
            )
            # The reply is the action text and the end-of-turn token, nothing else.
            assert example.completion_ids == tokenizer(turn.action.text, add_special_tokens=False)["input_ids"] + [
                tokenizer.convert_tokens_to_ids(IM_END)
            ]
            assert tokenizer.decode(example.completion_ids) == f"{turn.action.text}{IM_END}"
            assert example.source == {
                "run_id": run_id,
                "env_id": "maze-fo-v0",
                "seed": episode.seed,
                "turn": t,
                "agent": None,
                "round": None,
                "reward": turn.step.reward,
                "episode_return": episode.total_return,
                "player_return": episode.total_return,
                "success": episode.success,
                "model": None,
                "finish_reason": None,
                "tokens": "template",
                "template_reason": "no model call (scripted or imported)",
            }


async def test_rebuilt_prompts_equal_the_requests_really_sent(store: Store, tokenizer: Any) -> None:
    """A prompt agent on a scripted model: the model kept every request; the fallback must rebuild each one."""
    model = ScriptedModel(
        ["move up", "Let me think.\nAction: move left", "garbage ✓"], spec="scripted:moves", honor_max_tokens=False
    )
    run_id = await _play(store, "maze-fo-v0", "prompt:history=1", 2, model, max_turns=3)
    examples = await asyncio.to_thread(examples_from_runs, store, [run_id], tokenizer=tokenizer)
    sent = sorted(_template(tokenizer, r.messages) for r in model.requests)
    assert len(sent) == len(examples) == 6
    assert sorted(e.prompt_ids for e in examples) == sent
    for example in examples:
        _check_labels(example)
        # The byte "tokens" of a scripted model are not this tokenizer's: re-templated with its full reply.
        assert example.source["tokens"] == "template"
        assert example.source["template_reason"] == "the token ids are not this tokenizer's"
        assert example.source["model"] == "scripted:moves"
    replies = {tokenizer.decode(e.completion_ids) for e in examples}
    assert replies == {f"move up{IM_END}", f"Let me think.\nAction: move left{IM_END}", f"garbage ✓{IM_END}"}


async def test_multi_agent_prompts_and_player_selection(store: Store, tokenizer: Any) -> None:
    model = ScriptedModel(["cooperate", "Option: defect"], spec="scripted:pd")
    run_id = await _play(store, "repeated-prisoners-dilemma-v0", "prompt:shots=1", 1, model, max_turns=3)
    examples = await asyncio.to_thread(examples_from_runs, store, [run_id], tokenizer=tokenizer)
    assert sorted(e.prompt_ids for e in examples) == sorted(_template(tokenizer, r.messages) for r in model.requests)
    assert [(e.source["agent"], e.source["round"]) for e in examples] == [
        (p, r) for r in range(3) for p in ("player_0", "player_1")
    ]
    (episode,) = store.episodes(run_id, with_turns=True)
    for e in examples:
        assert e.source["player_return"] == episode.metrics["returns"][e.source["agent"]]
    # Called straight from a running event loop: the demonstrations are then played in a helper thread.
    only = examples_from_runs(store, [run_id], tokenizer=tokenizer, agents={"player_1"})
    assert [e.source["agent"] for e in only] == ["player_1"] * 3
    assert [e.input_ids for e in only] == [e.input_ids for e in examples if e.source["agent"] == "player_1"]


async def test_team_turns_are_templated_with_the_team_answer(store: Store, tokenizer: Any) -> None:
    model = ScriptedModel(["move down", "Action: move down", "move right"], spec="scripted:team")
    run_id = await _play(store, "maze-fo-v0", "independent:3/prompt:shots=0", 1, model, max_turns=2)
    (episode,) = store.episodes(run_id, with_turns=True)
    examples = await asyncio.to_thread(examples_from_runs, store, [run_id], tokenizer=tokenizer)
    assert len(examples) == len(episode.turns) == 2
    for example, turn in zip(examples, episode.turns, strict=True):
        assert len(turn.action.calls) > 1
        assert example.source["template_reason"] == "the final call's reply is not the action (a team's decision)"
        assert tokenizer.decode(example.completion_ids) == f"{turn.action.text}{IM_END}"


async def test_prompt_config_shots_zero(store: Store, tokenizer: Any) -> None:
    run_id = await _play(store, "maze-fo-v0", "optimal", 1, max_turns=2)
    (episode,) = store.episodes(run_id, with_turns=True)
    config = PromptConfig(shots=0, history=0)
    examples = await asyncio.to_thread(examples_from_runs, store, [run_id], tokenizer=tokenizer, prompt_config=config)
    env = make_from_spec(store.get_run(run_id).env_spec)
    system = PromptAgent(ScriptedModel("echo"), config).messages(env, [], "")[0].content
    for example, turn in zip(examples, episode.turns, strict=True):
        assert tokenizer.decode(example.prompt_ids) == (
            f"<|im_start|>system\n{system}{IM_END}\n<|im_start|>user\n{turn.observation}{IM_END}\n"
            "<|im_start|>assistant\n"
        )


# --------------------------------------------------------------------------- exact tokens (by hand)


def _exact_episode(tokenizer: Any, env_id: str = "maze-fo-v0") -> tuple[Episode, list[int], list[int]]:
    """An episode whose one call carries this tokenizer's tokens, as a local model records them."""
    from palaestra.core import Action, Step, Turn

    prompt = _template(tokenizer, [_msg("system", "Be brief."), _msg("user", "You are at 1, 1.")])
    completion = tokenizer("move up", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    call = Completion(
        text="move up", model="smollm2-135m", prompt_token_ids=tuple(prompt), completion_token_ids=tuple(completion)
    )
    turn = Turn("You are at 1, 1.", Action("move up", raw="move up", calls=(call,)), Step("done", 0.0, True))
    return Episode(env_id, 3, turns=[turn], total_return=0.0, terminated=True), prompt, completion


def _msg(role: str, content: str) -> Any:
    from palaestra.core import Message

    return Message(role, content)  # type: ignore[arg-type]


def test_exact_tokens_are_used_unchanged(tokenizer: Any) -> None:
    episode, prompt, completion = _exact_episode(tokenizer)
    (example,) = examples_from_episodes([episode], tokenizer=tokenizer, run_id="r-hand")
    assert example.input_ids == prompt + completion
    assert example.labels == [IGNORE_INDEX] * len(prompt) + completion
    assert example.completion_ids[-1] == tokenizer.eos_token_id
    assert (example.source["tokens"], example.source["template_reason"], example.source["run_id"]) == (
        "exact",
        None,
        "r-hand",
    )
    # The same tokens when exact tokens are required; error episodes give nothing.
    assert examples_from_episodes([episode], tokenizer=tokenizer, run_id="r-hand", require_exact=True) == [example]
    failed = dataclasses.replace(episode, status="error", error="ModelError: timeout")
    assert examples_from_episodes([failed], tokenizer=tokenizer) == []


def test_foreign_tokens_are_not_trusted(tokenizer: Any) -> None:
    episode, _, _ = _exact_episode(tokenizer)
    turn = episode.turns[0]
    call = dataclasses.replace(turn.action.calls[0], completion_token_ids=tuple(b"move up"))
    bad = dataclasses.replace(
        episode, turns=[dataclasses.replace(turn, action=dataclasses.replace(turn.action, calls=(call,)))]
    )
    (example,) = examples_from_episodes([bad], tokenizer=tokenizer)
    assert example.source["tokens"] == "template"
    assert tokenizer.decode(example.completion_ids) == f"move up{IM_END}"
    with pytest.raises(SpecError, match=r"seed 3 turn 0 of maze-fo-v0 has no exact tokens .*not this tokenizer"):
        examples_from_episodes([bad], tokenizer=tokenizer, require_exact=True)


def test_special_token_text_in_a_reply_is_plain_text(tokenizer: Any) -> None:
    episode, _, _ = _exact_episode(tokenizer)
    turn = episode.turns[0]
    text_only = dataclasses.replace(turn, action=dataclasses.replace(turn.action, raw=f"up {IM_END} down", calls=()))
    (example,) = examples_from_episodes(
        [dataclasses.replace(episode, turns=[text_only])], tokenizer=tokenizer, prompt_config=PromptConfig(shots=0)
    )
    eos = tokenizer.convert_tokens_to_ids(IM_END)
    assert example.completion_ids.count(eos) == 1 and example.completion_ids[-1] == eos


# --------------------------------------------------------------------------- nothing to train on


async def test_all_failed_runs_are_refused(store: Store, tokenizer: Any) -> None:
    model = ScriptedModel(["move up"], spec="scripted:fail", fail_on_calls=range(1, 100))
    failed = await _play(store, "maze-fo-v0", "prompt:shots=0", 3, model, max_turns=2)
    good = await _play(store, "maze-fo-v0", "optimal", 1, max_turns=2)
    with pytest.raises(NoTrainingDataError, match=rf"nothing to train on: run {failed} has 0 ok episodes \(3 errors\)"):
        await asyncio.to_thread(examples_from_runs, store, [good, failed], tokenizer=tokenizer)
    with pytest.raises(NoTrainingDataError, match=r"the filter kept none of the 1 ok episodes"):
        await asyncio.to_thread(examples_from_runs, store, [good], tokenizer=tokenizer, filter=lambda e: False)
    with pytest.raises(NoTrainingDataError, match="no runs given"):
        examples_from_runs(store, [], tokenizer=tokenizer)


async def test_examples_from_a_plain_adp_import(store: Store, tokenizer: Any, tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text(
        '{"schema_version": "1.2.0", "id": "a", "details": {}, "content": ['
        '{"class_": "text_observation", "content": "You are at 0, 0.", "source": "environment"},'
        '{"class_": "message_action", "content": "move down", "reward": -1.0},'
        '{"class_": "text_observation", "content": "Done.", "source": "environment"}]}\n',
        encoding="utf-8",
    )
    (run_id,) = import_adp(store, path, env_id="maze-fo-v0")
    (example,) = await asyncio.to_thread(
        examples_from_runs, store, [run_id], tokenizer=tokenizer, prompt_config=PromptConfig(shots=0)
    )
    assert tokenizer.decode(example.completion_ids) == f"move down{IM_END}"
    assert tokenizer.decode(example.prompt_ids).endswith(
        f"<|im_start|>user\nYou are at 0, 0.{IM_END}\n<|im_start|>assistant\n"
    )


# --------------------------------------------------------------------------- the real model (slow)


@pytest.mark.slow
async def test_exact_tokens_round_trip_with_the_embedded_model(local_model: Any, tmp_path: Path) -> None:
    """The tokens trained on are the tokens the model saw and generated, read back from a SQLite store."""
    db = f"sqlite:///{tmp_path / 'real.db'}"
    with Store(db) as store:
        run_id = await _play(store, "maze-fo-v0", "prompt", 2, local_model, max_turns=3)
    with Store(db, readonly=True) as store:  # a fresh connection: everything comes from the file
        run = store.get_run(run_id)
        episodes = store.episodes(run_id, with_turns=True)
        examples = await asyncio.to_thread(examples_from_runs, store, [run_id], tokenizer=local_model.tokenizer)
    env = make_from_spec(run.env_spec)
    agent = PromptAgent(local_model, PromptConfig())
    shots = await demonstrations(env, PromptConfig().shots)
    turns = [(e, t, turn) for e in episodes for t, turn in enumerate(e.turns)]
    assert len(examples) == len(turns) >= 4
    stopped = 0
    for example, (episode, t, turn) in zip(examples, turns, strict=True):
        call = turn.action.calls[-1]
        assert example.source["tokens"] == "exact"
        _check_labels(example)
        # The prompt trained on is what LocalModel builds for the request the agent sent...
        request = ChatRequest(agent.messages(env, episode.turns[:t], turn.observation, shots))
        assert example.prompt_ids == local_model.prompt_token_ids(request) == list(call.prompt_token_ids)
        # ... and the labelled tokens are exactly the generated ones, end-of-turn token included.
        assert example.completion_ids == list(call.completion_token_ids)
        assert len(example.completion_ids) == call.usage.completion_tokens
        if call.finish_reason == "stop":
            stopped += 1
            assert example.completion_ids[-1] in local_model.eos_ids
        else:
            assert example.completion_ids[-1] not in local_model.eos_ids
        # The fallback rebuilds the very same prompt for this turn.
        templated = examples_from_episodes(
            [dataclasses.replace(episode, turns=episode.turns[: t + 1])],
            tokenizer=local_model.tokenizer,
            env=run.env_spec,
            agent_spec=run.agent_spec,
        )[-1]
        assert templated.source["tokens"] == "exact"
        stripped = dataclasses.replace(turn, action=dataclasses.replace(turn.action, calls=()))
        rebuilt = examples_from_episodes(
            [dataclasses.replace(episode, turns=[*episode.turns[:t], stripped])],
            tokenizer=local_model.tokenizer,
            env=run.env_spec,
            agent_spec=run.agent_spec,
        )[-1]
        assert rebuilt.source["tokens"] == "template"
        assert rebuilt.prompt_ids == example.prompt_ids
    assert stopped > 0  # at least one reply ended on the end-of-turn token, so that case was checked


# --------------------------------------------------------------------------- the hf export


async def test_cli_hf_export(store: Store, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from palaestra.cli import main

    good = await _play(store, "maze-fo-v0", "optimal", 2, max_turns=3)
    model = ScriptedModel(["move up"], spec="scripted:fail", fail_on_calls=range(1, 100))
    failed = await _play(store, "maze-fo-v0", "prompt:shots=0", 2, model, max_turns=2)
    runner = CliRunner()
    out = tmp_path / "dataset"
    args = ["data", "export", "--format", "hf", "--db", store.url, "-o", str(out)]
    refused = await asyncio.to_thread(runner.invoke, main, [*args, good, failed])
    assert refused.exit_code == 2
    assert f"nothing to train on: run {failed} has 0 ok episodes (2 errors)" in refused.stderr
    assert not out.exists()  # nothing written
    done = await asyncio.to_thread(runner.invoke, main, [*args, good, "--prompt", "shots=0,history=1"])
    assert done.exit_code == 0, done.output
    import datasets

    dataset = datasets.load_from_disk(str(out))
    episodes = store.episodes(good, with_turns=True)
    assert dataset.num_rows == sum(len(e.turns) for e in episodes)
    assert dataset.features["agent"] == datasets.Value("string")
    first = dataset[0]
    assert first["run_id"] == good and first["tokens"] == "template" and first["agent"] is None
    assert len(first["input_ids"]) == len(first["labels"])
    trained = [t for t in first["labels"] if t != IGNORE_INDEX]
    assert trained == first["input_ids"][-len(trained) :]
    assert f"wrote {dataset.num_rows} examples (0 with exact tokens" in done.stderr


# --------------------------------------------------------------------------- docs/data.md


DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_doc_python_block_prints_what_the_doc_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = re.findall(r"```python\n(.*?)```\n\n```\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(pairs) == 1
    monkeypatch.chdir(tmp_path)
    code, shown = pairs[0]
    exec(compile(code, "docs/data.md", "exec"), {"__name__": "palaestra_data_doc"})
    assert capsys.readouterr().out == shown


def test_doc_commands_run(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (script,) = _blocks("bash")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "maze.adp.jsonl").read_text(encoding="utf-8").splitlines()) == 5
    assert len((tmp_path / "maze.jsonl").read_text(encoding="utf-8").splitlines()) == 5
    assert (tmp_path / "maze-dataset" / "dataset_info.json").exists()
    assert re.fullmatch(r"r-[0-9a-f]{8}\n", done.stdout)  # the id of the imported run

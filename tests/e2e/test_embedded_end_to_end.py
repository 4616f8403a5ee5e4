"""End to end with the real embedded SmolLM2-135M: the prompt agent plays real games, every turn is stored
with the exact tokens the model saw and produced, and the CLI survives Ctrl-C and resumes.

These use the real model (a few tokens per second per sequence on 2 cores), so episodes are kept short.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from palaestra.agents import PromptAgent, PromptConfig
from palaestra.agents.prompt import demonstrations
from palaestra.envs import make
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import Store

pytestmark = pytest.mark.slow


async def test_prompt_agent_plays_maze_and_wordle_with_exact_tokens_stored(local_model, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'e2e.db'}")
    config = EvalConfig(envs=("maze-fo-v0", "wordle-v0"), agents=("prompt",), episodes=3, max_turns=3)
    result = await evaluate(config, store, model=local_model, progress=False)
    assert result.errors == 0 and result.ok == 6
    tokenizer = local_model.tokenizer
    for run_id in result.run_ids:
        run = store.get_run(run_id)
        assert run.model_spec == "smollm2-135m" and run.weights_hash == local_model.weights_hash
        env = make(run.env_id, max_turns=3)
        for episode in store.episodes(run_id, with_turns=True):
            assert episode.status == "ok" and 1 <= len(episode.turns) <= 3
            for turn in episode.turns:
                (call,) = turn.action.calls
                assert call.completion_token_ids and len(call.logprobs) == len(call.completion_token_ids)
                assert all(lp <= 0.0 for lp in call.logprobs)
                # the stored tokens are what the model produced: they decode to its reply
                assert tokenizer.decode(call.completion_token_ids, skip_special_tokens=True) == turn.action.raw
                assert call.usage.completion_tokens == len(call.completion_token_ids)
                # whatever the reply, the environment judged it: valid moves or declared invalid actions
                assert isinstance(turn.step.info["invalid_action"], bool)
            # the first prompt is exactly the chat template applied to what the agent was shown
            first = episode.turns[0].action.calls[0]
            shots = await demonstrations(env, PromptConfig().shots)
            messages = PromptAgent(local_model).messages(env, [], episode.first_observation, shots)
            expected = tokenizer.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in messages], add_generation_prompt=True, tokenize=True
            )
            expected = expected if isinstance(expected, list) else expected["input_ids"]
            assert list(first.prompt_token_ids) == list(expected)
    store.close()


def _count(db_path, status="ok"):
    try:
        with sqlite3.connect(db_path, timeout=5) as conn:
            return conn.execute("select count(*) from episodes where status = ?", (status,)).fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def test_cli_ctrl_c_keeps_finished_episodes_and_resume_completes(tmp_path, embedded_dir):
    db_path = tmp_path / "interrupted.db"
    cmd = [
        sys.executable,
        "-m",
        "palaestra.cli",
        "eval",
        "maze-fo-v0",
        "--agent",
        "prompt",
        "--model",
        "smollm2-135m",
        "-n",
        "6",
        "-c",
        "2",
        "--max-turns",
        "4",
        "--db",
        str(db_path),
        "--quiet",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while _count(db_path) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no episode finished within 300 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err
    kept = _count(db_path)
    assert 2 <= kept < 6

    with Store(str(db_path), readonly=True) as store:
        (run,) = store.list_runs()
        assert run.status == "interrupted"
        assert len(store.pending_seeds(run.id)) == 6 - kept

    resumed = subprocess.run(
        [sys.executable, "-m", "palaestra.cli", "eval", "--resume", run.id, "--db", str(db_path), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    with Store(str(db_path), readonly=True) as store:
        episodes = store.episodes(run.id)
        assert sorted(e.seed for e in episodes) == list(range(11_000, 11_006))
        assert all(e.status == "ok" for e in episodes)
        assert store.get_run(run.id).status == "complete"

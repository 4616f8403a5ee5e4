"""`palaestra data generate`, `--env-arg`, and scores averaged over tasks, on real SQLite files."""

import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from palaestra.cli import main, parse_env_args, suite_envs
from palaestra.core.errors import UnknownSpecError
from palaestra.core.types import Normalization
from palaestra.envs import make, registered
from palaestra.envs.suites import SUITES, suite, suite_of
from palaestra.eval import average_score


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'data.db'}"


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_data_generate_stores_scripted_trajectories_on_train_seeds(db, tmp_path):
    result = invoke(
        "data",
        "generate",
        "maze-fo-v0",
        "--policy",
        "noisy",
        "--policy",
        "optimal",
        "-n",
        "5",
        "--db",
        db,
        "--json",
        "-q",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["ok"] == 10 and out["errors"] == 0
    by_policy = {r["policy"]: r for r in out["runs"]}
    assert by_policy["optimal"]["success_rate"] == 1.0
    # the noisy mixture wastes moves: never better than optimal on the same seeds
    assert by_policy["noisy"]["mean_return"] <= by_policy["optimal"]["mean_return"]
    runs = json.loads(invoke("runs", "--db", db, "--json").output)
    assert {r["config"]["purpose"] for r in runs} == {"data"}
    assert all(r["config"]["split"] == "train" and r["config"]["seeds"] == [0, 1, 2, 3, 4] for r in runs)
    exported = tmp_path / "optimal.jsonl"
    assert invoke("export", by_policy["optimal"]["run_id"], "--db", db, "-o", str(exported)).exit_code == 0
    episodes = [json.loads(line) for line in exported.read_text().splitlines()]
    assert len(episodes) == 5 and all(e["turns"] for e in episodes)


def test_data_generate_refuses_model_agents_and_unknown_policies(db):
    result = CliRunner().invoke(main, ["data", "generate", "maze-fo-v0", "--policy", "prompt", "--db", db])
    assert result.exit_code == 2 and "model agent" in result.output
    result = CliRunner().invoke(main, ["data", "generate", "maze-fo-v0", "--policy", "optimall", "--db", db])
    assert result.exit_code == 2 and "Did you mean 'optimal'" in result.output
    result = CliRunner().invoke(main, ["data", "generate", "--db", db])
    assert result.exit_code == 2 and "at least one environment" in result.output


def test_env_args_parse_json_values_and_target_one_env():
    assert parse_env_args(["max_turns=7", "wordle-v0:hard=true", "twenty-questions-v0:oracle=smollm2-135m"]) == {
        "*": {"max_turns": 7},
        "wordle-v0": {"hard": True},
        "twenty-questions-v0": {"oracle": "smollm2-135m"},
    }
    # a value may itself contain ':' and '=' (a model spec with a URL)
    assert parse_env_args(["car-dealer-v0:buyer=openai:m@http://127.0.0.1:8000/v1"]) == {
        "car-dealer-v0": {"buyer": "openai:m@http://127.0.0.1:8000/v1"}
    }
    with pytest.raises(click.BadParameter, match="KEY=VALUE"):
        parse_env_args(["oracle"])


def test_env_args_reach_the_environment_and_its_stored_spec(db):
    result = invoke(
        "eval", "maze-fo-v0", "--agent", "optimal", "-n", "2", "--env-arg", "layout=zigzag", "--db", db, "--json", "-q"
    )
    assert result.exit_code == 0, result.output
    runs = json.loads(invoke("runs", "--db", db, "--json").output)
    assert runs[0]["env_spec"]["kwargs"]["layout"] == "zigzag"
    bad = CliRunner().invoke(
        main, ["eval", "maze-fo-v0", "--agent", "optimal", "-n", "1", "--env-arg", "colour=red", "--db", db]
    )
    assert bad.exit_code == 2 and "colour" in bad.output
    stray = CliRunner().invoke(
        main, ["eval", "maze-fo-v0", "--agent", "optimal", "-n", "1", "--env-arg", "wordle-v0:x=1", "--db", db]
    )
    assert stray.exit_code == 2 and "does not play" in stray.output


def test_show_averages_scores_over_tasks(db):
    out = json.loads(
        invoke(
            "eval",
            "maze-fo-v0",
            "wordle-v0",
            "--agent",
            "optimal",
            "--agent",
            "random",
            "-n",
            "6",
            "--db",
            db,
            "--json",
            "-q",
        ).output
    )
    averages = {a["agent"]: a for a in out["averages"]}
    assert set(averages) == {"optimal", "random"}
    for agent, avg in averages.items():
        runs = [r for r in out["runs"] if r["agent"] == agent]
        assert avg["score"] == pytest.approx(np.mean([r["score"] for r in runs]))
        assert avg["ci"][0] <= avg["score"] <= avg["ci"][1]
        assert avg["tasks"] == ["maze-fo-v0", "wordle-v0"] and avg["suite"] is None
    assert averages["optimal"]["score"] > averages["random"]["score"]
    ids = [r["run_id"] for r in out["runs"]]
    shown = json.loads(invoke("show", *ids, "--db", db, "--json").output)
    assert shown["averages"] == out["averages"]
    text = invoke("show", *ids, "--db", db).output
    assert "averaged over tasks" in text and "2 tasks" in text


def test_average_score_weighs_tasks_equally_and_its_interval_covers_it():
    norm = Normalization(-10.0, -5.0, 0.0)
    score, ci, per_task = average_score({"a": [0.0, 0.0], "b": [-10.0, -10.0]}, {"a": norm, "b": norm})
    assert per_task == {"a": 100.0, "b": 0.0} and score == 50.0 and ci == (50.0, 50.0)
    score, ci, _ = average_score({"a": [0.0, -10.0, -5.0], "b": [-5.0]}, {"a": norm, "b": norm})
    assert ci[0] < score < ci[1]


def test_suites_name_registered_environments():
    for name, ids in SUITES.items():
        assert suite(name) == ids and suite_of(frozenset(ids)) == name
        missing = set(ids) - set(registered())
        assert not missing, f"suite {name} names unregistered environments {missing}"
    assert suite_envs(["wordle-v0"], ["lmrl"])[0] == "wordle-v0" and len(suite_envs(["wordle-v0"], ["lmrl"])) == 10
    with pytest.raises(UnknownSpecError, match="lmrl"):
        suite("lmr")


def test_every_suite_task_has_normalisation_constants_and_three_policies():
    for env_id in suite("lmrl"):
        env = make(env_id)
        assert env.spec.normalization is not None, env_id
        assert {"optimal", "random", "noisy"} <= set(env.scripted_policies()), env_id

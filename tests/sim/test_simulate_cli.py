"""``palaestra simulate`` end to end: scripted policy, the scripted model, the stored steps, bad input."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from palaestra.cli import main
from palaestra.store import Store


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_scripted_policy_json_and_stored_steps(tmp_path: Path) -> None:
    db = str(tmp_path / "sim.db")
    result = invoke("simulate", "commons", "--agents", "400", "--steps", "3", "--seed", "5", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [s["step"] for s in payload["steps"]] == [0, 1, 2]
    assert payload["config"]["policy"] == "scripted" and payload["memory_estimate_bytes"] > 0
    with Store(db, readonly=True) as store:
        stored = store.sim_steps(payload["run_id"])
        assert store.get_run(payload["run_id"]).env_id == "sim:commons"
    assert [s.metrics for s in stored] == [s["metrics"] for s in payload["steps"]]
    again = invoke("simulate", "commons", "-n", "400", "-t", "3", "--seed", "5", "--db", db, "--json")
    assert [s["metrics"] for s in json.loads(again.stdout)["steps"]] == [s["metrics"] for s in payload["steps"]]


def test_scripted_model_table_with_fidelity(tmp_path: Path) -> None:
    db = str(tmp_path / "sim.db")
    result = invoke(
        "simulate",
        "network",
        "-n",
        "200",
        "-t",
        "2",
        "--model",
        "scripted:cycle:post|repost|follow",
        "--policy",
        "model",
        "--fidelity",
        "0.05",
        "--samples",
        "3",
        "--measure-fidelity",
        "10",
        "--db",
        db,
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["step", "posts", "reposts", "new_follows", "reach", "largest_cascade"]
    assert "fidelity_tvd" in lines[0] and len(lines) == 4  # header, rule, 2 steps
    with Store(db, readonly=True) as store:
        [run] = store.list_runs()
        steps = store.sim_steps(run.id)
    assert run.model_spec == "scripted:cycle:post|repost|follow" and run.agent_spec == "sim:model"
    for step in steps:
        assert step.metrics["own_calls"] == 10  # round(0.05 * 200)
        assert step.model_calls >= 10 + 3 * step.metrics["archetypes"] + 10
        assert step.metrics["fidelity_sample"] == 10
    assert "run r-" in result.stderr


def test_refusals_are_one_line_errors(tmp_path: Path) -> None:
    db = str(tmp_path / "sim.db")
    huge = invoke("simulate", "network", "--agents", "1000000000000", "--db", db)
    assert huge.exit_code == 2 and "needs about" in huge.stderr and "GiB" in huge.stderr
    assert not Path(db).exists()  # refused before any run was created
    no_model = invoke("simulate", "commons", "--policy", "model", "--db", db)
    assert no_model.exit_code == 2 and "needs a model" in no_model.stderr
    bad_mix = invoke("simulate", "commons", "--policy", "mix:x", "--db", db)
    assert bad_mix.exit_code == 2 and "mix:<share>" in bad_mix.stderr
    bad_option = invoke("simulate", "commons", "-o", "capacity", "--db", db)
    assert bad_option.exit_code == 2 and "KEY=VALUE" in bad_option.stderr

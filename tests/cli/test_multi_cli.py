"""The CLI on multi-agent environments: mixes with --agents, teams with --team, and `show` printing the
environment's own metrics (in-process, real SQLite, the toy environments of palaestra.testing.toys)."""

import json

import pytest
from click.testing import CliRunner

from palaestra.cli import agent_specs, main
from palaestra.testing.toys import register_toys

register_toys()


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'cli.db'}"


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_agent_specs_from_agent_agents_and_team():
    assert agent_specs([], [], None) == ("prompt",)
    assert agent_specs(["optimal"], ["greedy", "sustainable*4"], None) == ("optimal", "greedy + sustainable*4")
    assert agent_specs([], ["prompt", "random*2"], "dylan:3") == ("dylan:3/prompt + random*2",)
    assert agent_specs(["prompt", "optimal"], [], "independent:3") == ("independent:3/prompt", "optimal")


def test_eval_a_mix_and_show_its_metrics(db):
    result = invoke("eval", "toy-sum-v0", "--agents", "optimal", "--agents", "random*2", "-n", "4", "--db", db, "-q")
    assert result.exit_code == 0, result.output
    assert "agent=optimal + random*2" in result.output and "env metrics" in result.output
    out = json.loads(invoke("eval", "toy-countdown-v0", "--agent", "optimal", "-n", "3", "--db", db, "--json").output)
    (run,) = out["runs"]
    assert run["metrics"]["success"][0] == 1.0 and run["return_by_agent"] == {"optimal": 0.0}
    shown = json.loads(invoke("show", run["run_id"], "--db", db, "--json").output)["runs"][0]
    assert shown["metrics"] == run["metrics"] and shown["lineage"]["env_spec"]["multi_agent"] is True
    text = invoke("show", run["run_id"], "--db", db).output
    assert "return by agent optimal 0.00" in text


def test_bad_mix_is_a_clear_error(db):
    result = CliRunner().invoke(main, ["eval", "toy-sum-v0", "--agents", "optimal*2", "--db", db, "-q"])
    assert result.exit_code != 0 and "fills 2 seats but the environment has 3 players" in result.output


def test_envs_marks_multi_agent_ids():
    result = invoke("envs")
    line = next(row for row in result.output.splitlines() if row.startswith("toy-sum-v0"))
    assert " multi " in line


def test_team_runs_show_their_accounting_against_a_single_agent(db):
    # Every member of the scripted team answers 7, as does the single agent: same errors, amplification 1.
    model = ["--model", "scripted:cycle:Answer: 7", "-n", "4", "--db", db]
    out = json.loads(invoke("eval", "reasoning-arithmetic-v0", "--team", "independent:3", *model, "--json").output)
    (run,) = out["runs"]
    team = run["team"]
    assert run["agent"] == "independent:3/prompt" and team["episodes"] == 4
    assert team["messages_per_episode"] == 3.0 and team["rounds_per_episode"] == 1.0
    assert team["error_rate"] == 1.0 - run["success_rate"] == team["member_error_rate"]  # unanimous members
    single = json.loads(invoke("eval", "reasoning-arithmetic-v0", "--agent", "prompt", *model, "--json").output)
    assert single["runs"][0]["team"] is None
    shown = invoke("show", run["run_id"], single["runs"][0]["run_id"], "--db", db).output
    assert "team errors" in shown and f"(prompt, run {single['runs'][0]['run_id']})" in shown


def test_show_compares_success_by_number_of_agents(db):
    ids = []
    for n in (2, 5):
        out = invoke(
            "eval", "toy-sum-v0", "--env-arg", f"n_players={n}", "--agent", "optimal", "-n", "3", "--db", db, "--json"
        )
        (run,) = json.loads(out.output)["runs"]
        assert run["n_players"] == n
        ids.append(run["run_id"])
    text = invoke("show", *ids, "--db", db).output
    table = text[text.index("success by number of agents") :].splitlines()
    # optimal says budget // players: with 2 players 6 + 6 = 12 fits the budget (12 to 15); with 5 players 2 each
    assert [line.split()[2] for line in table[3:5]] == ["2", "5"] and all(
        "1.00 [1.00, 1.00]" in line for line in table[3:5]
    )

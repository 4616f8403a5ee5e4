"""The ``palaestra`` command in-process (click's runner) on real SQLite files, with scripted agents."""

import json
import sqlite3

import pytest
from click.testing import CliRunner

from palaestra.cli import main


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'cli.db'}"


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_envs_lists_builtins_as_table_and_json():
    result = invoke("envs")
    assert result.exit_code == 0
    for env_id in ("maze-fo-v0", "maze-po-v0", "wordle-v0"):
        assert env_id in result.output
    specs = json.loads(invoke("envs", "--json").output)
    by_id = {s["id"]: s for s in specs}
    assert by_id["wordle-v0"]["max_turns"] == 6
    assert set(by_id["maze-fo-v0"]["splits"]) == {"train", "validation", "test"}


def test_eval_runs_show_export_round_trip(db, tmp_path):
    result = invoke(
        "eval",
        "maze-fo-v0",
        "wordle-v0",
        "--agent",
        "optimal",
        "--agent",
        "random",
        "-n",
        "4",
        "--db",
        db,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "success [95% CI]" in result.output and "maze-fo-v0" in result.output

    listed = json.loads(invoke("runs", "--db", db, "--json").output)
    assert len(listed) == 4 and {r["status"] for r in listed} == {"complete"}
    optimal_maze = next(r for r in listed if r["env_id"] == "maze-fo-v0" and r["agent_spec"] == "optimal")
    assert optimal_maze["config"]["seeds"] == [11000, 11001, 11002, 11003]

    shown = json.loads(invoke("show", optimal_maze["id"][:6], "--db", db, "--json").output)["runs"]
    assert shown[0]["success_rate"] == 1.0 and shown[0]["episodes"] == 4
    assert shown[0]["score"] >= 99.0  # optimal play is the 100 of the normalised scale
    assert shown[0]["lineage"]["env_version"] == 0

    text = invoke("show", optimal_maze["id"], "--db", db).output
    assert "success rate    1.00 [1.00, 1.00]" in text and "lineage" in text

    out = tmp_path / "run.jsonl"
    exported = invoke("export", optimal_maze["id"], "-o", str(out), "--db", db)
    assert exported.exit_code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4
    assert sum(len(line["turns"]) for line in lines) > 0


def test_eval_json_output_matches_show(db):
    result = invoke("eval", "maze-po-v0", "--agent", "noisy", "-n", "5", "--db", db, "--json")
    payload = json.loads(result.output)
    (summary,) = payload["runs"]
    shown = json.loads(invoke("show", summary["run_id"], "--db", db, "--json").output)["runs"][0]
    for key in ("mean_return", "return_ci", "success_rate", "score", "invalid_action_rate", "tokens"):
        assert shown[key] == summary[key]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "maze-fo-v1", "--agent", "optimal"], "maze-fo-v0"),
        (["eval", "maze-fo-v0", "--agent", "optimum"], "optimal"),
        (["eval", "maze-fo-v0", "--model", "smollm3-135m"], "smollm2-135m"),
        (["eval", "maze-fo-v0", "--agent", "optimal", "-n", "5000"], "fewer episodes"),
        (["show", "r-doesnotexist"], "does not exist"),
    ],
)
def test_bad_input_gets_a_clear_error(db, args, message):
    result = CliRunner().invoke(main, [*args, "--db", db])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_run_names_how_to_list_runs(db):
    assert invoke("eval", "maze-fo-v0", "--agent", "optimal", "-n", "1", "--db", db, "-q").exit_code == 0
    result = CliRunner().invoke(main, ["show", "r-doesnotexist", "--db", db])
    assert result.exit_code == 2 and "palaestra runs" in result.output


def test_not_a_palaestra_database_is_refused_and_left_intact(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table invoices (id integer primary key, amount real)")
        conn.execute("insert into invoices (amount) values (12.5)")
    result = CliRunner().invoke(main, ["eval", "maze-fo-v0", "--agent", "optimal", "-n", "2", "--db", str(path)])
    assert result.exit_code == 2 and "palaestra" in result.output
    with sqlite3.connect(path) as conn:
        assert conn.execute("select amount from invoices").fetchall() == [(12.5,)]
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    assert tables == {"invoices"}


def test_usage_errors():
    assert CliRunner().invoke(main, ["eval"]).exit_code == 2
    assert "--resume" in CliRunner().invoke(main, ["eval", "--help"]).output


@pytest.mark.postgres
def test_eval_show_and_resume_on_postgresql(pg_url):
    """The same commands, unchanged, against a real PostgreSQL server."""
    result = invoke("eval", "wordle-v0", "--agent", "optimal", "--agent", "noisy", "-n", "3", "--db", pg_url, "--json")
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)["runs"]
    assert [r["episodes"] for r in runs] == [3, 3]
    optimal = next(r for r in runs if r["agent"] == "optimal")
    assert optimal["success_rate"] == 1.0
    shown = json.loads(invoke("show", optimal["run_id"], "--db", pg_url, "--json").output)["runs"][0]
    assert shown["mean_return"] == optimal["mean_return"]
    listed = json.loads(invoke("runs", "--db", pg_url, "--json").output)
    assert {r["id"] for r in listed} == {r["run_id"] for r in runs}
    # nothing is missing, so resuming plays nothing and leaves the run complete
    resumed = json.loads(invoke("eval", "--resume", optimal["run_id"], "--db", pg_url, "--json").output)
    assert resumed["ok"] == 0 and resumed["runs"][0]["episodes"] == 3

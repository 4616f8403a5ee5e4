"""`palaestra report`: a self-contained HTML file whose numbers are those of `palaestra show --json`, checked
by parsing the HTML (html.parser), on a database filled by real runs of scripted agents and a team whose
model writes script tags."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from palaestra.cli import fmt, fmt_ci, main
from palaestra.models.scripted import ScriptedModel
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import Store

XSS = "<script>alert(1)</script>"


@dataclass
class Cell:
    attrs: dict[str, str | None]
    text: str = ""


@dataclass
class Row:
    table: str
    attrs: dict[str, str | None]
    cells: list[Cell] = field(default_factory=list)

    def field(self, name: str) -> Cell:
        return next(c for c in self.cells if c.attrs.get("data-field") == name)


class ReportParser(HTMLParser):
    """Collects every tag, the rows of every table (with their cells' attributes and text), the text, and
    the elements that carry a ``data-run``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[Row] = []
        self.text: list[str] = []
        self._tables: list[str] = []
        self._cell: Cell | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self._tables.append(a.get("class") or "")
        elif tag == "tr" and self._tables:
            self.rows.append(Row(self._tables[-1], a))
        elif tag in ("td", "th") and self.rows:
            self._cell = Cell(a)
            self.rows[-1].cells.append(self._cell)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._tables:
            self._tables.pop()
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.text += data


def parse(html: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(html)
    parser.close()
    return parser


async def fill(url: str) -> list[str]:
    store = Store(url)
    ids: list[str] = []
    for envs, agents in (
        (("maze-fo-v0", "maze-po-v0"), ("optimal", "random")),
        (("govsim-fishery-v0",), ("greedy + sustainable*4",)),
        (("agentsnet-coloring-v0",), ("optimal",)),
    ):
        result = await evaluate(EvalConfig(envs=envs, agents=agents, episodes=3), store, progress=False)
        ids += result.run_ids
    model = ScriptedModel([f"{XSS} no answer"], spec="scripted:<b>bold</b>", honor_max_tokens=False)
    team = await evaluate(
        EvalConfig(envs=("reasoning-arithmetic-v0",), agents=("independent:3/prompt",), episodes=2),
        store,
        model=model,
        progress=False,
    )
    store.close()
    return ids + team.run_ids


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'runs.db'}"
    return url, asyncio.run(fill(url))


@pytest.fixture(scope="module")
def report(filled: tuple[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ReportParser]:
    url, ids = filled
    out = tmp_path_factory.mktemp("out") / "report.html"
    result = CliRunner().invoke(main, ["report", *ids, "--db", url, "-o", str(out), "--trajectories", "8"])
    assert result.exit_code == 0, result.output
    assert f"wrote a report of {len(ids)} run(s) to {out}" in result.output
    html = out.read_text(encoding="utf-8")
    return html, parse(html)


@pytest.fixture(scope="module")
def shown(filled: tuple[str, list[str]]) -> dict[str, Any]:
    url, ids = filled
    result = CliRunner().invoke(main, ["show", *ids, "--db", url, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _float(value: str | None) -> float | None:
    return None if value in (None, "") else float(value)


def test_leaderboard_numbers_equal_show_json(report: tuple[str, ReportParser], shown: dict[str, Any]) -> None:
    _, parsed = report
    rows = {r.attrs["data-run"]: r for r in parsed.rows if r.table == "leaderboard" and r.attrs.get("data-run")}
    assert set(rows) == {run["run_id"] for run in shown["runs"]} and len(rows) == 7
    for run in shown["runs"]:
        row = rows[run["run_id"]]
        assert [c.text for c in row.cells[:3]] == [run["env_id"], run["agent"], run["model"] or "-"]
        assert int(row.field("episodes").attrs["data-value"] or -1) == run["episodes"]
        for name, ci, digits in (
            ("success_rate", "success_ci", 2),
            ("mean_return", "return_ci", 1),
            ("score", "score_ci", 1),
        ):
            cell = row.field(name)
            assert _float(cell.attrs["data-value"]) == run[name]
            interval = run[ci]
            assert (_float(cell.attrs.get("data-low")), _float(cell.attrs.get("data-high"))) == (
                tuple(interval) if interval else (None, None)
            )
            assert cell.text == fmt_ci(run[name], tuple(interval) if interval else None, digits)
        for name, digits in (("turns", 1), ("tokens", 0), ("seconds", 1)):
            assert _float(row.field(name).attrs["data-value"]) == run[name]
            assert row.field(name).text == fmt(run[name], digits)
        rate = run["invalid_action_rate"]
        assert _float(row.field("invalid_action_rate").attrs["data-value"]) == rate
        assert row.field("invalid_action_rate").text == f"{100 * rate:.0f}%"
    team = next(r for r in shown["runs"] if r["agent"] == "independent:3/prompt")
    assert team["invalid_action_rate"] == 1.0 and team["success_rate"] == 0.0  # nobody answered: all invalid


def test_task_averages_equal_show_json(report: tuple[str, ReportParser], shown: dict[str, Any]) -> None:
    _, parsed = report
    rows = [r for r in parsed.rows if r.table == "averages" and "data-agent" in r.attrs]
    assert len(shown["averages"]) == 2 == len(rows)  # optimal and random each played maze-fo and maze-po
    for average, row in zip(shown["averages"], rows, strict=True):
        assert row.attrs["data-agent"] == average["agent"]
        cell = row.field("score")
        assert _float(cell.attrs["data-value"]) == average["score"]
        assert [_float(cell.attrs["data-low"]), _float(cell.attrs["data-high"])] == average["ci"]
    # the per-task matrix shows each run's normalised score
    scores = {t[1].get("data-run"): _float(t[1].get("data-value")) for t in parsed.tags if t[0] == "span"}
    for run in shown["runs"]:
        if run["score"] is not None:
            assert scores[run["run_id"]] == run["score"]


def test_the_report_is_self_contained(report: tuple[str, ReportParser]) -> None:
    html, parsed = report
    names = {tag for tag, _ in parsed.tags}
    assert "script" not in names and "link" not in names and "img" not in names and "iframe" not in names
    for tag, attrs in parsed.tags:
        for key in ("src", "href", "action"):
            value = attrs.get(key)
            assert value is None or value.startswith("#"), (tag, key, value)  # only links within the page
    assert not re.search(r"url\((?!#)", html) and "@import" not in html  # CSS references stay in the file
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # (the SVG namespace is a name)
    csp = next(a["content"] for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and csp.startswith("default-src 'none'")
    assert sum(1 for t, _ in parsed.tags if t == "svg") >= 10  # overview and per-environment plots


def test_model_output_is_escaped(report: tuple[str, ReportParser]) -> None:
    html, parsed = report
    text = "".join(parsed.text)
    assert XSS in text and "scripted:<b>bold</b>" in text  # shown as text...
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # ...because it was escaped


def test_trajectories_and_lineage_of_every_run(report: tuple[str, ReportParser], shown: dict[str, Any]) -> None:
    _, parsed = report
    ids = {run["run_id"] for run in shown["runs"]}
    sampled = [a for t, a in parsed.tags if t == "details" and a.get("class") == "trajectory"]
    assert {a["data-run"] for a in sampled} == ids and 7 <= len(sampled) <= 14  # 8 asked: at least one per run
    lineage = {a["data-run"] for t, a in parsed.tags if t == "table" and a.get("class") == "kv lineage"}
    assert lineage == ids
    for run in shown["runs"]:
        assert run["lineage"]["id"] == run["run_id"]
    text = "".join(parsed.text)
    assert "small-world network" in text or "delaunay network" in text or "preferential-attachment network" in text
    assert "resource by month" in text and "who spoke to whom" in text


def test_the_same_report_twice_samples_the_same_episodes(filled: tuple[str, list[str]]) -> None:
    from palaestra.report import build_report

    url, ids = filled
    with Store(url, readonly=True) as store:
        first, second = (parse(build_report(store, ids[:2], trajectories=3)) for _ in range(2))
    picked = [
        [(a["data-run"], a["data-seed"]) for t, a in p.tags if t == "details" and a.get("class") == "trajectory"]
        for p in (first, second)
    ]
    assert picked[0] == picked[1] and len(picked[0]) == 4  # ceil(3 / 2) = 2 per run


def test_report_errors(filled: tuple[str, list[str]], tmp_path: Path) -> None:
    url, ids = filled
    unknown = CliRunner().invoke(main, ["report", "r-nothere", "--db", url, "-o", str(tmp_path / "x.html")])
    assert unknown.exit_code == 2 and "no run 'r-nothere'" in unknown.output
    nowhere = CliRunner().invoke(main, ["report", ids[0], "--db", url, "-o", str(tmp_path / "no" / "x.html")])
    assert nowhere.exit_code == 2 and "does not exist" in nowhere.output
    ambiguous = CliRunner().invoke(main, ["report", "r-", "--db", url, "-o", str(tmp_path / "x.html")])
    assert ambiguous.exit_code == 2 and "ambiguous" in ambiguous.output
    assert not (tmp_path / "x.html").exists()

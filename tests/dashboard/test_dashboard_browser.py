"""The dashboard in a real browser: headless Chromium (Playwright) against the app served by uvicorn on
127.0.0.1, over a database filled by real runs of scripted agents (fixtures in conftest.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dashboard_support import XSS, XSS_SPEC, Filled, Page

from palaestra.eval import bootstrap_ci
from palaestra.store import Store

try:
    from playwright.sync_api import expect
except ImportError as exc:  # a dev dependency; CI installs it, so there it must not be skipped silently
    if os.environ.get("CI"):
        raise
    pytest.skip(f"playwright is not installed ({exc}): pip install -e '.[dev]'", allow_module_level=True)


def pages(f: Filled) -> dict[str, str]:
    return {
        "runs": "/",
        "runs-filtered": "/?env=maze-fo-v0&agent=rand",
        "run": f"/runs/{f.maze_random}",
        "episode": f"/runs/{f.maze_random}/episodes/11000",
        "govsim": f"/runs/{f.govsim}/episodes/11000",
        "agentsnet": f"/runs/{f.agentsnet}/episodes/11000",
        "team": f"/runs/{f.team}/episodes/11000",
        "compare": f"/compare?run={f.maze_optimal}&run={f.maze_random}",
        "leaderboard": "/leaderboard/lmrl",
        "leaderboard-all": "/leaderboard/all",
        "training": "/training",
        "live": "/live",
    }


def visit(page: Page, url: str) -> Any:
    response = page.page.goto(url)
    assert response is not None and response.status == 200, (url, response and response.status)
    page.page.wait_for_load_state("load")
    return page.page


def test_every_page_loads_without_console_errors(
    browser: Any, dashboard_url: str, filled: Filled, artifacts: Path
) -> None:
    for name, path in pages(filled).items():
        page = Page(browser)
        try:
            p = visit(page, dashboard_url + path)
            if name == "live":  # its script has opened the event stream and shown what came
                expect(p.locator("#live-status")).to_contain_text("updated", timeout=10_000)
            p.screenshot(path=str(artifacts / f"{name}.png"), full_page=name not in ("episode", "govsim", "agentsnet"))
            assert page.errors == [], (name, page.errors)
            assert page.dialogs == [], (name, page.dialogs)
            assert p.locator("h1").count() == 1
        finally:
            page.page.close()
    assert len(list(artifacts.glob("*.png"))) >= len(pages(filled))


def test_pages_show_what_they_are_about(page: Page, dashboard_url: str, filled: Filled) -> None:
    p = visit(page, dashboard_url + "/?env=maze-fo-v0&agent=rand")
    assert [r.get_attribute("data-run") for r in p.locator("table.runs tr[data-run]").all()] == [filled.maze_random]
    p = visit(page, dashboard_url + f"/runs/{filled.agentsnet}/episodes/11000")
    assert p.locator("svg.network g.node").count() == 8  # agentsnet-coloring-v0 has 8 agents
    assert "8 agents" in (p.locator("svg.network").get_attribute("aria-label") or "")
    p = visit(page, dashboard_url + f"/runs/{filled.govsim}/episodes/11000")
    assert p.locator("svg[aria-label^='resource by month']").count() == 1
    assert p.locator("details.round").count() > 1
    p = visit(page, dashboard_url + f"/runs/{filled.team}/episodes/11000")
    assert p.locator("table.messages tr").count() == 1 + 3  # header + one reply from each of the 3 members
    assert p.locator("svg[aria-label^='who spoke to whom'] line.arrow").count() == 3  # m1, m2, m3 -> team
    p = visit(page, dashboard_url + "/training")
    assert p.locator("svg.lineage g.lineage-node").count() == 4  # base model, data run, two checkpoints
    verdicts = {
        r.get_attribute("data-checkpoint"): r.locator("[data-field=verdict]").inner_text()
        for r in p.locator("tr[data-checkpoint]").all()
    }
    assert verdicts == {"c-00000001": "promoted", "c-00000002": "refused"}
    assert p.locator("svg[aria-label^='loss by step'] path.line").count() == 2  # one curve per checkpoint


def test_trajectory_viewer_shows_the_right_turns(page: Page, dashboard_url: str, filled: Filled) -> None:
    with Store(filled.url, readonly=True) as store:
        episode = next(e for e in store.episodes(filled.maze_random, with_turns=True) if e.seed == 11001)
    p = visit(page, dashboard_url + f"/runs/{filled.maze_random}/episodes/11001")
    cards = p.locator("#turns .turn").all()
    assert len(cards) == len(episode.turns) > 1
    for card, turn in zip(cards, episode.turns, strict=True):
        assert card.locator("pre.action").inner_text() == turn.action.text
        assert card.locator("pre.observation").inner_text() == turn.observation
        assert float(card.locator(".reward").get_attribute("data-value")) == turn.step.reward
        assert ("invalid" in card.get_attribute("class")) == bool(turn.step.info.get("invalid_action"))
    # Search: the reply of one turn, in lower case (the search ignores case).
    needle = episode.turns[-1].step.observation.splitlines()[0][:30]
    expected = [
        i
        for i, t in enumerate(episode.turns)
        if needle.lower()
        in "\n".join([t.observation, t.action.text, t.step.observation, json.dumps(t.step.info)]).lower()
    ]
    p.fill("#turn-search", needle.lower())
    visible = [int(c.get_attribute("data-index")) for c in p.locator("#turns .turn:not(.hidden)").all()]
    assert visible == expected and expected
    assert p.locator("#turns mark").count() >= len(expected)
    p.fill("#turn-search", "")
    assert p.locator("#turns .turn.hidden").count() == 0


def test_invalid_actions_are_highlighted_and_filterable(page: Page, dashboard_url: str, filled: Filled) -> None:
    p = visit(page, dashboard_url + f"/runs/{filled.team}/episodes/11000")
    # No member gave an answer, so the first member's whole reply went to the environment: invalid.
    assert p.locator("#turns .turn.invalid").count() == 1
    assert XSS in p.locator("#turns .turn.invalid pre.action").inner_text()
    p.check("#only-invalid")
    assert p.locator("#turns .turn:not(.hidden)").count() == 1


def test_model_output_with_script_tags_is_shown_as_text(page: Page, dashboard_url: str, filled: Filled) -> None:
    for path in (f"/runs/{filled.team}/episodes/11000", "/", f"/runs/{filled.team}", "/leaderboard/all"):
        p = visit(page, dashboard_url + path)
        assert p.locator("script").count() == 1  # only the dashboard's own dashboard.js
        assert p.locator("img").count() == 0  # the model spec's <img onerror=...> stayed text
        assert XSS_SPEC in p.locator("main").inner_text()
        if "episodes" in path:
            p.locator("details summary").filter(has_text="model call").first.click()
            assert XSS in p.locator("table.messages").inner_text()
            assert XSS in p.locator("pre.call").first.inner_text()
    assert page.dialogs == [] and page.errors == []


def test_compare_view_shows_the_paired_numbers(page: Page, dashboard_url: str, filled: Filled) -> None:
    with Store(filled.url, readonly=True) as store:
        base = {e.seed: e for e in store.episodes(filled.maze_optimal)}
        other = {e.seed: e for e in store.episodes(filled.maze_random)}
    seeds = sorted(base.keys() & other.keys())
    returns = [other[s].total_return - base[s].total_return for s in seeds]
    success = [float(other[s].success) - float(base[s].success) for s in seeds]
    p = visit(page, dashboard_url + f"/compare?run={filled.maze_optimal}&run={filled.maze_random}")
    row = p.locator(f"tr.paired[data-other='{filled.maze_random}']")
    assert row.get_attribute("data-baseline") == filled.maze_optimal

    def cell(field: str) -> tuple[float, float | None, float | None, str]:
        c = row.locator(f"[data-field={field}]")
        low, high = c.get_attribute("data-low"), c.get_attribute("data-high")
        return float(c.get_attribute("data-value")), low and float(low), high and float(high), c.inner_text()

    assert cell("n")[0] == len(seeds) == 4
    value, low, high, text = cell("return_diff")
    assert value == pytest.approx(float(np.mean(returns)), abs=1e-12) and value < 0  # random is worse
    assert (low, high) == pytest.approx(bootstrap_ci(returns))
    assert text == f"{np.mean(returns):.2f} [{low:.2f}, {high:.2f}]"
    value, low, high, _ = cell("success_diff")
    assert value == pytest.approx(float(np.mean(success))) and (low, high) == pytest.approx(bootstrap_ci(success))


def test_live_progress_follows_a_running_evaluation(page: Page, dashboard_url: str, filled: Filled) -> None:
    p = visit(page, dashboard_url + "/live")
    row = p.locator(f"#live-table tr[data-run='{filled.running}'] .done")
    expect(row).to_have_text("2 / 5")
    expect(p.locator("#live-status")).to_contain_text("updated", timeout=10_000)  # the stream is connected
    with Store(filled.url) as store:  # the evaluation stores its third episode
        third = store.episodes(filled.maze_optimal, with_turns=True)[2]
        store.record_episode(filled.running, third)
    expect(row).to_have_text("3 / 5", timeout=10_000)
    assert page.errors == []

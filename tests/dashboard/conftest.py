"""Fixtures of the dashboard tests: a database filled by real runs of scripted agents, the dashboard served by
a real uvicorn server on 127.0.0.1, and Debian's Chromium driven by Playwright.

Chromium comes from ``$PALAESTRA_CHROMIUM``, ``chromium`` on PATH, or ``scripts/chromium.sh`` (which installs
Debian's package). When none works the browser tests fail under CI (``$CI`` set) and are skipped with the
reason elsewhere. Screenshots go to ``test-artifacts/dashboard/`` at the repository root (git ignores it),
or under ``$PALAESTRA_TEST_ARTIFACTS`` when set.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import REPO, Filled, Page, fill, serve


@pytest.fixture(scope="session")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    path = tmp_path_factory.mktemp("dashboard") / "filled.db"
    # In a thread of its own: Playwright's sync API, once started, keeps an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fill(f"sqlite:///{path}")).result()


@pytest.fixture(scope="session")
def dashboard_url(filled: Filled) -> Iterator[str]:
    from palaestra.dashboard.app import create_app

    served = serve(create_app(filled.url, poll_s=0.2))
    yield served.url
    served.server.should_exit = True
    served.thread.join(timeout=10)


def _unavailable(reason: str) -> None:
    message = f"Chromium is not available: {reason}. Install it with scripts/chromium.sh (Debian's chromium)."
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    given = os.environ.get("PALAESTRA_CHROMIUM")
    if given:
        if not os.access(given, os.X_OK):
            _unavailable(f"PALAESTRA_CHROMIUM={given} is not an executable file")
        return given
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    try:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "chromium.sh")], capture_output=True, text=True, timeout=900
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"running scripts/chromium.sh failed ({exc})")
    if done.returncode != 0:
        _unavailable(f"scripts/chromium.sh exited with {done.returncode}: {done.stderr.strip()[-1500:]}")
    return done.stdout.strip().splitlines()[-1]


# Module scope, not session: while Playwright's sync API is started, this thread has a running event loop,
# and every later test that calls asyncio.run() (the CLI, the runner) would fail.
@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    root = Path(os.environ.get("PALAESTRA_TEST_ARTIFACTS") or REPO / "test-artifacts") / "dashboard"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    p = Page(browser)
    yield p
    p.page.close()

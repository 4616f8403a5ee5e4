"""The dashboard without a browser: the token when bound elsewhere (the real CLI in a subprocess), the Host
check on loopback, that it never writes the database, the CLI's errors, and the views' building blocks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from dashboard_support import Filled, free_port
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.testclient import TestClient

from palaestra.cli import main
from palaestra.core.errors import StoreError
from palaestra.core.types import Episode
from palaestra.dashboard.app import create_app
from palaestra.dashboard.security import is_loopback
from palaestra.report import paired_comparison, svg
from palaestra.report.training import learning_curves, verdict
from palaestra.runner import EvalConfig, evaluate
from palaestra.store import CheckpointRecord, Store

PALAESTRA = [sys.executable, "-c", "from palaestra.cli import main; main()"]


def start_dashboard(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`palaestra dashboard ARGS` in a subprocess; returns once it says where it listens, with what it said."""
    proc = subprocess.Popen([*PALAESTRA, "dashboard", *args], stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "Ctrl-C" in line:
            return proc, lines
    proc.terminate()
    raise AssertionError(f"the dashboard did not start: {lines}")


def wait_until_up(url: str, **kwargs: object) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(url, **kwargs)  # type: ignore[arg-type]
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_bound_elsewhere_it_requires_its_token(filled: Filled) -> None:
    port = free_port()
    proc, lines = start_dashboard("--db", filled.url, "--host", "0.0.0.0", "--port", str(port))
    try:
        token = next(line.split("token: ", 1)[1] for line in lines if line.strip().startswith("token: "))
        assert len(token) >= 24 and any(f"?token={token}" in line for line in lines)
        base = f"http://127.0.0.1:{port}"
        refused = wait_until_up(base + "/")
        assert refused.status_code == 401 and "access token" in refused.text
        assert httpx.get(base + f"/runs/{filled.maze_optimal}").status_code == 401
        assert httpx.get(base + "/static/dashboard.js").status_code == 401  # assets too
        assert httpx.get(base + "/?token=wrong-token").status_code == 401
        assert httpx.get(base + "/", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(base + "/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        # ?token= once: a redirect without it that sets the cookie; then the cookie alone is enough.
        with httpx.Client(base_url=base) as client:
            first = client.get(f"/runs/{filled.maze_optimal}?token={token}")
            assert first.status_code == 303 and first.headers["location"] == f"/runs/{filled.maze_optimal}"
            assert "HttpOnly" in first.headers["set-cookie"]
            page = client.get(first.headers["location"])
            assert page.status_code == 200 and filled.maze_optimal in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_explicit_token_is_used_and_short_ones_are_refused(filled: Filled) -> None:
    port = free_port()
    proc, _ = start_dashboard("--db", filled.url, "--port", str(port), "--token", "s3cret-token-1")
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until_up(base + "/").status_code == 401  # a token given on loopback is required too
        assert httpx.get(base + "/", headers={"X-Palaestra-Token": "s3cret-token-1"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    result = CliRunner().invoke(main, ["dashboard", "--db", filled.url, "--token", "short"])
    assert result.exit_code == 2 and "at least 8 characters" in result.output


def test_on_loopback_only_loopback_host_names_are_answered(filled: Filled) -> None:
    client = TestClient(create_app(filled.url), base_url="http://127.0.0.1:8765")
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    rebound = client.get("/", headers={"Host": "attacker.example:8765"})
    assert rebound.status_code == 400 and "localhost" in rebound.text
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"


def _fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_the_dashboard_never_writes_the_database(filled: Filled, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    shutil.copy(filled.path, copy)
    before = _fingerprint(copy)
    app = create_app(str(copy))
    client = TestClient(app, base_url="http://127.0.0.1")
    paths = [
        "/",
        "/?status=complete",
        f"/runs/{filled.maze_optimal}",
        f"/runs/{filled.govsim}/episodes/11000",
        f"/runs/{filled.agentsnet}/episodes/11000",
        f"/runs/{filled.team}/episodes/11000",
        f"/compare?run={filled.maze_optimal}&run={filled.maze_random}&run={filled.govsim}",
        "/leaderboard",
        "/leaderboard/all",
        "/training",
        "/live",
        f"/report?run={filled.maze_optimal}&run={filled.team}",
    ]
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
    assert client.post("/").status_code == 405  # no route writes
    # and the store behind the pages refuses writes itself (SQLite's read-only mode)
    store = app.app.state.dashboard.store
    with pytest.raises(StoreError, match="readonly=True"):
        store.set_run_status(filled.maze_optimal, "interrupted")
    with pytest.raises(OperationalError, match="readonly"), store._engine.connect() as conn:
        conn.exec_driver_sql("DELETE FROM runs")
    client.close()
    assert _fingerprint(copy) == before  # the database file: same bytes, same modification time
    # SQLite's read-only mode may create a WAL database's companion files to coordinate with writers; the
    # write-ahead log stays empty: nothing was written through it.
    wal = tmp_path / "copy.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_error_pages_are_clear(filled: Filled) -> None:
    client = TestClient(create_app(filled.url), base_url="http://127.0.0.1")
    missing = client.get("/runs/r-nothere")
    assert missing.status_code == 404 and "no run" in missing.text and "r-nothere" in missing.text
    assert client.get(f"/runs/{filled.maze_optimal}/episodes/999").status_code == 404
    assert "two or more runs" in client.get(f"/compare?run={filled.maze_optimal}").text
    assert client.get("/leaderboard/nope").status_code == 404
    assert client.get("/?status=weird").status_code == 400
    hostile = client.get("/runs/<img src=x onerror=alert(1)>")
    assert hostile.status_code == 404 and "<img" not in hostile.text and "&lt;img src=x" in hostile.text
    nowhere = client.get("/no/such/page")
    assert nowhere.status_code == 404 and "text/html" in nowhere.headers["content-type"]


def test_cli_errors(filled: Filled, tmp_path: Path) -> None:
    runner = CliRunner()
    bad_port = runner.invoke(main, ["dashboard", "--db", filled.url, "--port", "70000"])
    assert bad_port.exit_code == 2 and "70000 is not in the range 1<=x<=65535" in bad_port.output
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER)")
    not_ours = runner.invoke(main, ["dashboard", "--db", str(foreign), "--port", str(free_port())])
    assert not_ours.exit_code == 2 and "is not a palaestra database" in not_ours.output
    absent = runner.invoke(main, ["report", "r-1", "--db", str(tmp_path / "absent.db")])
    assert absent.exit_code == 2 and "does not exist" in absent.output
    unknown = runner.invoke(main, ["report", "r-nothere", "--db", filled.url, "-o", str(tmp_path / "r.html")])
    assert unknown.exit_code == 2 and "no run 'r-nothere'" in unknown.output
    assert not (tmp_path / "r.html").exists()
    with __import__("socket").socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        in_use = runner.invoke(main, ["dashboard", "--db", filled.url, "--port", str(port)])
    assert in_use.exit_code == 2 and f"port {port} on 127.0.0.1 is already in use" in in_use.output


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "::", "example.com"))


def _episode(seed: int, ret: float, success: bool, status: str = "ok") -> Episode:
    return Episode(env_id="maze-fo-v0", seed=seed, total_return=ret, success=success, status=status)  # type: ignore[arg-type]


def test_paired_comparison_by_hand() -> None:
    base = [_episode(1, 1.0, True), _episode(2, 0.0, False), _episode(3, 5.0, True), _episode(4, 2.0, True, "error")]
    other = [_episode(1, 3.0, True), _episode(2, 1.0, True), _episode(4, 9.0, True), _episode(5, 1.0, True)]
    p = paired_comparison("a", base, "b", other)
    # Common ok seeds: 1 and 2 (3 is missing from b, 4 errored in a, 5 is missing from a).
    assert p.seeds == (1, 2) and p.n == 2
    assert p.return_diff == pytest.approx((2.0 + 1.0) / 2) and p.success_diff == pytest.approx((0 + 1) / 2)
    assert p.per_seed == ((1, 1.0, 3.0), (2, 0.0, 1.0))
    assert p.return_ci is not None and 1.0 <= p.return_ci[0] <= p.return_ci[1] <= 2.0
    none = paired_comparison("a", base[:1], "b", other[1:])
    assert none.n == 0 and none.return_diff is None and none.return_ci is None


def test_svg_escapes_its_labels() -> None:
    label = '<script>alert(1)</script> & "quotes"'
    charts = [
        svg.bar_chart([svg.Bar(label, 0.5, (0.25, 0.75))], title=label, x_label=label),
        svg.strip_plot([(label, [1.0, 2.0])], title=label, x_label="x"),
        svg.line_chart([(label, [1.0, 2.0], [3.0, 4.0])], title=label, x_label="x", y_label=label),
        svg.directed_graph([label, "b"], {(label, "b"): 2}, title=label),
        svg.graph([(label, label, label)], [], {label: (0.5, 0.5)}, title=label, groups={label: label}),
        svg.layered_graph([(label, label, label, "base")], [], title=label),
    ]
    for chart in charts:
        assert "<script>" not in chart and "&lt;script&gt;" in chart and chart.startswith("<svg")


def test_learning_curves_and_verdicts_from_checkpoint_metrics() -> None:
    record = CheckpointRecord(
        id="c-1",
        created_at=1.0,
        status="ready",
        method="sft",
        base_model="m",
        metrics={
            "loss": [3.0, 2.0],
            "rounds": [{"round": 2, "acc": 0.5}, {"round": 3, "acc": 0.75}],
            "gate": {"promoted": False},
        },
    )
    charts = learning_curves([record])
    titles = [c.split('aria-label="', 1)[1].split('"', 1)[0] for c in charts]
    assert titles == ["loss by step", "rounds.acc by round"]
    # the x axis runs over the rounds given (2..3), not over positions 1..2
    assert ">2.0<" in charts[1] and ">3.0<" in charts[1] and ">1.0<" not in charts[1]
    assert verdict(record) == "refused"  # the gate said no, though the status is still "ready"
    assert (
        verdict(CheckpointRecord(id="c-2", created_at=1.0, status="promoted", method="sft", base_model="m"))
        == "promoted"
    )


@pytest.mark.postgres
def test_the_dashboard_reads_postgresql_read_only(pg_url: str) -> None:
    async def play() -> list[str]:
        with Store(pg_url) as store:
            config = EvalConfig(envs=("maze-fo-v0",), agents=("optimal", "random"), episodes=2)
            return (await evaluate(config, store, progress=False)).run_ids

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright may hold this thread's event loop
        first, second = pool.submit(asyncio.run, play()).result()
    app = create_app(pg_url)
    client = TestClient(app, base_url="http://127.0.0.1")
    for path in ("/", f"/runs/{first}", f"/runs/{second}/episodes/11001", f"/compare?run={first}&run={second}"):
        response = client.get(path)
        assert response.status_code == 200 and first in client.get("/").text, path
    # Past the store's own check, on its connection: the read-only session itself refuses.
    with pytest.raises(DBAPIError, match="read-only"), app.app.state.dashboard.store._engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM runs")
    client.close()

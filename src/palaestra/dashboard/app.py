"""The dashboard's FastAPI application: server-rendered pages (Jinja, autoescaped) over a read-only store.

``create_app(db)`` opens the database with ``Store(db, readonly=True)``; every route only reads. Pages: runs
(filters, selection for comparison), a run, an episode (trajectory viewer with the multi-agent and team
views), a comparison of runs paired by seed, leaderboards per suite, training (checkpoint lineage and
learning curves) and live progress of running evaluations (server-sent events).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from palaestra.core.errors import StoreError
from palaestra.report import html as report_html
from palaestra.report import training
from palaestra.report.compare import paired_comparison
from palaestra.report.html import RunData, leaderboard_order, load_run
from palaestra.store import Store, UnknownRunError

HERE = Path(__file__).parent
CACHE_SIZE = 32  # finished runs kept loaded (episodes with turns); a page of a big run is then fast to revisit


class DashboardError(Exception):
    """A request the dashboard cannot answer: shown as an error page with this message and status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Dashboard:
    """The store and the loaded runs behind the pages."""

    def __init__(self, store: Store, poll_s: float) -> None:
        self.store = store
        self.poll_s = poll_s
        self._cache: OrderedDict[tuple[str, str, float | None], RunData] = OrderedDict()

    def run(self, ref: str) -> RunData:
        """A run with its episodes and summary; runs that are not running are cached (they do not change)."""
        try:
            record = self.store.get_run(ref)
        except UnknownRunError as exc:
            raise DashboardError(404, str(exc)) from exc
        except StoreError as exc:  # an ambiguous prefix
            raise DashboardError(400, str(exc)) from exc
        key = (record.id, record.status, record.finished_at)
        if record.status != "running" and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        data = load_run(self.store, record.id)
        if record.status != "running":
            self._cache[key] = data
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return data

    def counts(self, run_id: str) -> tuple[int, int, float | None]:
        """(ok episodes, error episodes, when the last episode ended) of a run."""
        episodes = self.store.episodes(run_id)
        ok = sum(1 for e in episodes if e.status == "ok")
        last = max((e.started_at + e.wall_s for e in episodes), default=None)
        return ok, len(episodes) - ok, last

    def progress(self) -> list[dict[str, Any]]:
        """Every running run with its planned and recorded episodes."""
        out = []
        for r in self.store.list_runs(limit=None, status="running"):
            ok, errors, last = self.counts(r.id)
            out.append(
                {
                    "id": r.id,
                    "env_id": r.env_id,
                    "agent": r.agent_spec,
                    "model": r.model_spec,
                    "planned": len(r.config.get("seeds", [])),
                    "ok": ok,
                    "errors": errors,
                    "done": ok + errors,
                    "created": report_html.when(r.created_at),
                    "last": report_html.when(last),
                }
            )
        return out


def create_app(db: str | None = None, *, token: str | None = None, check_host: bool = True, poll_s: float = 1.0) -> Any:
    """The dashboard application over the database ``db`` (URL or path; None: ``$PALAESTRA_DB`` or
    ./palaestra.db), opened read-only.

    Args:
        token: when set, every request must carry it (see ``palaestra.dashboard.security``).
        check_host: refuse requests whose Host is not a loopback name (for a server bound to 127.0.0.1).
        poll_s: how often the live-progress stream looks at the database.

    Returns the ASGI application (a FastAPI app wrapped in the access guard).
    """
    from palaestra import __version__
    from palaestra.dashboard.security import AccessGuard

    store = Store(db, readonly=True)
    state = Dashboard(store, poll_s)
    templates = report_html.environment(HERE / "templates")
    templates.globals.update(version=__version__, database=store.url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(title="Palaestra dashboard", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.dashboard = state
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(templates.get_template(name).render(**context), status_code=status)

    @app.exception_handler(DashboardError)
    async def dashboard_error(request: Request, exc: DashboardError) -> HTMLResponse:
        return page("error.jinja", exc.status, title=f"error {exc.status}", message=str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        message = "no such page" if exc.status_code == 404 else str(exc.detail)
        return page("error.jinja", exc.status_code, title=f"error {exc.status_code}", message=message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> HTMLResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
        return page("error.jinja", 400, title="error 400", message=f"bad request: {problems}")

    @app.get("/assets/palaestra.css")
    def stylesheet() -> FileResponse:
        return FileResponse(report_html.STYLESHEET, media_type="text/css")

    @app.get("/", response_class=HTMLResponse)
    def runs_page(
        env: str = "", status: str = "", agent: str = "", model: str = "", q: str = "", limit: int = 200
    ) -> HTMLResponse:
        from palaestra.store import RUN_STATUSES

        if status and status not in RUN_STATUSES:
            raise DashboardError(400, f"unknown status {status!r}; use one of {', '.join(RUN_STATUSES)}")
        every = store.list_runs(limit=None)
        records = [
            r
            for r in every
            if (not env or r.env_id == env)
            and (not status or r.status == status)
            and (not agent or agent.lower() in r.agent_spec.lower())
            and (not model or model.lower() in (r.model_spec or "").lower())
            and (not q or q.lower() in f"{r.id} {r.name or ''}".lower())
        ][: max(1, limit)]
        rows = [(r, *state.counts(r.id)[:2]) for r in records]
        return page(
            "runs.jinja",
            title="Runs",
            rows=rows,
            total=len(every),
            envs=sorted({r.env_id for r in every}),
            filters={"env": env, "status": status, "agent": agent, "model": model, "q": q},
            statuses=RUN_STATUSES,
        )

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(run_id: str) -> HTMLResponse:
        data = state.run(run_id)
        children = [r for r in store.list_runs(limit=None) if r.parent_run_id == data.record.id]
        return page(
            "run.jinja",
            title=f"Run {data.record.id}",
            run=data,
            plots=report_html.environment_plots([data]),
            children=children,
        )

    @app.get("/runs/{run_id}/episodes/{seed}", response_class=HTMLResponse)
    def episode_page(run_id: str, seed: int) -> HTMLResponse:
        data = state.run(run_id)
        seeds = [e.seed for e in data.episodes]
        if seed not in seeds:
            raise DashboardError(404, f"run {data.record.id} has no episode with seed {seed}")
        position = seeds.index(seed)
        episode = data.episodes[position]
        view = report_html.trajectory(data, episode)
        return page(
            "episode.jinja",
            title=f"{data.record.id} seed {seed}",
            run=data,
            e=episode,
            view=view,
            previous=seeds[position - 1] if position > 0 else None,
            next=seeds[position + 1] if position + 1 < len(seeds) else None,
        )

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(run: list[str] = Query(default=[])) -> HTMLResponse:  # noqa: B008 (FastAPI's idiom)
        refs = list(dict.fromkeys(r for r in run if r))
        if len(refs) < 2:
            raise DashboardError(400, "compare needs two or more runs: /compare?run=RUN_A&run=RUN_B")
        runs = [state.run(r) for r in refs]
        baseline = runs[0]
        pairs = [
            (
                other,
                other.record.env_id == baseline.record.env_id,
                paired_comparison(baseline.record.id, baseline.episodes, other.record.id, other.episodes),
            )
            for other in runs[1:]
        ]
        return page(
            "compare.jinja",
            title="Compare runs",
            runs=runs,
            baseline=baseline,
            pairs=pairs,
            overview=report_html.overview_plots(runs),
            env_plots={
                env: report_html.environment_plots([r for r in runs if r.record.env_id == env])
                for env in dict.fromkeys(r.record.env_id for r in runs)
            },
        )

    @app.get("/leaderboard", response_class=HTMLResponse)
    def leaderboards() -> HTMLResponse:
        from palaestra.envs.suites import SUITES

        return leaderboard_page(next(iter(SUITES), "all"))

    @app.get("/leaderboard/{suite}", response_class=HTMLResponse)
    def leaderboard_page(suite: str) -> HTMLResponse:
        from palaestra.envs.suites import SUITES
        from palaestra.eval import task_averages

        if suite != "all" and suite not in SUITES:
            raise DashboardError(404, f"no suite {suite!r}; the suites are {', '.join(SUITES)} (or 'all')")
        every = store.list_runs(limit=None)
        members = [r for r in every if suite == "all" or r.env_id in SUITES[suite]]
        runs = leaderboard_order([state.run(r.id) for r in members])
        env_ids = list(SUITES[suite]) if suite != "all" else sorted({r.record.env_id for r in runs})
        matrix: dict[tuple[str, str | None], dict[str, RunData]] = {}
        for r in sorted(runs, key=lambda r: r.record.created_at):  # the newest run of a cell wins
            matrix.setdefault((r.summary.agent, r.summary.model), {})[r.record.env_id] = r
        return page(
            "leaderboard.jinja",
            title=f"Leaderboard: {suite}",
            suite=suite,
            suites=[*SUITES, "all"],
            runs=runs,
            env_ids=env_ids,
            matrix=matrix,
            averages=task_averages(store, [r.record.id for r in runs]),
        )

    @app.get("/training", response_class=HTMLResponse)
    def training_page() -> HTMLResponse:
        checkpoints = store.list_checkpoints()
        return page(
            "training.jinja",
            title="Training",
            checkpoints=checkpoints,
            lineage=training.lineage_graph(checkpoints) if checkpoints else None,
            curves=training.learning_curves(checkpoints),
            verdict=training.verdict,
            scalars=training.scalars,
        )

    @app.get("/live", response_class=HTMLResponse)
    def live_page() -> HTMLResponse:
        return page("live.jinja", title="Live progress", runs=state.progress(), poll_s=poll_s)

    @app.get("/events/progress")
    async def progress_events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            last = None
            quiet_since = time.monotonic()
            while not await request.is_disconnected():
                runs = await asyncio.to_thread(state.progress)
                payload = json.dumps({"runs": runs})
                if payload != last:
                    last, quiet_since = payload, time.monotonic()
                    yield f"event: progress\ndata: {payload}\n\n"
                elif time.monotonic() - quiet_since > 15:
                    quiet_since = time.monotonic()
                    yield ": still here\n\n"  # a comment keeps proxies from closing an idle stream
                await asyncio.sleep(state.poll_s)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    @app.get("/report")
    def report(run: list[str] = Query(default=[])) -> Response:  # noqa: B008 (FastAPI's idiom)
        refs = list(dict.fromkeys(r for r in run if r))
        if not refs:
            raise DashboardError(400, "name the runs of the report: /report?run=RUN&run=...")
        for ref in refs:
            state.run(ref)  # a clear 404 for an unknown run
        text = report_html.build_report(store, refs)
        return HTMLResponse(text, headers={"content-disposition": 'attachment; filename="palaestra-report.html"'})

    return AccessGuard(app, token=token, check_host=check_host)

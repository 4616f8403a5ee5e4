"""The ``palaestra report`` and ``palaestra dashboard`` commands (registered in ``palaestra.cli``).

Heavy imports (Jinja templates, FastAPI, uvicorn) happen inside the commands so that ``palaestra --help``
stays fast.
"""

from __future__ import annotations

import errno
import secrets
import socket
import sys
from pathlib import Path

import click

DEFAULT_PORT = 8765

# Not palaestra.cli's option: cli.py imports this module to register the commands, so this one must not
# import cli.py back.
db_option = click.option(
    "--db",
    envvar="PALAESTRA_DB",
    default=None,
    metavar="URL",
    help="Database: a SQLAlchemy URL (sqlite:///file.db, postgresql+psycopg://user@host/db) or a file path, "
    "opened read-only. Default: $PALAESTRA_DB, else ./palaestra.db.",
)


@click.command(short_help="Write a self-contained HTML report about runs.")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...")
@click.option(
    "-o",
    "--output",
    default="report.html",
    show_default=True,
    metavar="FILE",
    help="The HTML file to write ('-' for standard output).",
)
@click.option(
    "--trajectories",
    default=6,
    show_default=True,
    type=click.IntRange(min=0),
    help="About how many episodes to show turn by turn, spread over the runs (failures first).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the draw of those episodes.")
@click.option("--title", default=None, help="The report's title (default: 'Palaestra report: N runs').")
@db_option
def report(
    run_ids: tuple[str, ...], output: str, trajectories: int, seed: int, title: str | None, db: str | None
) -> None:
    """Write one self-contained HTML file about runs: leaderboard with 95% CIs, normalised scores per task,
    plots (success, return, its distribution, tokens, time, invalid actions), multi-agent and team metrics,
    a few sampled trajectories, and each run's lineage.

    The file has no script and loads nothing: open it offline, attach it, archive it. Its numbers are those of
    `palaestra show RUN... --json`.

    \b
    Example:
      palaestra report r-1a2b r-3c4d -o report.html
    """
    from palaestra.report import build_report
    from palaestra.store import Store

    path = None if output == "-" else Path(output)
    if path is not None and not path.parent.is_dir():
        raise click.BadParameter(f"the directory {path.parent} does not exist", param_hint="-o/--output")
    store = Store(db, readonly=True)
    try:
        text = build_report(store, run_ids, trajectories=trajectories, seed=seed, title=title)
    finally:
        store.close()
    if path is None:
        sys.stdout.write(text)
        return
    data = text.encode("utf-8")
    path.write_bytes(data)
    click.echo(f"wrote a report of {len(set(run_ids))} run(s) to {path} ({len(data) / 1024:.0f} KiB)", err=True)


def check_port_free(host: str, port: int) -> None:
    """Fail now, with a clear message, when the address cannot be bound (in use, no such address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.UsageError(
                    f"port {port} on {host} is already in use (another dashboard?); choose another with --port"
                ) from exc
            raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host") from exc


@click.command(short_help="Serve a read-only web dashboard of the runs.")
@db_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but a loopback address (127.0.0.1, ::1, localhost) makes the "
    "dashboard reachable from other machines, and then it requires a token.",
)
@click.option(
    "--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on."
)
@click.option(
    "--token",
    envvar="PALAESTRA_DASHBOARD_TOKEN",
    default=None,
    metavar="TOKEN",
    help="Access token required on every request (header 'Authorization: Bearer TOKEN', or ?token=TOKEN once, "
    "then a cookie). Default: none on loopback; a random one, printed, on any other address. "
    "Env: PALAESTRA_DASHBOARD_TOKEN.",
)
@click.option(
    "--poll",
    "poll_s",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between looks at the database for the live progress of running evaluations.",
)
def dashboard(db: str | None, host: str, port: int, token: str | None, poll_s: float) -> None:
    """Serve a web dashboard of the runs in the database, read-only: runs with filters, a paired comparison
    of runs, leaderboards per suite, a trajectory viewer, multi-agent and team views, training lineage and
    learning curves, and live progress of running evaluations.

    It never writes to the database (it opens it read-only) and escapes everything it shows. It listens on
    127.0.0.1 unless told otherwise; on any other address it requires a token, generated and printed when
    --token is not given.

    \b
    Example:
      palaestra dashboard --db runs.db             # then open http://127.0.0.1:8765/
      palaestra dashboard --host 0.0.0.0 --port 9000 --token "$(openssl rand -hex 16)"
    """
    from palaestra.dashboard.security import is_loopback

    if token is not None and len(token) < 8:
        raise click.BadParameter("use a token of at least 8 characters", param_hint="--token")
    local = is_loopback(host)
    if not local and token is None:
        token = secrets.token_urlsafe(24)
        click.echo(f"--host {host} is reachable from other machines: every request needs this token.", err=True)
    check_port_free(host, port)

    import uvicorn

    from palaestra.dashboard.app import create_app

    app = create_app(db, token=token, check_host=local and token is None, poll_s=poll_s)  # opens the db: errors now
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    click.echo(f"Palaestra dashboard on {url}" + (f"?token={token}" if token else ""), err=True)
    if token:
        click.echo(f"  token: {token}", err=True)
    click.echo("  reading the database read-only; Ctrl-C to stop", err=True)
    uvicorn.run(app, host=host.strip("[]"), port=port, log_level="warning")

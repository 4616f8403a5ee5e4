"""``Store``: runs, episodes and turns in a SQL database (a SQLite file by default, PostgreSQL for teams).

Every write is one transaction, so a process killed at any moment leaves each episode either fully
stored, with all its turns, or not stored at all. Methods are synchronous: each is one short transaction,
and the async runner calls them directly or through a thread.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Connection, delete, exc, insert, inspect, select, text, update

from palaestra.core import EnvSpec, Episode, StoreError, Turn
from palaestra.store import codec
from palaestra.store.engine import check_sqlite_file, make_engine, resolve, translated
from palaestra.store.schema import (
    APP_NAME,
    EPISODE_STATUSES,
    MIGRATIONS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    TABLES_SINCE,
    checkpoints,
    episodes,
    meta,
    metadata,
    runs,
    sim_steps,
    turns,
)

FINAL_STATUSES = tuple(s for s in RUN_STATUSES if s != "running")
_LIST_HINT = "List the runs with `palaestra runs`."
# Any constant works; it only has to be the same for every palaestra process creating the schema.
_PG_SCHEMA_LOCK = 0x70616C6165


class UnknownRunError(StoreError, LookupError):
    """No run has the id (or id prefix) asked for."""


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``, with ``env_spec`` and ``config`` parsed."""

    id: str
    name: str | None
    status: str
    created_at: float  # unix seconds
    finished_at: float | None
    env_id: str
    env_version: int
    env_spec: EnvSpec
    agent_spec: str
    model_spec: str | None
    weights_hash: str | None
    package_version: str
    git_commit: str | None
    config: dict[str, Any] = field(default_factory=dict)
    parent_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lineage of the run (``env_spec`` as its dict)."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "env_id": self.env_id,
            "env_version": self.env_version,
            "env_spec": self.env_spec.to_dict(),
            "agent_spec": self.agent_spec,
            "model_spec": self.model_spec,
            "weights_hash": self.weights_hash,
            "package_version": self.package_version,
            "git_commit": self.git_commit,
            "config": self.config,
            "parent_run_id": self.parent_run_id,
        }


CHECKPOINT_STATUSES = ("training", "ready", "promoted", "refused", "failed")


@dataclass(frozen=True)
class CheckpointRecord:
    """One trained checkpoint and its lineage (a row of ``checkpoints``, JSON columns parsed).

    ``parent`` is the checkpoint it was trained from (None: from ``base_model`` itself); ``data_runs`` the
    runs its training data came from; ``config`` the trainer's configuration and seeds; ``metrics`` its
    losses, per-round evaluations and the gate's verdict; ``path`` where the registry keeps its weights.
    """

    id: str
    created_at: float
    status: str
    method: str
    base_model: str
    parent: str | None = None
    env_ids: list[str] = field(default_factory=list)
    data_runs: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    finished_at: float | None = None
    wall_s: float | None = None
    weights_hash: str | None = None
    path: str | None = None
    package_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SimStepRecord:
    """One simulated step of a population simulation (a row of ``sim_steps``, ``metrics`` parsed)."""

    run_id: str
    step: int
    metrics: dict[str, Any]
    model_calls: int
    wall_s: float


def _checkpoint_record(row: Any) -> CheckpointRecord:
    return CheckpointRecord(
        id=row.id,
        created_at=row.created_at,
        status=row.status,
        method=row.method,
        base_model=row.base_model,
        parent=row.parent,
        env_ids=json.loads(row.env_ids),
        data_runs=json.loads(row.data_runs),
        config=json.loads(row.config),
        metrics=json.loads(row.metrics),
        finished_at=row.finished_at,
        wall_s=row.wall_s,
        weights_hash=row.weights_hash,
        path=row.path,
        package_version=row.package_version,
    )


def _run_record(row: Any) -> RunRecord:
    return RunRecord(
        id=row.id,
        name=row.name,
        status=row.status,
        created_at=row.created_at,
        finished_at=row.finished_at,
        env_id=row.env_id,
        env_version=row.env_version,
        env_spec=EnvSpec.from_json(row.env_spec),
        agent_spec=row.agent_spec,
        model_spec=row.model_spec,
        weights_hash=row.weights_hash,
        package_version=row.package_version,
        git_commit=row.git_commit,
        config=json.loads(row.config),
        parent_run_id=row.parent_run_id,
    )


@functools.cache
def source_git_commit() -> str | None:
    """``git rev-parse HEAD`` of the palaestra source tree, or None when it is not a git checkout.

    Only when git tracks this very package: an installed copy inside some other repository (a virtualenv
    in a user's project) must not report that project's commit.
    """
    package_dir = Path(__file__).resolve().parent.parent
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "__init__.py"],
            cwd=package_dir,
            capture_output=True,
            timeout=5,
            check=False,
        )
        if tracked.returncode != 0:
            return None
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=package_dir,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git installed, a hung filesystem, ...
        return None
    commit = head.stdout.strip()
    return commit if head.returncode == 0 and commit else None


def _package_version() -> str:
    from palaestra import __version__  # late: the package __init__ imports the layers above the store

    return __version__


class Store:
    """Runs, episodes and turns in a SQL database.

    Args:
        url: a SQLAlchemy URL (``sqlite:///runs.db``, ``postgresql+psycopg://user@host/db``) or a bare
            SQLite file path. None uses ``$PALAESTRA_DB``, else ``sqlite:///palaestra.db`` in the
            current directory.
        readonly: open for reading only (the file in SQLite's read-only mode, a read-only session on
            PostgreSQL); writing methods raise ``StoreError``. The database must already exist.
        busy_timeout: SQLite only, seconds to wait for another process's lock before giving up.
    """

    def __init__(self, url: str | None = None, *, readonly: bool = False, busy_timeout: float = 30.0) -> None:
        self.readonly = readonly
        self.busy_timeout = busy_timeout
        self._target = resolve(url)
        self.url = self._target.display
        self.backend = self._target.backend
        check_sqlite_file(self._target, readonly=readonly)
        self._engine = make_engine(self._target, readonly=readonly, busy_timeout=busy_timeout)
        try:
            self._open()
        except BaseException:
            self._engine.dispose()
            raise

    # ----------------------------------------------------------------------- plumbing

    def close(self) -> None:
        """Close every pooled connection. The store can not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r}{', readonly=True' if self.readonly else ''})"

    def _errors(self) -> AbstractContextManager[None]:
        return translated(self._target, self.busy_timeout)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A transaction that reads one consistent snapshot (a statement-level snapshot is not enough
        when a read takes an episode list and then its turns while a writer replaces an episode)."""
        with self._errors(), self._engine.connect() as conn:
            if self.backend == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self.readonly:
            raise StoreError(
                f"the store {self.url} was opened with readonly=True and cannot be written; "
                "open it with Store(url) (readonly=False) to record runs."
            )
        with self._errors(), self._engine.connect() as conn:
            conn = conn.execution_options(palaestra_write=True)
            with conn.begin():
                yield conn

    def _open(self) -> None:
        # Look first without the write lock: opening an existing database must not queue behind writers.
        with self._read() as conn:
            version = self._check_schema(conn)
        if version is not None:
            if version < SCHEMA_VERSION:
                self._migrate(version)
            return
        if self.readonly:
            raise StoreError(
                f"{self.url} has no palaestra tables yet, so there is nothing to read. "
                "Record a run into it first, or check the URL."
            )
        with self._write() as conn:
            if self.backend == "postgresql":
                # Two processes opening a fresh database at once must not both create the tables.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
            if self._check_schema(conn) is None:
                metadata.create_all(conn)
                conn.execute(
                    insert(meta),
                    [
                        {"key": "app", "value": APP_NAME},
                        {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                        {"key": "created_by", "value": _package_version()},
                    ],
                )

    def _migrate(self, version: int) -> None:
        """Upgrade a database written by an older palaestra in place: add the columns later versions added.
        Nothing stored is changed; the new columns are NULL for old rows (single-agent episodes)."""
        if self.readonly:
            raise StoreError(
                f"{self.url} was written by an older palaestra (schema version {version}; this one uses "
                f"{SCHEMA_VERSION}). Open it once without readonly (e.g. run `palaestra runs`) to upgrade it."
            )
        with self._write() as conn:
            if self.backend == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
            current = self._check_schema(conn)
            if current is None or current >= SCHEMA_VERSION:
                return  # another process upgraded it meanwhile
            metadata.create_all(conn, tables=[metadata.tables[t] for t in TABLES_SINCE], checkfirst=True)
            for step in range(current + 1, SCHEMA_VERSION + 1):
                for table, column, kind in MIGRATIONS.get(step, []):
                    existing = {c["name"] for c in inspect(conn).get_columns(table)}
                    if column not in existing:
                        conn.execute(text(f'ALTER TABLE {table} ADD COLUMN "{column}" {kind}'))
            conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))

    def _check_schema(self, conn: Connection) -> int | None:
        """The schema version of a palaestra database, None for an empty one; raise for anything else."""
        tables = set(inspect(conn).get_table_names())
        if meta.name not in tables:
            if tables:
                raise StoreError(
                    f"{self.url} is not a palaestra database: it has tables ({', '.join(sorted(tables))}) "
                    f"but no {meta.name} table. The store leaves it untouched. Use another database "
                    "or file for palaestra (e.g. sqlite:///palaestra.db, or a new PostgreSQL database)."
                )
            return None
        values = dict(conn.execute(select(meta.c.key, meta.c.value)).all())
        if values.get("app") != APP_NAME:
            raise StoreError(
                f"{self.url} has a {meta.name} table but it does not say app={APP_NAME!r}; "
                "it belongs to something else. Use another database for palaestra."
            )
        version = int(values.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.url} was written by a newer palaestra (schema version {version}; this palaestra "
                f"{_package_version()} reads up to {SCHEMA_VERSION}). Upgrade palaestra: "
                "pip install -U palaestra."
            )
        expected = {t.name for t in metadata.sorted_tables if TABLES_SINCE.get(t.name, 0) <= version}
        missing = expected - tables
        if missing:
            raise StoreError(
                f"{self.url} is a palaestra database but lacks the tables {', '.join(sorted(missing))}; "
                "it was damaged or edited by hand. Restore it from a backup or start a new database."
            )
        return version

    # ----------------------------------------------------------------------- runs

    def create_run(
        self,
        *,
        env_spec: EnvSpec,
        agent_spec: str,
        model_spec: str | None,
        weights_hash: str | None,
        config: dict[str, Any],
        parent_run_id: str | None = None,
        name: str | None = None,
        env_id: str | None = None,
    ) -> str:
        """Record a new run with status ``running`` and return its id (``r-`` and 8 hex digits).

        ``env_id`` replaces the spec's id in the ``env_id`` column where a run is not an environment's
        (a population simulation records ``sim:<scenario>``); the spec itself is stored unchanged.
        """
        row = {
            "name": name,
            "status": "running",
            "created_at": time.time(),
            "finished_at": None,
            "env_id": env_spec.id if env_id is None else env_id,
            "env_version": env_spec.version,
            "env_spec": env_spec.to_json(),
            "agent_spec": agent_spec,
            "model_spec": model_spec,
            "weights_hash": weights_hash,
            "package_version": _package_version(),
            "git_commit": source_git_commit(),
            "config": codec.dumps(config, "the run config"),
            "parent_run_id": parent_run_id,
        }
        # 8 hex digits keep ids typeable; a collision (about 1 in 400 000 at 100 runs) just draws again.
        for _ in range(5):
            run_id = f"r-{uuid.uuid4().hex[:8]}"
            try:
                with self._write() as conn:
                    conn.execute(insert(runs).values(id=run_id, **row))
                return run_id
            except StoreError as e:
                if not isinstance(e.__cause__, exc.IntegrityError):
                    raise
        raise StoreError(f"could not draw an unused run id in {self.url} after 5 tries")

    def set_run_status(self, run_id: str, status: str) -> None:
        """Set a run's status; ``running`` clears ``finished_at`` (a resumed run), others set it to now."""
        if status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}; use one of {', '.join(RUN_STATUSES)}")
        finished = None if status == "running" else time.time()
        with self._write() as conn:
            result = conn.execute(update(runs).where(runs.c.id == run_id).values(status=status, finished_at=finished))
            if result.rowcount == 0:
                raise UnknownRunError(f"no run with id {run_id!r} in {self.url}. {_LIST_HINT}")

    def finish_run(self, run_id: str, status: str) -> None:
        """Mark a run ``complete``, ``incomplete`` (some episodes errored) or ``interrupted``; stamp now."""
        if status not in FINAL_STATUSES:
            raise StoreError(
                f"a run finishes as one of {', '.join(FINAL_STATUSES)}, not {status!r}; "
                "use set_run_status(run_id, 'running') to reopen a run"
            )
        self.set_run_status(run_id, status)

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, or the only run whose id starts with it."""
        with self._read() as conn:
            return self._get_run(conn, run_id)

    def _get_run(self, conn: Connection, ref: str) -> RunRecord:
        row = conn.execute(select(runs).where(runs.c.id == ref)).first()
        if row is not None:
            return _run_record(row)
        matches = conn.execute(
            select(runs).where(runs.c.id.startswith(ref, autoescape=True)).order_by(runs.c.id).limit(11)
        ).all()
        if not matches:
            raise UnknownRunError(f"no run {ref!r} in {self.url}. {_LIST_HINT}")
        if len(matches) > 1:
            shown = "; ".join(f"{m.id} ({m.env_id}, {m.status})" for m in matches[:10])
            more = " and more" if len(matches) > 10 else ""
            raise StoreError(
                f"run id prefix {ref!r} is ambiguous in {self.url}: it matches {shown}{more}. "
                "Give more characters of the id."
            )
        return _run_record(matches[0])

    def list_runs(
        self, *, limit: int | None = 50, env_id: str | None = None, status: str | None = None
    ) -> list[RunRecord]:
        """Runs, newest first, optionally only those of one environment id or status."""
        if status is not None and status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}; use one of {', '.join(RUN_STATUSES)}")
        query = select(runs).order_by(runs.c.created_at.desc(), runs.c.id.desc())
        if env_id is not None:
            query = query.where(runs.c.env_id == env_id)
        if status is not None:
            query = query.where(runs.c.status == status)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [_run_record(row) for row in conn.execute(query)]

    # ----------------------------------------------------------------------- checkpoints

    def save_checkpoint(self, record: CheckpointRecord) -> None:
        """Insert a checkpoint's row, or replace the row with the same id (its status and metrics change as
        training and the gate go on)."""
        if record.status not in CHECKPOINT_STATUSES:
            raise StoreError(
                f"unknown checkpoint status {record.status!r}; use one of {', '.join(CHECKPOINT_STATUSES)}"
            )
        row = {
            **{k: v for k, v in record.to_dict().items() if k not in ("env_ids", "data_runs", "config", "metrics")},
            "env_ids": codec.dumps(record.env_ids, "checkpoint env ids"),
            "data_runs": codec.dumps(record.data_runs, "checkpoint data runs"),
            "config": codec.dumps(record.config, "checkpoint config"),
            "metrics": codec.dumps(record.metrics, "checkpoint metrics"),
            "package_version": record.package_version or _package_version(),
        }
        with self._write() as conn:
            conn.execute(delete(checkpoints).where(checkpoints.c.id == record.id))
            conn.execute(insert(checkpoints).values(**row))

    def get_checkpoint(self, ref: str) -> CheckpointRecord:
        """The checkpoint with this id, or the only one whose id starts with it."""
        with self._read() as conn:
            rows = conn.execute(
                select(checkpoints).where(checkpoints.c.id.startswith(ref, autoescape=True)).limit(11)
            ).all()
        exact = [r for r in rows if r.id == ref]
        if exact or len(rows) == 1:
            return _checkpoint_record((exact or rows)[0])
        if not rows:
            raise StoreError(f"no checkpoint {ref!r} in {self.url}; list them with `palaestra models list`")
        raise StoreError(f"checkpoint id prefix {ref!r} is ambiguous in {self.url}: {', '.join(r.id for r in rows)}")

    def list_checkpoints(self, *, limit: int | None = None) -> list[CheckpointRecord]:
        """Checkpoints, newest first."""
        query = select(checkpoints).order_by(checkpoints.c.created_at.desc(), checkpoints.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [_checkpoint_record(row) for row in conn.execute(query)]

    # ----------------------------------------------------------------------- population simulations

    def record_sim_step(
        self, run_id: str, step: int, metrics: dict[str, Any], *, model_calls: int, wall_s: float
    ) -> None:
        """Store the population metrics of one simulated step of a run (``palaestra simulate``).

        A step is recorded once: recording the same step of a run again raises ``StoreError``.
        """
        row = {
            "run_id": run_id,
            "step": step,
            "metrics": codec.dumps(metrics, f"the metrics of step {step}"),
            "model_calls": model_calls,
            "wall_s": wall_s,
        }
        try:
            with self._write() as conn:
                if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
                    raise UnknownRunError(
                        f"cannot record step {step} into run {run_id!r}: there is no such run in {self.url}. "
                        f"Create it with create_run first. {_LIST_HINT}"
                    )
                conn.execute(insert(sim_steps).values(**row))
        except StoreError as e:
            if isinstance(e.__cause__, exc.IntegrityError):
                raise StoreError(f"run {run_id} already has step {step} recorded; a step is recorded once") from e
            raise

    def sim_steps(self, run_id: str) -> list[SimStepRecord]:
        """The recorded steps of a simulation run (id or unique prefix), in step order."""
        with self._read() as conn:
            run = self._get_run(conn, run_id)
            rows = conn.execute(select(sim_steps).where(sim_steps.c.run_id == run.id).order_by(sim_steps.c.step))
            return [
                SimStepRecord(
                    run_id=row.run_id,
                    step=row.step,
                    metrics=json.loads(row.metrics),
                    model_calls=row.model_calls,
                    wall_s=row.wall_s,
                )
                for row in rows
            ]

    # ----------------------------------------------------------------------- episodes

    def record_episode(self, run_id: str, episode: Episode) -> None:
        """Store an episode and all its turns in one transaction.

        An earlier ``error`` episode of the same seed is replaced (its ``attempts`` counted on); an earlier
        ``ok`` one makes this raise, so no seed is ever counted twice.
        """
        if episode.status not in EPISODE_STATUSES:
            raise StoreError(
                f"episode seed {episode.seed} has status {episode.status!r}; "
                f"it must be one of {', '.join(EPISODE_STATUSES)}"
            )
        # Serialise first: a value JSON cannot hold fails here, before the transaction starts.
        turn_rows = [codec.turn_row(0, i, t, episode.seed) for i, t in enumerate(episode.turns)]
        try:
            self._insert_episode(run_id, episode, turn_rows)
        except StoreError as e:
            if isinstance(e.__cause__, exc.IntegrityError):  # the unique (run_id, seed) of a racing writer
                raise StoreError(
                    f"another writer recorded seed {episode.seed} of run {run_id} at the same moment; "
                    "only one process should play a given seed of a run"
                ) from e
            raise

    def _insert_episode(self, run_id: str, episode: Episode, turn_rows: list[dict[str, Any]]) -> None:
        with self._write() as conn:
            run = conn.execute(select(runs.c.env_id).where(runs.c.id == run_id)).first()
            if run is None:
                raise UnknownRunError(
                    f"cannot record an episode into run {run_id!r}: there is no such run in {self.url}. "
                    f"Create it with create_run first. {_LIST_HINT}"
                )
            if run.env_id != episode.env_id:
                raise StoreError(
                    f"episode seed {episode.seed} was played on {episode.env_id!r} but run {run_id} is "
                    f"for {run.env_id!r}; record it into a run of its own environment"
                )
            where = (episodes.c.run_id == run_id) & (episodes.c.seed == episode.seed)
            old = conn.execute(select(episodes.c.id, episodes.c.status, episodes.c.attempts).where(where)).first()
            if old is not None and old.status == "ok":
                raise StoreError(
                    f"run {run_id} already has an ok episode for seed {episode.seed}; recording it again "
                    "would count the seed twice. Only episodes with status 'error' are replaced."
                )
            if old is not None:
                conn.execute(delete(turns).where(turns.c.episode_id == old.id))
                conn.execute(delete(episodes).where(episodes.c.id == old.id))
            attempts = old.attempts + 1 if old is not None else 1
            result = conn.execute(insert(episodes).values(codec.episode_row(run_id, episode, attempts)))
            assert result.inserted_primary_key is not None  # an INSERT of one row always has one
            episode_id = result.inserted_primary_key[0]
            for row in turn_rows:
                row["episode_id"] = episode_id
            if turn_rows:
                conn.execute(insert(turns), turn_rows)

    def episodes(self, run_id: str, *, with_turns: bool = False, status: str | None = None) -> list[Episode]:
        """A run's episodes ordered by seed, optionally only those with one status.

        Without ``with_turns`` the episodes' ``turns`` are empty lists (and so are the figures derived
        from them, such as ``invalid_actions``): load turns when those matter.
        """
        with self._read() as conn:
            run = self._get_run(conn, run_id)
            return [
                codec.episode_from_row(row, run.env_id, turn_list)
                for row, turn_list in self._iter_episodes(conn, run.id, status, with_turns)
            ]

    def _iter_episodes(
        self, conn: Connection, run_id: str, status: str | None, with_turns: bool
    ) -> Iterator[tuple[Any, list[Turn]]]:
        """Episode rows ordered by seed with their turns, reading turns as one ordered stream."""
        if status is not None and status not in EPISODE_STATUSES:
            raise StoreError(f"unknown episode status {status!r}; use one of {', '.join(EPISODE_STATUSES)}")
        query = select(episodes).where(episodes.c.run_id == run_id).order_by(episodes.c.seed)
        turn_query = (
            select(turns)
            .join(episodes, turns.c.episode_id == episodes.c.id)
            .where(episodes.c.run_id == run_id)
            .order_by(episodes.c.seed, turns.c.index)
        )
        if status is not None:
            query = query.where(episodes.c.status == status)
            turn_query = turn_query.where(episodes.c.status == status)
        episode_rows = conn.execute(query).all()
        if not with_turns:
            for row in episode_rows:
                yield row, []
            return
        # Same order, same snapshot: walk both lists together instead of holding every turn at once.
        stream = iter(conn.execute(turn_query.execution_options(yield_per=1000)))
        pending = next(stream, None)
        for row in episode_rows:
            turn_list: list[Turn] = []
            while pending is not None and pending.episode_id == row.id:
                turn_list.append(codec.turn_from_row(pending))
                pending = next(stream, None)
            yield row, turn_list

    def pending_seeds(self, run_id: str) -> list[int]:
        """Seeds planned in the run's ``config["seeds"]`` that have no ok episode yet, in planned order."""
        with self._read() as conn:
            run = self._get_run(conn, run_id)
            planned = run.config.get("seeds")
            if not isinstance(planned, list):
                raise StoreError(
                    f"run {run.id} has no list of planned seeds in its config (config['seeds']); "
                    "the runner must store the seeds it plans to play when it creates the run"
                )
            done = set(
                conn.execute(
                    select(episodes.c.seed).where((episodes.c.run_id == run.id) & (episodes.c.status == "ok"))
                ).scalars()
            )
        return [seed for seed in planned if seed not in done]

    def export_jsonl(self, run_id: str, fp: TextIO) -> int:
        """Write one JSON line per episode (run lineage, episode, every turn in full); return how many.

        ``fp`` is a text file opened for writing (UTF-8). The format is described in docs/store.md.
        """
        count = 0
        with self._read() as conn:
            run = self._get_run(conn, run_id)
            lineage = run.to_dict()
            for row, turn_list in self._iter_episodes(conn, run.id, None, with_turns=True):
                record = codec.export_record(lineage, row, turn_list)
                fp.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
                count += 1
        return count

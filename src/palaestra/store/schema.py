"""The trajectory store's tables, as SQLAlchemy Core metadata that works unchanged on SQLite and PostgreSQL.

Structured values (specs, configs, ``info`` dicts, token ids, log-probabilities) are JSON *text* columns
rather than native JSON types: SQLite has none, and text keeps a row byte-for-byte the same on both
backends. Times are unix seconds (``float``), the same clock as ``Episode.started_at``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

APP_NAME = "palaestra"
# Bump when a table or column changes; ``Store`` refuses databases written by a newer schema and upgrades
# older ones in place (``MIGRATIONS``).
SCHEMA_VERSION = 4

RUN_STATUSES = ("running", "complete", "incomplete", "interrupted")  # incomplete: some episodes errored
EPISODE_STATUSES = ("ok", "error")

metadata = MetaData()

# key/value rows: app="palaestra", schema_version="1", created_by=<package version>. Its presence is what
# marks a database as palaestra's; a database with other tables and no such row is left alone.
meta = Table(
    "palaestra_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", Text),
    Column("status", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("finished_at", Double),
    Column("env_id", String(200), nullable=False),
    Column("env_version", Integer, nullable=False),
    Column("env_spec", Text, nullable=False),
    Column("agent_spec", Text, nullable=False),
    Column("model_spec", Text),
    Column("weights_hash", Text),
    Column("package_version", String(64), nullable=False),
    Column("git_commit", String(64)),
    Column("config", Text, nullable=False),
    # Not a foreign key: lineage may point at a run kept in another database (a teammate's, a cluster's).
    Column("parent_run_id", String(32)),
    Index("ix_runs_created_at", "created_at"),
)

episodes = Table(
    "episodes",
    metadata,
    # BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-incrementing rowid.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),
    Column("error", Text),
    Column("attempts", Integer, nullable=False),
    Column("total_return", Double, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("terminated", Boolean, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("n_turns", Integer, nullable=False),
    Column("invalid_actions", Integer, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("wall_s", Double, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("first_observation", Text, nullable=False),
    # Multi-agent episodes: seat -> agent spec, and the environment's own metrics (JSON); NULL otherwise.
    Column("players", Text),
    Column("metrics", Text),
    # Its index (run_id first) also serves every "episodes of this run" query, so run_id needs no other.
    UniqueConstraint("run_id", "seed", name="uq_episodes_run_seed"),
)

turns = Table(
    "turns",
    metadata,
    Column(
        "episode_id",
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("episodes.id"),
        primary_key=True,
    ),
    Column("index", Integer, primary_key=True, autoincrement=False),
    Column("observation", Text, nullable=False),  # what the agent saw before acting
    Column("action_text", Text, nullable=False),  # what went to the environment
    Column("raw_output", Text),  # the model's full reply the action was parsed from
    Column("parsed", Boolean, nullable=False),
    Column("reward", Double, nullable=False),
    Column("terminated", Boolean, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Column("invalid_action", Boolean, nullable=False),
    Column("next_observation", Text, nullable=False),  # the environment's reply (Step.observation)
    Column("info", Text, nullable=False),
    # Tokens and log-probabilities of the action's final model call; earlier calls keep theirs in `calls`.
    Column("prompt_token_ids", Text),
    Column("completion_token_ids", Text),
    Column("logprobs", Text),
    Column("prompt_tokens", Integer, nullable=False),  # summed over all calls of the action
    Column("completion_tokens", Integer, nullable=False),
    Column("latency_s", Double, nullable=False),
    Column("cached", Boolean, nullable=False),  # every call of the action came from the cache
    Column("calls", Text),  # JSON list, one object per model call; NULL when the action made none
    Column("agent", Text),  # the acting player of a multi-agent episode; NULL for single-agent ones
    Column("round", Integer),  # the environment step (round) a multi-agent action belonged to
    Column("meta", Text),  # Action.meta as JSON (a team's members' answers, messages...); NULL when empty
)

# Trained checkpoints and their lineage (written by `palaestra train` / `improve`; the weights themselves live
# in the model registry directory named by ``path``). ``status``: training, ready, promoted, refused, failed.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at", Double, nullable=False),
    Column("finished_at", Double),
    Column("status", String(16), nullable=False),
    Column("method", String(32), nullable=False),  # sft, filtered-bc, evolve, dpo, grpo
    Column("base_model", Text, nullable=False),  # the model spec the weights start from, e.g. smollm2-135m
    Column("parent", Text),  # the parent checkpoint id, None when trained from the base model
    Column("env_ids", Text, nullable=False),  # JSON list
    Column("data_runs", Text, nullable=False),  # JSON list of the run ids its training data came from
    Column("config", Text, nullable=False),  # JSON: the trainer config, seeds, splits
    Column("metrics", Text, nullable=False),  # JSON: losses, per-round evaluations, the gate's verdict
    Column("wall_s", Double),
    Column("weights_hash", Text),
    Column("path", Text),
    Column("package_version", String(64), nullable=False),
    Index("ix_checkpoints_created_at", "created_at"),
)

# Population metrics of a simulation run (``palaestra simulate``), one row per simulated step: ``metrics`` is
# JSON (total stock, reach, fidelity, ...), ``model_calls`` the model requests the step made.
sim_steps = Table(
    "sim_steps",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("step", Integer, primary_key=True, autoincrement=False),
    Column("metrics", Text, nullable=False),
    Column("model_calls", BigInteger, nullable=False),
    Column("wall_s", Double, nullable=False),
)

# Tables that later schema versions added: an older database lacks them until it is upgraded.
TABLES_SINCE: dict[str, int] = {"checkpoints": 3, "sim_steps": 4}

# Columns each schema version added, applied in order to an older database when it is opened for writing.
MIGRATIONS: dict[int, list[tuple[str, str, str]]] = {
    2: [
        ("episodes", "players", "TEXT"),
        ("episodes", "metrics", "TEXT"),
        ("turns", "agent", "TEXT"),
        ("turns", "round", "INTEGER"),
        ("turns", "meta", "TEXT"),
    ],
}

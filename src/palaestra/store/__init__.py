"""The trajectory store: runs, episodes and turns with their lineage, in SQLite or PostgreSQL.

``Store`` is the whole public surface; ``RunRecord`` is what it returns for a run. See docs/store.md.
"""

from palaestra.store.schema import EPISODE_STATUSES, RUN_STATUSES, SCHEMA_VERSION
from palaestra.store.store import (
    CHECKPOINT_STATUSES,
    CheckpointRecord,
    RunRecord,
    SimStepRecord,
    Store,
    UnknownRunError,
)

__all__ = [
    "CHECKPOINT_STATUSES",
    "EPISODE_STATUSES",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "CheckpointRecord",
    "RunRecord",
    "SimStepRecord",
    "Store",
    "UnknownRunError",
]

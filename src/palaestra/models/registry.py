"""The local model registry: trained checkpoints on disk, each with its lineage, usable as a model spec.

A checkpoint is a directory ``<root>/<id>/`` (root: ``$PALAESTRA_HOME/checkpoints``) holding either a LoRA
adapter (``adapter/``, the default) or full weights (``model/``), and ``checkpoint.json``: the
:class:`~palaestra.store.CheckpointRecord` (base model, parent checkpoint, the runs its data came from,
config and seeds, metrics, wall time) plus the base weights' hash. It is written under a temporary name and
renamed into place only when complete, so an interrupted training never leaves a half-written checkpoint:
the registry lists only complete ones, and the parent stays usable.

``smollm2-135m+c-1a2b3c4d`` is the model spec of a checkpoint: the base spec, ``+``, the checkpoint id. The
base's weights must be the ones the checkpoint was trained on (checked by hash), and a checkpoint trained
from another checkpoint applies its parent's weights first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from palaestra.core.errors import SpecError
from palaestra.store.store import CheckpointRecord

RECORD_FILE = "checkpoint.json"
_TMP_PREFIX = ".tmp-"


def default_root() -> Path:
    from palaestra.models.spec import palaestra_home

    return Path(os.environ.get("PALAESTRA_CHECKPOINTS") or palaestra_home() / "checkpoints")


def new_checkpoint_id() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


def directory_hash(path: Path) -> str:
    """sha256 over the relative names and bytes of every file under ``path`` (sorted)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as fp:
            for block in iter(lambda: fp.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint in the registry."""

    record: CheckpointRecord
    path: Path
    base_weights_hash: str | None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def adapter_dir(self) -> Path | None:
        adapter = self.path / "adapter"
        return adapter if adapter.is_dir() else None

    @property
    def model_dir(self) -> Path | None:
        model = self.path / "model"
        return model if model.is_dir() else None

    @property
    def spec(self) -> str:
        return f"{self.record.base_model}+{self.record.id}"


class Registry:
    """Checkpoints under ``root`` (default ``$PALAESTRA_CHECKPOINTS`` or ``$PALAESTRA_HOME/checkpoints``)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()

    def get(self, ref: str) -> Checkpoint:
        """The checkpoint with this id (or the only one whose id starts with it)."""
        every = self.checkpoints()
        matches = [c for c in every if c.id == ref] or [c for c in every if c.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise SpecError(
                f"no checkpoint {ref!r} in the registry at {self.root}; list them with `palaestra models list` "
                "(set PALAESTRA_CHECKPOINTS if they live elsewhere)"
            )
        raise SpecError(f"checkpoint id {ref!r} is ambiguous: {', '.join(c.id for c in matches)}")

    def checkpoints(self) -> list[Checkpoint]:
        """Every complete checkpoint, newest first (half-written ones are never listed)."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            if path.name.startswith(_TMP_PREFIX) or not (path / RECORD_FILE).is_file():
                continue
            data = json.loads((path / RECORD_FILE).read_text(encoding="utf-8"))
            base_hash = data.pop("base_weights_hash", None)
            found.append(Checkpoint(CheckpointRecord(**data), path, base_hash))
        return sorted(found, key=lambda c: c.record.created_at, reverse=True)

    def write(
        self, record: CheckpointRecord, fill: Callable[[Path], None], *, base_weights_hash: str | None
    ) -> Checkpoint:
        """Create a checkpoint: ``fill(tmp_dir)`` writes ``adapter/`` or ``model/`` into a temporary directory,
        then the record is added and the directory renamed into place. If ``fill`` raises (or the process
        dies), nothing appears in the registry."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / record.id
        if final.exists():
            raise SpecError(f"checkpoint {record.id} already exists in {self.root}")
        tmp = self.root / f"{_TMP_PREFIX}{record.id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            fill(tmp)
            if not ((tmp / "adapter").is_dir() or (tmp / "model").is_dir()):
                raise SpecError("a checkpoint needs an adapter/ or a model/ directory")
            weights = tmp / ("adapter" if (tmp / "adapter").is_dir() else "model")
            record = dataclasses.replace(record, weights_hash=directory_hash(weights), path=str(final))
            data = {**record.to_dict(), "base_weights_hash": base_weights_hash}
            (tmp / RECORD_FILE).write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Checkpoint(record, final, base_weights_hash)

    def update(self, checkpoint: Checkpoint, **changes: Any) -> Checkpoint:
        """Change fields of a checkpoint's record (status, metrics...), rewriting its file atomically."""
        record = dataclasses.replace(checkpoint.record, **changes)
        data = {**record.to_dict(), "base_weights_hash": checkpoint.base_weights_hash}
        tmp = checkpoint.path / f"{RECORD_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, checkpoint.path / RECORD_FILE)
        return Checkpoint(record, checkpoint.path, checkpoint.base_weights_hash)

    def chain(self, ref: str) -> list[Checkpoint]:
        """The checkpoint and its ancestors, root first (the order their weights apply in)."""
        by_id = {c.id: c for c in self.checkpoints()}  # one pass over the registry, not one per ancestor
        out = [self.get(ref)]
        while out[-1].record.parent is not None:
            parent = out[-1].record.parent
            if parent not in by_id:
                raise SpecError(f"checkpoint {out[-1].id}'s parent {parent} is not in the registry at {self.root}")
            if by_id[parent] in out:
                raise SpecError(f"checkpoint {ref} has a cycle in its parents")
            out.append(by_id[parent])
        return out[::-1]

    def clean_stale(self, older_than_s: float = 3600.0) -> int:
        """Remove temporary directories of interrupted writes older than ``older_than_s``; their number."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for path in self.root.glob(f"{_TMP_PREFIX}*"):
            if time.time() - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed


def split_spec(spec: str) -> tuple[str, str] | None:
    """``"smollm2-135m+c-1a2b3c4d"`` -> ``("smollm2-135m", "c-1a2b3c4d")``; None when the spec names no
    checkpoint."""
    base, plus, ref = spec.rpartition("+")
    if not plus or not base or not ref.startswith("c-"):
        return None
    return base, ref

"""Views of the ``checkpoints`` table: the lineage graph (base model -> checkpoint -> child checkpoint, with
the runs whose episodes trained each), learning curves read from the checkpoints' ``metrics``, and the
gate's verdict.

The trainers decide what ``metrics`` holds, so the curves are read generically: a list of numbers (a loss per
step) is a curve over its index; a list of objects (one per round, e.g. ``{"round": 2, "score": 41.0}``) is
one curve per numeric field over ``round`` (or the position); a number (also one level down, as
``gate.score``) is a point per checkpoint, in the order they were made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from palaestra.report import svg
from palaestra.store import CheckpointRecord

_X_KEYS = ("round", "step", "epoch", "iteration")
MAX_RUN_NODES = 24  # beyond this the lineage graph leaves the data runs out (the table still lists them)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def lineage_graph(checkpoints: Sequence[CheckpointRecord]) -> Markup:
    """Base models, checkpoints and the runs that trained them, as a left-to-right graph."""
    known = {c.id for c in checkpoints}
    nodes: list[tuple[str, str, str, str]] = []
    edges: list[tuple[str, str]] = []
    bases = sorted({c.base_model for c in checkpoints if c.parent is None or c.parent not in known})
    runs = sorted({r for c in checkpoints for r in c.data_runs})
    show_runs = len(runs) <= MAX_RUN_NODES
    for base in bases:
        nodes.append((f"base:{base}", f"{base}\nbase model", f"base model {base}", "base"))
    if show_runs:
        for run in runs:
            nodes.append((f"run:{run}", f"{run}\ndata run", f"training data from run {run}", "run"))
    for c in sorted(checkpoints, key=lambda c: c.created_at):
        tip = f"{c.id}: {c.method} on {', '.join(c.env_ids) or '-'}, {c.status}"
        nodes.append((c.id, f"{c.id}\n{c.method} · {c.status}", tip, c.status))
        parent = c.parent if c.parent in known else f"base:{c.base_model}"
        edges.append((parent or f"base:{c.base_model}", c.id))
        if show_runs:
            edges += [(f"run:{r}", c.id) for r in c.data_runs]
    return svg.layered_graph(nodes, edges, title="checkpoint lineage")


@dataclass(frozen=True)
class Curve:
    """One learning curve: a metric of one checkpoint over steps or rounds."""

    metric: str
    checkpoint: str
    xs: list[float]
    ys: list[float]


def _curves_of(checkpoint: CheckpointRecord) -> list[Curve]:
    out: list[Curve] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, list) and value and all(_number(v) for v in value):
            out.append(
                Curve(prefix, checkpoint.id, [float(i + 1) for i in range(len(value))], [float(v) for v in value])
            )
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            keys = dict.fromkeys(k for v in value for k, x in v.items() if _number(x) and k not in _X_KEYS)
            for key in keys:
                points = [
                    (float(v.get(next((k for k in _X_KEYS if _number(v.get(k))), ""), i + 1)), float(v[key]))
                    for i, v in enumerate(value)
                    if _number(v.get(key))
                ]
                out.append(Curve(f"{prefix}.{key}", checkpoint.id, [p[0] for p in points], [p[1] for p in points]))
        elif isinstance(value, dict):
            for key, inner in value.items():
                if isinstance(inner, list | dict):
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)

    walk("", checkpoint.metrics)
    return out


def scalars(checkpoint: CheckpointRecord) -> dict[str, float]:
    """The numeric metrics of a checkpoint, top level and one level down (``gate.score``)."""
    out: dict[str, float] = {}
    for key, value in checkpoint.metrics.items():
        if _number(value):
            out[key] = float(value)
        elif isinstance(value, dict):
            out.update({f"{key}.{k}": float(v) for k, v in value.items() if _number(v)})
    return out


def learning_curves(checkpoints: Sequence[CheckpointRecord]) -> list[Markup]:
    """One chart per metric: each checkpoint's curve of it, then each scalar metric across checkpoints."""
    by_metric: dict[str, list[Curve]] = {}
    for c in sorted(checkpoints, key=lambda c: c.created_at):
        for curve in _curves_of(c):
            by_metric.setdefault(curve.metric, []).append(curve)
    charts = [
        svg.line_chart(
            [(c.checkpoint, c.xs, c.ys) for c in curves],
            title=f"{metric} by {'round' if '.' in metric else 'step'}",
            x_label="round" if "." in metric else "step",
            y_label=metric,
        )
        for metric, curves in by_metric.items()
    ]
    ordered = sorted(checkpoints, key=lambda c: c.created_at)
    points: dict[str, tuple[list[float], list[float]]] = {}
    for i, c in enumerate(ordered):
        for key, value in scalars(c).items():
            xs, ys = points.setdefault(key, ([], []))
            xs.append(float(i + 1))
            ys.append(value)
    charts += [
        svg.line_chart(
            [(key, xs, ys)], title=f"{key} across checkpoints", x_label="checkpoint (oldest = 1)", y_label=key
        )
        for key, (xs, ys) in points.items()
        if len(xs) > 1
    ]
    return charts


def verdict(checkpoint: CheckpointRecord) -> str:
    """``promoted``, ``refused`` or the status, read from the status and the metrics' ``gate``."""
    if checkpoint.status in ("promoted", "refused"):
        return checkpoint.status
    gate = checkpoint.metrics.get("gate")
    if isinstance(gate, dict) and isinstance(gate.get("promoted"), bool):
        return "promoted" if gate["promoted"] else "refused"
    return checkpoint.status

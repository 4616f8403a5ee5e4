"""Plots drawn as inline SVG, for the HTML report and the dashboard: no plotting library, no JavaScript.

Every function returns ``Markup`` (safe to insert into an autoescaped Jinja template) and escapes every text
it draws itself, so labels taken from the database (agent specs, model names, agent names) can never inject
markup. Styling is by CSS class (``report/static/palaestra.css``); no ``style`` attributes, so the
dashboard's Content-Security-Policy can forbid inline styles.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5", "#9c6b4e", "#9498a0")
LABEL_W = 230  # room for the row labels of the horizontal charts
PLOT_W = 420
ROW_H = 22
_ids = itertools.count()  # marker ids must be unique within a page that shows several graphs


def _t(value: object) -> str:
    return escape(str(value), quote=True)


def _n(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _shorten(text: str, limit: int = 34) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _svg(width: float, height: float, body: list[str], title: str, cls: str = "chart") -> Markup:
    head = (
        f'<svg class="{cls}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_n(width)} {_n(height)}" '
        f'width="{_n(width)}" height="{_n(height)}" role="img" aria-label="{_t(title)}">'
    )
    return Markup(head + f'<text class="title" x="4" y="14">{_t(title)}</text>' + "".join(body) + "</svg>")


def _domain(values: Sequence[float], include_zero: bool = True) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    low = min(finite, default=0.0)
    high = max(finite, default=1.0)
    if include_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    if high - low < 1e-12:
        low, high = low - 1.0, high + 1.0
    return low, high


def _step(low: float, high: float, count: int = 5) -> float:
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = _step(low, high, count)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _tick_text(value: float, low: float, high: float) -> str:
    """A tick label with as many decimals as the tick spacing needs (0.005 s ticks must not all read 0.00)."""
    step = _step(low, high)
    decimals = max(
        0, -math.floor(math.log10(step)) + (1 if round(step / 10 ** math.floor(math.log10(step)), 6) == 2.5 else 0)
    )
    text = f"{value:,.{decimals}f}"
    return "0" if float(value) == 0 or text.strip("-0.,") == "" else text


def _x_axis(x0: float, y: float, low: float, high: float, scale: float, label: str) -> list[str]:
    parts = [f'<line class="axis" x1="{_n(x0)}" y1="{_n(y)}" x2="{_n(x0 + PLOT_W)}" y2="{_n(y)}"/>']
    for tick in _ticks(low, high):
        x = x0 + (tick - low) * scale
        parts.append(f'<line class="grid" x1="{_n(x)}" y1="24" x2="{_n(x)}" y2="{_n(y)}"/>')
        parts.append(f'<text class="tick" x="{_n(x)}" y="{_n(y + 13)}">{_t(_tick_text(tick, low, high))}</text>')
    parts.append(f'<text class="axis-label" x="{_n(x0 + PLOT_W / 2)}" y="{_n(y + 28)}">{_t(label)}</text>')
    return parts


@dataclass(frozen=True)
class Bar:
    """One row of a bar chart: a label, a value and its optional interval."""

    label: str
    value: float | None
    ci: tuple[float, float] | None = None


def bar_chart(bars: Sequence[Bar], *, title: str, x_label: str, domain: tuple[float, float] | None = None) -> Markup:
    """Horizontal bars with 95% interval whiskers; rows without a value say "no data"."""
    numbers = [b.value for b in bars if b.value is not None] + [v for b in bars if b.ci for v in b.ci]
    low, high = domain or _domain(numbers)
    scale = PLOT_W / (high - low)
    height = 30 + ROW_H * len(bars) + 36
    body: list[str] = []
    axis_y = 26 + ROW_H * len(bars)
    body += _x_axis(LABEL_W, axis_y, low, high, scale, x_label)
    zero = LABEL_W + (min(max(0.0, low), high) - low) * scale
    for i, bar in enumerate(bars):
        y = 28 + i * ROW_H
        body.append(
            f'<text class="row-label" x="{LABEL_W - 6}" y="{_n(y + 13)}"><title>{_t(bar.label)}</title>'
            f"{_t(_shorten(bar.label))}</text>"
        )
        if bar.value is None or not math.isfinite(bar.value):
            body.append(f'<text class="note" x="{LABEL_W + 4}" y="{_n(y + 13)}">no data</text>')
            continue
        x = LABEL_W + (bar.value - low) * scale
        left, width = min(x, zero), abs(x - zero)
        tip = _fmt(bar.value) + (f" [{_fmt(bar.ci[0])}, {_fmt(bar.ci[1])}]" if bar.ci else "")
        body.append(
            f'<rect class="bar" fill="{PALETTE[i % len(PALETTE)]}" x="{_n(left)}" y="{_n(y + 3)}" '
            f'width="{_n(max(width, 1.0))}" height="{ROW_H - 8}"><title>{_t(bar.label)}: {_t(tip)}</title></rect>'
        )
        if bar.ci and all(math.isfinite(v) for v in bar.ci):
            a, b = (LABEL_W + (v - low) * scale for v in bar.ci)
            mid = y + ROW_H / 2 - 1
            body.append(
                f'<path class="whisker" d="M{_n(a)},{_n(mid)}H{_n(b)}M{_n(a)},{_n(mid - 5)}V{_n(mid + 5)}'
                f'M{_n(b)},{_n(mid - 5)}V{_n(mid + 5)}"/>'
            )
        body.append(f'<text class="value" x="{_n(LABEL_W + PLOT_W + 6)}" y="{_n(y + 13)}">{_t(tip)}</text>')
    return _svg(LABEL_W + PLOT_W + 150, height, body, title)


def strip_plot(groups: Sequence[tuple[str, Sequence[float]]], *, title: str, x_label: str) -> Markup:
    """One row of dots per group (one dot per episode, spread vertically so equal values stay visible) and
    a tick at the group's mean: a distribution that hides nothing, however few episodes there are."""
    values = [v for _, vs in groups for v in vs]
    low, high = _domain(values, include_zero=False)
    pad = (high - low) * 0.04
    low, high = low - pad, high + pad
    scale = PLOT_W / (high - low)
    row = ROW_H + 6
    axis_y = 26 + row * len(groups)
    body = _x_axis(LABEL_W, axis_y, low, high, scale, x_label)
    for i, (label, vs) in enumerate(groups):
        y = 28 + i * row
        body.append(
            f'<text class="row-label" x="{LABEL_W - 6}" y="{_n(y + 15)}"><title>{_t(label)}</title>'
            f"{_t(_shorten(label))}</text>"
        )
        if not vs:
            body.append(f'<text class="note" x="{LABEL_W + 4}" y="{_n(y + 15)}">no episodes</text>')
            continue
        colour = PALETTE[i % len(PALETTE)]
        for k, v in enumerate(vs):
            jitter = ((k * 7) % 9 - 4) * 2.0  # deterministic spread
            cx = LABEL_W + (v - low) * scale
            body.append(
                f'<circle class="dot" fill="{colour}" cx="{_n(cx)}" cy="{_n(y + 11 + jitter)}" r="3">'
                f"<title>{_t(_fmt(v))}</title></circle>"
            )
        mean = sum(vs) / len(vs)
        mx = LABEL_W + (mean - low) * scale
        body.append(f'<line class="mean" x1="{_n(mx)}" y1="{_n(y)}" x2="{_n(mx)}" y2="{_n(y + row - 4)}"/>')
        body.append(
            f'<text class="value" x="{_n(LABEL_W + PLOT_W + 6)}" y="{_n(y + 15)}">mean {_t(_fmt(mean))}, '
            f"n={len(vs)}</text>"
        )
    return _svg(LABEL_W + PLOT_W + 150, axis_y + 36, body, title)


def line_chart(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str, x_label: str, y_label: str
) -> Markup:
    """Lines with dots, one per series of (x, y) points, with a legend."""
    xs = [x for _, sx, _ in series for x in sx]
    ys = [y for _, _, sy in series for y in sy]
    x_low, x_high = _domain(xs, include_zero=False)
    y_low, y_high = _domain(ys)
    left, top, width, height = 56, 26, 520, 220
    sx, sy = width / (x_high - x_low), height / (y_high - y_low)
    body: list[str] = []
    for tick in _ticks(y_low, y_high):
        y = top + height - (tick - y_low) * sy
        body.append(f'<line class="grid" x1="{left}" y1="{_n(y)}" x2="{left + width}" y2="{_n(y)}"/>')
        body.append(f'<text class="tick-y" x="{left - 4}" y="{_n(y + 4)}">{_t(_tick_text(tick, y_low, y_high))}</text>')
    for tick in _ticks(x_low, x_high):
        x = left + (tick - x_low) * sx
        body.append(
            f'<text class="tick" x="{_n(x)}" y="{top + height + 14}">{_t(_tick_text(tick, x_low, x_high))}</text>'
        )
    body.append(f'<path class="axis" d="M{left},{top}V{top + height}H{left + width}"/>')
    body.append(f'<text class="axis-label" x="{left + width / 2}" y="{top + height + 30}">{_t(x_label)}</text>')
    body.append(
        f'<text class="axis-label" transform="translate(12,{top + height / 2}) rotate(-90)">{_t(y_label)}</text>'
    )
    for i, (label, px, py) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        points = [(left + (x - x_low) * sx, top + height - (y - y_low) * sy) for x, y in zip(px, py, strict=True)]
        if points:
            d = "M" + "L".join(f"{_n(x)},{_n(y)}" for x, y in points)
            body.append(f'<path class="line" stroke="{colour}" d="{d}"/>')
        for (x, y), vx, vy in zip(points, px, py, strict=True):
            body.append(
                f'<circle class="dot" fill="{colour}" cx="{_n(x)}" cy="{_n(y)}" r="3">'
                f"<title>{_t(label)}: {_t(_fmt(vx))}, {_t(_fmt(vy))}</title></circle>"
            )
        ly = top + 12 + i * 16
        body.append(f'<rect fill="{colour}" x="{left + width + 12}" y="{ly - 9}" width="10" height="10"/>')
        body.append(f'<text class="legend" x="{left + width + 26}" y="{ly}">{_t(_shorten(label, 28))}</text>')
    return _svg(left + width + 220, top + height + 40, body, title)


def graph(
    nodes: Sequence[tuple[str, str, str]],
    edges: Sequence[tuple[str, str]],
    positions: dict[str, tuple[float, float]],
    *,
    title: str,
    groups: dict[str, str] | None = None,
    size: int = 460,
) -> Markup:
    """An undirected network: ``nodes`` are (id, label, tooltip), ``positions`` in [0, 1]^2, ``groups`` maps
    a node to a category whose colour fills it (e.g. an agent's final answer)."""
    margin = 40
    span = size - 2 * margin
    xy = {n: (margin + x * span, 24 + margin + y * span) for n, (x, y) in positions.items()}
    categories = list(dict.fromkeys(sorted(set((groups or {}).values()))))
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(categories)}
    body: list[str] = []
    for u, v in edges:
        (x1, y1), (x2, y2) = xy[u], xy[v]
        body.append(f'<line class="edge" x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}"/>')
    for node, label, tip in nodes:
        x, y = xy[node]
        fill = colour.get((groups or {}).get(node, ""), "#dde3ee")
        body.append(
            f'<g class="node"><circle fill="{fill}" cx="{_n(x)}" cy="{_n(y)}" r="11"/>'
            f'<text x="{_n(x)}" y="{_n(y - 14)}">{_t(_shorten(label, 16))}</text><title>{_t(tip)}</title></g>'
        )
    for i, category in enumerate(categories):
        ly = 40 + i * 16
        body.append(f'<rect fill="{colour[category]}" x="{size + 4}" y="{ly - 9}" width="10" height="10"/>')
        body.append(f'<text class="legend" x="{size + 18}" y="{ly}">{_t(_shorten(category, 26))}</text>')
    return _svg(size + (200 if categories else 0), size + 24, body, title, cls="chart network")


def directed_graph(nodes: Sequence[str], edges: dict[tuple[str, str], int], *, title: str, size: int = 340) -> Markup:
    """Who spoke to whom: nodes on a circle, an arrow per (sender, receiver) whose width grows with the number
    of messages, the count written on it."""
    n = max(len(nodes), 1)
    centre, radius = size / 2, size / 2 - 46
    xy = {
        node: (
            centre + radius * math.cos(2 * math.pi * i / n - math.pi / 2),
            24 + centre + radius * math.sin(2 * math.pi * i / n - math.pi / 2),
        )
        for i, node in enumerate(nodes)
    }
    marker = f"arrow-{next(_ids)}"
    body = [
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9" '
        'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0L10,5L0,10z" class="arrowhead"/></marker></defs>'
    ]
    top = max(edges.values(), default=1)
    for (src, dst), count in sorted(edges.items()):
        if src not in xy or dst not in xy or src == dst:
            continue
        (x1, y1), (x2, y2) = xy[src], xy[dst]
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy) or 1.0
        # Offset sideways so that A->B and B->A are two separate arrows; stop at the circles' edges.
        ox, oy = -dy / length * 5, dx / length * 5
        ux, uy = dx / length * 20, dy / length * 20
        a = (x1 + ux + ox, y1 + uy + oy)
        b = (x2 - ux + ox, y2 - uy + oy)
        width = 1 + 3 * count / top
        body.append(
            f'<line class="arrow" stroke-width="{_n(width)}" x1="{_n(a[0])}" y1="{_n(a[1])}" x2="{_n(b[0])}" '
            f'y2="{_n(b[1])}" marker-end="url(#{marker})"><title>{_t(src)} → {_t(dst)}: {count}</title></line>'
        )
        mx, my = (a[0] + b[0]) / 2 + ox * 1.6, (a[1] + b[1]) / 2 + oy * 1.6
        body.append(f'<text class="count" x="{_n(mx)}" y="{_n(my)}">{count}</text>')
    for i, node in enumerate(nodes):
        x, y = xy[node]
        body.append(
            f'<g class="node"><circle fill="{PALETTE[i % len(PALETTE)]}" cx="{_n(x)}" cy="{_n(y)}" r="18"/>'
            f'<text x="{_n(x)}" y="{_n(y + 4)}">{_t(_shorten(node, 12))}</text></g>'
        )
    return _svg(size, size + 30, body, title, cls="chart network")


def layered_graph(
    nodes: Sequence[tuple[str, str, str, str]], edges: Sequence[tuple[str, str]], *, title: str
) -> Markup:
    """A lineage DAG drawn left to right: nodes are (id, label, tooltip, css class), each placed one column
    right of its deepest parent; edges go from parent to child."""
    ids = [n[0] for n in nodes]
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for parent, child in edges:
        if parent in parents and child in parents:
            parents[child].append(parent)
    depth: dict[str, int] = {}

    def depth_of(node: str, seen: frozenset[str] = frozenset()) -> int:
        if node not in depth:
            ps = [p for p in parents[node] if p not in seen]  # a cycle (bad data) must not recurse forever
            depth[node] = 1 + max((depth_of(p, seen | {node}) for p in ps), default=-1)
        return depth[node]

    columns: dict[int, list[str]] = {}
    for node in ids:
        columns.setdefault(depth_of(node), []).append(node)
    box_w, box_h, gap_x, gap_y = 170, 40, 60, 16
    xy: dict[str, tuple[float, float]] = {}
    for col, members in columns.items():
        for row, node in enumerate(members):
            xy[node] = (10 + col * (box_w + gap_x), 30 + row * (box_h + gap_y))
    marker = f"lineage-arrow-{next(_ids)}"
    body = [
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0L10,5L0,10z" class="arrowhead"/></marker></defs>'
    ]
    for parent, child in edges:
        if parent in xy and child in xy:
            (x1, y1), (x2, y2) = xy[parent], xy[child]
            body.append(
                f'<path class="lineage-edge" d="M{_n(x1 + box_w)},{_n(y1 + box_h / 2)}C{_n(x1 + box_w + gap_x / 2)},'
                f"{_n(y1 + box_h / 2)} {_n(x2 - gap_x / 2)},{_n(y2 + box_h / 2)} {_n(x2)},{_n(y2 + box_h / 2)}"
                f'" marker-end="url(#{marker})"/>'
            )
    for node, label, tip, cls in nodes:
        x, y = xy[node]
        lines = label.split("\n")[:2]
        texts = "".join(
            f'<text x="{_n(x + 8)}" y="{_n(y + 16 + 15 * k)}">{_t(_shorten(line, 26))}</text>'
            for k, line in enumerate(lines)
        )
        body.append(
            f'<g class="lineage-node {_t(cls)}"><rect x="{_n(x)}" y="{_n(y)}" width="{box_w}" height="{box_h}" '
            f'rx="6"/>{texts}<title>{_t(tip)}</title></g>'
        )
    width = 20 + (max(columns, default=0) + 1) * (box_w + gap_x)
    height = 40 + max((len(m) for m in columns.values()), default=1) * (box_h + gap_y)
    return _svg(width, height, body, title, cls="chart lineage")

"""Random connected graphs for networked multi-agent tasks (AgentsNet), built fast enough for 10,000 nodes.

Three families, as in AgentsNet (Grötschla et al. 2025, ``generate_graphs.py`` of its code): small-world
(Watts-Strogatz, each node joined to its 4 nearest ring neighbours, rewiring probability 0.4, redrawn
until connected), preferential attachment (Barabasi-Albert, 2 edges per new node) and the Delaunay
triangulation of uniform random points in the unit square. networkx builds the first two; the
triangulation is a Bowyer-Watson written here (no scipy), with point location by walking from the last
triangle and points inserted in a snake order over a grid so that walks stay short.

``diameter`` is exact. Up to 20,000 nodes it grows every node's ball of radius r as a bit set (one big
integer per node, OR-ed with its neighbours' balls once per r) until every ball holds the whole graph:
under a second for 10,000 nodes, where a breadth-first search from every node takes minutes in Python.
Larger graphs use the iFUB method (Crescenzi et al. 2013): searches from the nodes farthest from a
central node, stopping once no farther pair can exist.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence

import networkx as nx

from palaestra.core.errors import SpecError

FAMILIES = ("small-world", "preferential-attachment", "delaunay")
MIN_NODES = 4

Adjacency = list[list[int]]
Point = tuple[float, float]


def generate(family: str, n: int, rng: random.Random) -> Adjacency:
    """A connected graph of ``family`` on nodes ``0..n-1`` as sorted adjacency lists, drawn with ``rng``."""
    if family not in FAMILIES:
        raise SpecError(f"unknown graph family {family!r}; choose one of {', '.join(FAMILIES)}")
    if n < MIN_NODES:
        raise SpecError(f"a graph needs at least {MIN_NODES} nodes, not {n}")
    seed = rng.randrange(2**31)
    if family == "small-world":
        # k = 4 as AgentsNet; networkx gives the complete graph when k >= n - 1 (n <= 5).
        graph = nx.connected_watts_strogatz_graph(n, 4, 0.4, tries=1000, seed=seed)
        return _adjacency(n, graph.edges())
    if family == "preferential-attachment":
        return _adjacency(n, nx.barabasi_albert_graph(n, 2, seed=seed).edges())
    local = random.Random(seed)
    points = [(local.random(), local.random()) for _ in range(n)]
    return _adjacency(n, delaunay_edges(points))


def _adjacency(n: int, edges: object) -> Adjacency:
    adj: list[set[int]] = [set() for _ in range(n)]
    for u, v in edges:  # type: ignore[attr-defined]
        if u != v:
            adj[u].add(v)
            adj[v].add(u)
    return [sorted(s) for s in adj]


# --------------------------------------------------------------------------- Delaunay (Bowyer-Watson)


def _orient(a: Point, b: Point, c: Point) -> float:
    """Twice the signed area of (a, b, c): positive when counter-clockwise."""
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _in_circle(a: Point, b: Point, c: Point, d: Point) -> bool:
    """True when ``d`` lies strictly inside the circumcircle of the counter-clockwise triangle (a, b, c)."""
    adx, ady = a[0] - d[0], a[1] - d[1]
    bdx, bdy = b[0] - d[0], b[1] - d[1]
    cdx, cdy = c[0] - d[0], c[1] - d[1]
    det = (
        (adx * adx + ady * ady) * (bdx * cdy - cdx * bdy)
        + (bdx * bdx + bdy * bdy) * (cdx * ady - adx * cdy)
        + (cdx * cdx + cdy * cdy) * (adx * bdy - bdx * ady)
    )
    return det > 0.0


def delaunay_edges(points: Sequence[Point]) -> set[tuple[int, int]]:
    """The edges ``(i, j)``, ``i < j``, of the Delaunay triangulation of ``points`` (in general position)."""
    n = len(points)
    if n < 3:
        return {(0, 1)} if n == 2 else set()
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    lo_x, lo_y = min(xs), min(ys)
    span = max(max(xs) - lo_x, max(ys) - lo_y) or 1.0
    cx, cy = lo_x + span / 2, lo_y + span / 2
    # A super-triangle far outside the points; its corners are removed at the end.
    big = 100.0 * span
    pts = [*points, (cx - 2 * big, cy - big), (cx + 2 * big, cy - big), (cx, cy + 2 * big)]
    width = n + 3
    tris: dict[int, tuple[int, int, int]] = {0: (n, n + 1, n + 2)}
    edge_tri: dict[int, int] = {n * width + n + 1: 0, (n + 1) * width + n + 2: 0, (n + 2) * width + n: 0}
    next_id, last = 1, 0

    for p_index in _snake_order(points):
        p = pts[p_index]
        tri_id = _locate(pts, tris, edge_tri, width, last, p)
        # The cavity: every triangle whose circumcircle holds p, grown from the one containing it.
        bad = {tri_id}
        stack = [tri_id]
        while stack:
            a, b, c = tris[stack.pop()]
            for u, v in ((a, b), (b, c), (c, a)):
                other = edge_tri.get(v * width + u)
                if other is not None and other not in bad:
                    oa, ob, oc = tris[other]
                    if _in_circle(pts[oa], pts[ob], pts[oc], p):
                        bad.add(other)
                        stack.append(other)
        boundary = []
        for t in bad:
            a, b, c = tris[t]
            for u, v in ((a, b), (b, c), (c, a)):
                if edge_tri.get(v * width + u) not in bad:
                    boundary.append((u, v))
        for t in bad:
            a, b, c = tris.pop(t)
            for u, v in ((a, b), (b, c), (c, a)):
                del edge_tri[u * width + v]
        for u, v in boundary:
            tris[next_id] = (u, v, p_index)
            edge_tri[u * width + v] = next_id
            edge_tri[v * width + p_index] = next_id
            edge_tri[p_index * width + u] = next_id
            last = next_id
            next_id += 1

    edges: set[tuple[int, int]] = set()
    for a, b, c in tris.values():
        if a < n and b < n and c < n:
            edges.update({(min(a, b), max(a, b)), (min(b, c), max(b, c)), (min(a, c), max(a, c))})
    # A finite super-triangle can cost an edge of the convex hull (a very flat hull triangle); add them back.
    hull = _convex_hull(points)
    for i, u in enumerate(hull):
        v = hull[(i + 1) % len(hull)]
        edges.add((min(u, v), max(u, v)))
    return edges


def _locate(
    pts: list[Point], tris: dict[int, tuple[int, int, int]], edge_tri: dict[int, int], width: int, start: int, p: Point
) -> int:
    """The triangle holding ``p``: walk from ``start`` across any edge that has ``p`` on its far side."""
    current = start if start in tris else next(iter(tris))
    for turn in range(4 * len(tris) + 10):
        a, b, c = tris[current]
        edges = ((a, b), (b, c), (c, a))
        for k in range(3):  # rotating the first edge tried keeps the walk from circling
            u, v = edges[(k + turn) % 3]
            if _orient(pts[u], pts[v], p) < 0:
                current = edge_tri[v * width + u]
                break
        else:
            return current
    for tri_id, (a, b, c) in tris.items():  # never reached on valid input; a safe fallback
        if min(_orient(pts[a], pts[b], p), _orient(pts[b], pts[c], p), _orient(pts[c], pts[a], p)) >= 0:
            return tri_id
    raise SpecError("Delaunay triangulation failed to locate a point (are the points distinct?)")


def _snake_order(points: Sequence[Point]) -> list[int]:
    """Indices of ``points`` row by row over a sqrt(n) grid, alternating direction, so neighbours come close."""
    n = len(points)
    side = max(1, int(math.sqrt(n / 2)))
    ys = [p[1] for p in points]
    lo_y = min(ys)
    h = (max(ys) - lo_y) or 1.0

    def key(i: int) -> tuple[int, float]:
        row = min(side - 1, int((points[i][1] - lo_y) / h * side))
        x = points[i][0]
        return (row, x if row % 2 == 0 else -x)

    return sorted(range(n), key=key)


def _convex_hull(points: Sequence[Point]) -> list[int]:
    """Indices of the convex hull, counter-clockwise (Andrew's monotone chain)."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    lower: list[int] = []
    upper: list[int] = []
    for i in order:
        while len(lower) >= 2 and _orient(points[lower[-2]], points[lower[-1]], points[i]) <= 0:
            lower.pop()
        lower.append(i)
    for i in reversed(order):
        while len(upper) >= 2 and _orient(points[upper[-2]], points[upper[-1]], points[i]) <= 0:
            upper.pop()
        upper.append(i)
    return lower[:-1] + upper[:-1]


# --------------------------------------------------------------------------- distances


def bfs_distances(adj: Adjacency, source: int) -> list[int]:
    """Hop distances from ``source`` (-1 for unreachable nodes)."""
    dist = [-1] * len(adj)
    dist[source] = 0
    queue = deque([source])
    while queue:
        u = queue.popleft()
        du = dist[u] + 1
        for v in adj[u]:
            if dist[v] < 0:
                dist[v] = du
                queue.append(v)
    return dist


def is_connected(adj: Adjacency) -> bool:
    return bool(adj) and min(bfs_distances(adj, 0)) >= 0


# Bit sets cost n^2 / 8 bytes in all (50 MB at 20,000 nodes); above that iFUB, slower but small.
_BITSET_MAX_NODES = 20_000


def diameter(adj: Adjacency) -> int:
    """The exact diameter of a connected graph (raises ``SpecError`` if it is not connected)."""
    if len(adj) <= 1:
        return 0
    if min(bfs_distances(adj, 0)) < 0:
        raise SpecError("the graph is not connected, so it has no finite diameter")
    return _diameter_bitsets(adj) if len(adj) <= _BITSET_MAX_NODES else _diameter_ifub(adj)


def _diameter_bitsets(adj: Adjacency) -> int:
    n = len(adj)
    full = (1 << n) - 1
    ball = [1 << v for v in range(n)]
    growing = list(range(n))
    radius = 0
    while growing:
        grown = list(ball)
        for v in growing:
            reach = ball[v]
            for u in adj[v]:
                reach |= ball[u]
            grown[v] = reach
        ball = grown
        radius += 1
        growing = [v for v in growing if ball[v] != full]
    return radius


def _diameter_ifub(adj: Adjacency) -> int:
    dist = bfs_distances(adj, 0)
    # 4-sweep: two double sweeps find a long path; its middle node is a good centre.
    a = max(range(len(adj)), key=dist.__getitem__)
    lower = 0
    centre = 0
    for _ in range(2):
        da = bfs_distances(adj, a)
        b = max(range(len(adj)), key=da.__getitem__)
        db = bfs_distances(adj, b)
        lower = max(lower, da[b])
        centre = next(v for v in range(len(adj)) if da[v] + db[v] == da[b] and da[v] == da[b] // 2)
        dc = bfs_distances(adj, centre)
        a = max(range(len(adj)), key=dc.__getitem__)
    dc = bfs_distances(adj, centre)
    levels: dict[int, list[int]] = {}
    for v, d in enumerate(dc):
        levels.setdefault(d, []).append(v)
    level = max(levels)
    upper = 2 * level
    while upper > lower:
        for v in levels[level]:
            lower = max(lower, max(bfs_distances(adj, v)))
        if lower > 2 * (level - 1):
            return lower
        level -= 1
        upper = 2 * level
    return lower

"""The ``network`` scenario: an information network where agents post, repost, follow or stay idle, and a
recommender decides what each one sees.

OASIS (a million agents on an X/Reddit-like platform) builds each agent's feed with a recommender that mixes
posts of followed accounts (in-network) with popular posts from others (out-of-network, ranked by
popularity and by interest similarity). Implemented here, simplified and vectorised:

- the follow graph is a sparse matrix in CSR form kept as one sorted int64 array of edge keys
  ``follower * N + followee`` (row pointers come from ``np.searchsorted``), built at the start by each agent
  following ``follows`` others drawn with heavy-tailed (Pareto) attractiveness, so follower counts are skewed;
- a feed has ``in_network`` slots: the items (posts or reposts) that followed accounts made in the previous
  step, a random subset when there are more; and ``popular`` slots drawn from the ``pool`` most reposted root
  posts of the last ``window`` steps, with probability proportional to (1 + reposts) times
  ``interest_boost`` when the post's topic is the agent's own (OASIS's interest match, reduced to a topic);
- ``post`` makes a new root post; ``repost`` shares the most reposted root in the agent's feed (not its
  own); ``follow`` follows the author of a root in its feed it does not follow yet (popular slots first).

Metrics per step: posts, reposts, new follows, reach (the share of agents whose feed this step held the most
reposted post so far), and the largest cascade (1 + reposts of the most reposted root).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from palaestra.core.errors import SpecError
from palaestra.core.types import Message
from palaestra.sim.population import AGE_BANDS, TEMPERAMENTS, Profiles
from palaestra.sim.scenario import Scenario, Variable, sample_rows

TOPICS = ("sports", "politics", "music", "science", "cooking", "travel", "films", "games")
FEED_LEVELS = ("empty", "a few posts", "many posts")

DEFAULTS: dict[str, Any] = {
    "topics": 4,
    "follows": 10,
    "in_network": 3,
    "popular": 2,
    "pool": 20,
    "window": 3,
    "interest_boost": 4.0,
    "popularity_skew": 1.5,  # Pareto shape of the initial attractiveness (smaller: more skewed)
}

# Scripted rule per temperament: probabilities of idle / post / repost / follow with something in the feed;
# with an empty feed, repost and follow have nothing to act on and their share goes to idle.
_WITH_FEED = np.array([[0.7, 0.1, 0.1, 0.1], [0.5, 0.2, 0.2, 0.1], [0.3, 0.3, 0.3, 0.1]])
_EMPTY_FEED = np.stack([_WITH_FEED[:, 0] + _WITH_FEED[:, 2] + _WITH_FEED[:, 3], _WITH_FEED[:, 1]], axis=1)
_SCRIPTED = np.stack(
    [np.concatenate([_EMPTY_FEED, np.zeros((3, 2))], axis=1), _WITH_FEED], axis=1
)  # [temperament, feed non-empty, action]


class NetworkScenario(Scenario):
    """A social network with a recommender (OASIS-like, simplified); state in arrays, follows in CSR."""

    name: ClassVar[str] = "network"
    description: ClassVar[str] = "an information network: follow, post, repost, with a recommender"
    actions: ClassVar[tuple[str, ...]] = ("idle", "post", "repost", "follow")
    invalid_action: ClassVar[int] = 0  # an unparseable reply does nothing
    variables: ClassVar[tuple[Variable, ...]] = (
        Variable("temperament", TEMPERAMENTS),
        Variable("age", AGE_BANDS),
        Variable("feed", FEED_LEVELS),
        Variable("topic_in_feed", ("no", "yes")),
    )
    metric_names: ClassVar[tuple[str, ...]] = ("posts", "reposts", "new_follows", "reach", "largest_cascade")

    def __init__(self, agents: int, rng: np.random.Generator, **options: Any) -> None:
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise SpecError(f"unknown network option(s) {sorted(unknown)}; valid: {', '.join(DEFAULTS)}")
        self.options = {**DEFAULTS, **options}
        o = self.options
        topics = int(o["topics"])
        if not 1 <= topics <= len(TOPICS):
            raise SpecError(f"network topics must be between 1 and {len(TOPICS)}, not {topics}")
        self.k_in, self.k_pop = int(o["in_network"]), int(o["popular"])
        self.profiles = Profiles.draw(agents, topics, rng)
        n = agents
        m = min(int(o["follows"]), n - 1)
        if m > 0:
            weight = rng.pareto(float(o["popularity_skew"]), n) + 1.0
            src = np.repeat(np.arange(n, dtype=np.int64), m)
            dst = rng.choice(n, size=n * m, p=weight / weight.sum())
            keep = src != dst
            self.edge_keys = np.unique(src[keep] * n + dst[keep])
        else:
            self.edge_keys = np.zeros(0, dtype=np.int64)
        self.item_author = np.zeros(0, dtype=np.int32)
        self.item_root = np.zeros(0, dtype=np.int64)
        self.item_step = np.zeros(0, dtype=np.int32)
        self.item_reposts = np.zeros(0, dtype=np.int64)
        self.latest_item = np.full(n, -1, dtype=np.int64)
        self.step_index = 0
        self.feed = np.full((n, self.k_in + self.k_pop), -1, dtype=np.int64)
        self._reach = 0.0

    @classmethod
    def from_follows(
        cls, follows: list[tuple[int, int]], topic: list[int], temperament: list[int] | None = None, **options: Any
    ) -> NetworkScenario:
        """A small network set by hand (for tests and examples): (follower, followee) pairs, each agent's
        topic and temperament (default cautious); ages are all ``young``."""
        n = len(topic)
        scenario = cls(n, np.random.default_rng(0), **{**options, "follows": 0})
        scenario.options["follows"] = options.get("follows", DEFAULTS["follows"])
        scenario.profiles = Profiles(
            age=np.zeros(n, dtype=np.int8),
            temperament=np.array(temperament or [0] * n, dtype=np.int8),
            community=np.array(topic, dtype=np.int32),
        )
        scenario.edge_keys = np.unique(np.array([a * n + b for a, b in follows], dtype=np.int64))
        return scenario

    @staticmethod
    def bytes_per_agent(steps: int, options: dict[str, Any]) -> int:
        o = {**DEFAULTS, **options}
        slots = int(o["in_network"]) + int(o["popular"])
        # Edges: 8-byte keys plus the construction's source, target, mask and sort temporaries (5 x 8 more);
        # feed slots: the feed, its roots, root authors, follow keys (4 x 8); items: at most one per agent per
        # step (author 4, root 8, step 4, reposts 8); profiles 6, latest item, followers, codes (3 x 8).
        per_agent = 48 * int(o["follows"]) + 32 * slots + 24 * max(steps, 1) + 6 + 24
        return int(per_agent * 1.5)

    # ----------------------------------------------------------------------- graph

    @property
    def indptr(self) -> np.ndarray:
        """CSR row pointers of the follow graph (row = follower)."""
        n = self.n
        return np.searchsorted(self.edge_keys, np.arange(n + 1, dtype=np.int64) * n)

    @property
    def indices(self) -> np.ndarray:
        """CSR column indices (the followed accounts), row after row."""
        return (self.edge_keys % self.n).astype(np.int32)

    def followers(self) -> np.ndarray:
        return np.bincount(self.edge_keys % self.n, minlength=self.n)

    def following(self) -> np.ndarray:
        return np.diff(self.indptr)

    def follows(self, follower: np.ndarray, followee: np.ndarray) -> np.ndarray:
        """Whether each ``follower[i]`` follows ``followee[i]`` (vectorised lookup in the sorted keys)."""
        keys = follower.astype(np.int64) * self.n + followee
        if self.edge_keys.size == 0:
            return np.zeros(keys.shape, dtype=bool)
        pos = np.minimum(np.searchsorted(self.edge_keys, keys), self.edge_keys.size - 1)
        return self.edge_keys[pos] == keys

    def influence(self) -> np.ndarray:
        return self.followers().astype(np.float64)

    # ----------------------------------------------------------------------- the recommender

    def _roots_of(self, items: np.ndarray) -> np.ndarray:
        if self.item_root.size == 0:
            return np.full(items.shape, -1, dtype=np.int64)
        return np.where(items >= 0, self.item_root[np.maximum(items, 0)], -1)

    def _authors_of(self, items: np.ndarray) -> np.ndarray:
        if self.item_author.size == 0:
            return np.full(items.shape, -1, dtype=np.int64)
        return np.where(items >= 0, self.item_author[np.maximum(items, 0)], -1)

    def popular_pool(self) -> np.ndarray:
        """The ``pool`` most reposted root posts of the last ``window`` steps (ties: the newer first)."""
        ids = np.arange(self.item_root.size, dtype=np.int64)
        recent = (self.item_root == ids) & (self.item_step >= self.step_index - int(self.options["window"]))
        roots = ids[recent]
        order = np.lexsort((-roots, -self.item_reposts[roots]))
        return roots[order[: int(self.options["pool"])]]

    def begin_step(self, rng: np.random.Generator) -> None:
        n = self.n
        feed = np.full((n, self.k_in + self.k_pop), -1, dtype=np.int64)
        if self.k_in and self.edge_keys.size:
            candidate = self.latest_item[self.edge_keys % n]
            valid = np.flatnonzero(candidate >= 0)
            if valid.size:
                rows = self.edge_keys[valid] // n
                items = candidate[valid]
                order = np.lexsort((rng.random(valid.size), rows))  # rows kept together, random within a row
                rows, items = rows[order], items[order]
                rank = np.arange(rows.size) - np.searchsorted(rows, rows, side="left")
                keep = rank < self.k_in
                feed[rows[keep], rank[keep]] = items[keep]
        pool = self.popular_pool()
        if self.k_pop and pool.size:
            pool_topic = self.profiles.community[self.item_author[pool]]
            popularity = 1.0 + self.item_reposts[pool]
            for topic in range(int(self.options["topics"])):
                members = np.flatnonzero(self.profiles.community == topic)
                weight = popularity * np.where(pool_topic == topic, float(self.options["interest_boost"]), 1.0)
                feed[members, self.k_in :] = rng.choice(pool, size=(members.size, self.k_pop), p=weight / weight.sum())
        self.feed = feed
        self._following, self._followers = self.following(), self.followers()  # for the agents' own prompts
        roots = self._roots_of(feed)
        valid_feed = feed >= 0
        count = valid_feed.sum(axis=1)
        self._feed_level = np.where(count == 0, 0, np.where(count < 3, 1, 2))
        root_topic = np.where(valid_feed, self.profiles.community[np.maximum(self._authors_of(roots), 0)], -1)
        self._topic_in_feed = (root_topic == self.profiles.community[:, None]).any(axis=1).astype(np.int64)
        ids = np.arange(self.item_root.size, dtype=np.int64)
        all_roots = ids[self.item_root == ids]
        if all_roots.size:
            top = all_roots[np.argmax(self.item_reposts[all_roots])]  # ties: the oldest
            self._reach = float((roots == top).any(axis=1).mean())
        else:
            self._reach = 0.0

    def variable_values(self) -> list[np.ndarray]:
        return [self.profiles.temperament, self.profiles.age, self._feed_level, self._topic_in_feed]

    # ----------------------------------------------------------------------- prompts and rules

    def _rules(self) -> Message:
        # The same system message for every agent: a local model computes this shared prefix once.
        return Message(
            "system",
            "You use a social network. Each hour you choose one thing to do: idle (nothing), post (write a "
            "post), repost (share the most popular post in your feed) or follow (follow the author of a post "
            "you see).",
        )

    def _persona(self, temperament: int, age: int) -> str:
        return f"You are a {AGE_BANDS[age]}, {TEMPERAMENTS[temperament]} user."

    def _question(self) -> str:
        return f"What do you do now? {self.answer_instruction()}"

    def archetype_prompt(self, values: dict[str, int]) -> tuple[Message, ...]:
        level = FEED_LEVELS[values["feed"]]
        if level == "empty":
            feed = "Your feed is empty."
        else:
            about = "one of them is" if values["topic_in_feed"] else "none of them is"
            feed = f"Your feed has {level}; {about} about your favourite topic."
        return (
            self._rules(),
            Message("user", f"{self._persona(values['temperament'], values['age'])} {feed} {self._question()}"),
        )

    def agent_prompt(self, agent: int) -> tuple[Message, ...]:
        topic = TOPICS[int(self.profiles.community[agent])]
        lines = []
        for item in self.feed[agent]:
            if item < 0:
                continue
            root = int(self.item_root[item])
            author = int(self.item_author[root])
            what = f"a post by user {author} about {TOPICS[int(self.profiles.community[author])]}"
            if root != item:
                what += f" (reposted by user {int(self.item_author[item])})"
            lines.append(f"{what}, reposted {int(self.item_reposts[root])} times")
        feed = "Your feed: " + "; ".join(lines) + "." if lines else "Your feed is empty."
        about = (
            f"Your favourite topic is {topic}. You follow {int(self._following[agent])} accounts and "
            f"{int(self._followers[agent])} accounts follow you."
        )
        persona = self._persona(int(self.profiles.temperament[agent]), int(self.profiles.age[agent]))
        return (self._rules(), Message("user", f"{persona} {about} {feed} {self._question()}"))

    def scripted_actions(self, agents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        table = _SCRIPTED.reshape(-1, len(self.actions))
        rows = self.profiles.temperament[agents].astype(np.int64) * 2 + (self._feed_level[agents] > 0)
        return sample_rows(table, rows, rng)

    def apply(self, actions: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
        n = self.n
        everyone = np.arange(n, dtype=np.int64)
        roots = self._roots_of(self.feed)
        root_author = self._authors_of(roots)
        mine = root_author == everyone[:, None]
        # repost: the most reposted root in the feed that is not the agent's own (ties: leftmost slot)
        if self.item_reposts.size:
            score = np.where((roots >= 0) & ~mine, self.item_reposts[np.maximum(roots, 0)], -1)
        else:
            score = np.full(roots.shape, -1, dtype=np.int64)
        best = score.argmax(axis=1)
        reposters = np.flatnonzero((actions == 2) & (score.max(axis=1, initial=-1) >= 0))
        targets = roots[reposters, best[reposters]]
        # follow: the first root author it does not follow yet, popular slots first
        columns = list(range(self.k_in, self.k_in + self.k_pop)) + list(range(self.k_in))
        candidate = root_author[:, columns]
        ok = (candidate >= 0) & ~mine[:, columns]
        ok &= ~self.follows(np.broadcast_to(everyone[:, None], candidate.shape), np.maximum(candidate, 0))
        follower = np.flatnonzero((actions == 3) & ok.any(axis=1))
        followee = candidate[follower, ok[follower].argmax(axis=1)]
        self.edge_keys = np.sort(np.concatenate([self.edge_keys, follower * n + followee]))
        # new items: posts (their own roots), then reposts
        posters = np.flatnonzero(actions == 1)
        first = self.item_root.size
        post_ids = np.arange(first, first + posters.size, dtype=np.int64)
        repost_ids = np.arange(first + posters.size, first + posters.size + reposters.size, dtype=np.int64)
        self.item_author = np.concatenate([self.item_author, posters.astype(np.int32), reposters.astype(np.int32)])
        self.item_root = np.concatenate([self.item_root, post_ids, targets])
        self.item_step = np.concatenate(
            [self.item_step, np.full(posters.size + reposters.size, self.step_index, dtype=np.int32)]
        )
        self.item_reposts = np.concatenate([self.item_reposts, np.zeros(posters.size + reposters.size, np.int64)])
        self.item_reposts += np.bincount(targets, minlength=self.item_reposts.size)
        self.latest_item[:] = -1
        self.latest_item[posters] = post_ids
        self.latest_item[reposters] = repost_ids
        self.step_index += 1
        ids = np.arange(self.item_root.size, dtype=np.int64)
        cascades = self.item_reposts[self.item_root == ids]
        return {
            "posts": int(posters.size),
            "reposts": int(reposters.size),
            "new_follows": int(follower.size),
            "reach": self._reach,
            "largest_cascade": int(cascades.max()) + 1 if cascades.size else 0,
        }

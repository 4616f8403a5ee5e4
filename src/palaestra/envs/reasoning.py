"""Single-answer reasoning items: ``reasoning-arithmetic-v0`` and ``reasoning-logic-v0``.

These are the items on which teams (``palaestra.teams``) are compared with a single agent: one question,
one exact answer. ``reasoning-arithmetic-v0`` draws multi-step arithmetic word problems (2 to 4 operations:
shopping, sharing, rates, ages, savings, travel, packing, fractions; whole-number answers), in the spirit of
GSM8K's grade-school problems but generated, so there is no fixed data set to leak. ``reasoning-logic-v0``
draws logic puzzles with a unique answer: who stands where in a line / row / race from clues, or whether an
islander is a knight (always tells the truth) or a knave (always lies). The generator checks uniqueness by
brute force over every ordering (at most 5! = 120) or every knight/knave assignment (2^3 = 8), and drops
clues that are not needed, so every puzzle has exactly one solution and no redundant clue.

An episode is one item. The action is ``Answer: <value>`` (a bare value is accepted too). Reward 1 for the
correct answer and 0 otherwise; the episode ends after ``spec.max_turns`` answers (1 as registered; with
``max_turns=k`` a wrong answer before the last is told "wrong" and the agent tries again). A reply with no
parseable answer (not a number; for logic, not one of the puzzle's options) is an invalid action: reward
0, ``info["invalid_action"]`` True, and the episode ends (rule ``terminate``, penalty 0).

Splits: every item has a canonical key that leaves out names and objects (the template and its numbers;
the puzzle's clue structure over people numbered by their order in the text) and a hash of the key puts the
item in the train, validation or test pool. A seed of a split draws items until one falls in that split's
pool, so no test item (nor a renaming of one) ever appears under a train seed.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from palaestra.core.errors import EnvError, SpecError
from palaestra.core.types import Step
from palaestra.envs.base import Env, Policy

Kind = Literal["arithmetic", "logic"]

# Share (percent) of items held out for each evaluation split; the rest is the train pool.
_POOL_PERCENT = {"test": 15, "validation": 15}
# Probability that the ``noisy`` policy (LMRL-Gym's dataset mixture) answers correctly on purpose.
NOISY_OPTIMAL_PROB = 0.5
# Replies longer than this hold no answer we accept (an answer is a number or a name).
MAX_ACTION_CHARS = 200

NAMES: tuple[str, ...] = (
    "Ada", "Ben", "Cara", "Dev", "Elif", "Farid", "Gita", "Hugo", "Ines", "Jon", "Kemal", "Lena", "Mateo",
    "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tariq", "Uma", "Vera", "Wen", "Ximena", "Yusuf", "Zoe",
)  # fmt: skip
# (plural, singular) of things bought, shared, made or picked.
_GOODS = (("pencils", "pencil"), ("notebooks", "notebook"), ("apples", "apple"), ("candles", "candle"),
          ("mugs", "mug"), ("stickers", "sticker"), ("tickets", "ticket"), ("plants", "plant"))  # fmt: skip
_SHARED = ("marbles", "cookies", "stamps", "shells", "cards", "beads", "stones", "coins")
_MADE = (("machine", "bottles"), ("printer", "pages"), ("bakery oven", "loaves"), ("loom", "scarves"),
         ("factory line", "toys"), ("press", "books"))  # fmt: skip
_VEHICLES = ("train", "bus", "truck", "ferry", "cyclist", "car")
_FRUITS = ("apples", "pears", "plums", "lemons", "peaches", "oranges")
_PURCHASES = ("bike", "guitar", "tent", "camera", "jacket", "telescope")
_CONTAINERS = ("jar", "box", "bag", "basket", "drawer", "bowl")


# =========================================================================== items


@dataclass(frozen=True)
class Item:
    """One generated question with its exact answer.

    ``options`` lists the accepted answers of a logic puzzle (an answer outside them is invalid);
    arithmetic items have none (any number is an answer). ``distractors`` are plausible wrong answers
    (intermediate results, numbers of the text, other names) for the ``random`` policy. ``key`` is the
    canonical form whose hash decides the item's split pool.
    """

    kind: Kind
    template: str
    question: str
    answer: str
    steps: int
    key: str
    options: tuple[str, ...] = ()
    distractors: tuple[str, ...] = ()

    def pool(self) -> str:
        """The split (``train``, ``validation`` or ``test``) whose seeds may draw this item."""
        bucket = int(hashlib.sha256(self.key.encode()).hexdigest(), 16) % 100
        if bucket < _POOL_PERCENT["test"]:
            return "test"
        if bucket < _POOL_PERCENT["test"] + _POOL_PERCENT["validation"]:
            return "validation"
        return "train"


def _item(template: str, question: str, answer: int, steps: int, numbers: Sequence[int], wrong: Sequence[int]) -> Item:
    distractors = tuple(dict.fromkeys(str(w) for w in wrong if w != answer and w >= 0))
    key = f"arithmetic|{template}|{','.join(map(str, numbers))}"
    return Item("arithmetic", template, question, str(answer), steps, key, distractors=distractors)


# --------------------------------------------------------------------------- arithmetic templates
# Each takes the rng and returns an Item. Numbers are drawn so every intermediate result is a whole number.


def _shopping(rng: random.Random) -> Item:
    name = rng.choice(NAMES)
    (goods1, _), (goods2, _) = rng.sample(_GOODS, 2)
    a, p = rng.randint(2, 9), rng.randint(2, 15)
    if rng.random() < 0.5:
        total = a * p
        bill = next(b for b in (10, 20, 50, 100, 200) if b > total)
        question = (
            f"{name} buys {a} {goods1} at ${p} each and pays with a ${bill} bill. "
            f"How many dollars of change does {name} get?"
        )
        return _item("shopping-1", question, bill - total, 2, (a, p, bill), (total, bill - a, bill - p, a + p))
    b, q = rng.randint(2, 9), rng.randint(2, 15)
    total = a * p + b * q
    bill = next(x for x in (20, 50, 100, 200, 500) if x > total)
    question = (
        f"{name} buys {a} {goods1} at ${p} each and {b} {goods2} at ${q} each, and pays with a ${bill} bill. "
        f"How many dollars of change does {name} get?"
    )
    wrong = (total, bill - a * p, bill - b * q, bill - (a + b) * max(p, q), bill - total + 1)
    return _item("shopping-2", question, bill - total, 4, (a, p, b, q, bill), wrong)


def _sharing(rng: random.Random) -> Item:
    name, friend = rng.sample(NAMES, 2)
    thing = rng.choice(_SHARED)
    m, each = rng.randint(2, 8), rng.randint(2, 12)
    k = rng.randint(1, 15)
    if rng.random() < 0.5:
        n = m * each + k
        question = (
            f"{name} has {n} {thing}. {name} gives {k} of them to {friend} and shares the rest equally among "
            f"{m} friends. How many {thing} does each of the {m} friends get?"
        )
        return _item("sharing-1", question, each, 2, (n, k, m), (n - k, n // m, each + 1, (n + k) // m))
    while not (divisors := [d for d in range(2, 13) if (m * each + k) % d == 0]):
        k += 1  # so the total splits into bags of 2 to 12
    c = rng.choice(divisors)
    b = (m * each + k) // c
    question = (
        f"{name} fills {b} bags with {c} {thing} each, keeps {k} of the {thing} and shares the rest equally "
        f"among {m} friends. How many {thing} does each friend get?"
    )
    return _item("sharing-2", question, each, 3, (b, c, k, m), (b * c, b * c - k, (b * c) // m, each - 1))


def _rates(rng: random.Random) -> Item:
    machine, things = rng.choice(_MADE)
    r, h, d = rng.randint(3, 40), rng.randint(2, 10), rng.randint(2, 7)
    if rng.random() < 0.4:
        question = (
            f"A {machine} makes {r} {things} per hour. It runs {h} hours a day for {d} days. "
            f"How many {things} does it make?"
        )
        return _item("rates-1", question, r * h * d, 2, (r, h, d), (r * h, r * d, r + h + d, r * h * (d - 1)))
    x = rng.randint(1, r * h)
    question = (
        f"A {machine} makes {r} {things} per hour. It runs {h} hours a day for {d} days, and {x} of the {things} "
        f"it makes are faulty. How many good {things} does it make?"
    )
    total = r * h * d
    return _item("rates-2", question, total - x, 3, (r, h, d, x), (total, r * h - x, total + x, r * d * h - x - 1))


def _ages(rng: random.Random) -> Item:
    older, younger = rng.sample(NAMES, 2)
    k, y = rng.randint(2, 30), rng.randint(2, 15)
    now = rng.randint(3, 40)
    z = now + y
    if rng.random() < 0.4:
        question = (
            f"{older} is {k} years older than {younger}. In {y} years {younger} will be {z} years old. "
            f"How old is {older} now?"
        )
        return _item("ages-1", question, now + k, 2, (k, y, z), (z + k, now, z - k, now - k))
    w = rng.randint(2, 20)
    question = (
        f"{older} is {k} years older than {younger}. In {y} years {younger} will be {z} years old. "
        f"How old will {older} be in {w} years?"
    )
    return _item("ages-2", question, now + k + w, 3, (k, y, z, w), (now + k, z + k + w, now + w, z + w - k))


def _savings(rng: random.Random) -> Item:
    name = rng.choice(NAMES)
    start, s, w = rng.randint(0, 60), rng.randint(3, 25), rng.randint(2, 12)
    c = rng.randint(1, start + s * w)
    thing = rng.choice(_PURCHASES)
    question = (
        f"{name} has ${start}. {name} saves ${s} every week for {w} weeks, then spends ${c} on a {thing}. "
        f"How many dollars does {name} have left?"
    )
    total = start + s * w
    return _item("savings", question, total - c, 3, (start, s, w, c), (total, s * w - c, start + s - c, total + c))


def _travel(rng: random.Random) -> Item:
    vehicle = rng.choice(_VEHICLES)
    v1, t1, v2, t2 = rng.randint(10, 90), rng.randint(1, 6), rng.randint(10, 90), rng.randint(1, 6)
    question = (
        f"A {vehicle} travels at {v1} km per hour for {t1} hours, then at {v2} km per hour for {t2} hours. "
        f"How many km does it travel in total?"
    )
    answer = v1 * t1 + v2 * t2
    wrong = (v1 * t1, v2 * t2, (v1 + v2) * (t1 + t2), v1 * t2 + v2 * t1)
    return _item("travel", question, answer, 3, (v1, t1, v2, t2), wrong)


def _packing(rng: random.Random) -> Item:
    name = rng.choice(NAMES)
    fruit = rng.choice(_FRUITS)
    p, bags = rng.randint(3, 12), rng.randint(3, 20)
    a = rng.randint(1, p * bags - 1)
    b = p * bags - a
    if rng.random() < 0.5:
        question = (
            f"{name} picks {a} {fruit} on Monday and {b} on Tuesday, and packs them all into bags of {p}. "
            f"How many bags does {name} fill?"
        )
        return _item("packing-1", question, bags, 2, (a, b, p), (a + b, a // p, bags + 1, b // p))
    q = rng.randint(2, 9)
    question = (
        f"{name} picks {a} {fruit} on Monday and {b} on Tuesday, packs them all into bags of {p} and sells each "
        f"bag for ${q}. How many dollars does {name} get?"
    )
    return _item("packing-2", question, bags * q, 3, (a, b, p, q), (bags, (a + b) * q, bags * q + q, bags + q))


_FRACTIONS = (("half", 2), ("a third", 3), ("a quarter", 4))


def _fractions(rng: random.Random) -> Item:
    box = rng.choice(_CONTAINERS)
    thing = rng.choice(_SHARED)
    (word1, d1), (word2, d2) = rng.choice(_FRACTIONS), rng.choice(_FRACTIONS)
    unit = rng.randint(1, 8)
    n = d1 * d2 * unit * rng.choice((1, 2, 3))
    first = n // d1
    rest = n - first
    second = rest // d2
    question = (
        f"There are {n} {thing} in a {box}. {word1.capitalize()} of them are red, {word2} of the rest are blue "
        f"and the others are green. How many {thing} are green?"
    )
    answer = rest - second
    wrong = (first, rest, second, n - n // d1 - n // d2, n // d2)
    return _item("fractions", question, answer, 4, (n, d1, d2), wrong)


ARITHMETIC_TEMPLATES: dict[str, Callable[[random.Random], Item]] = {
    "shopping": _shopping,
    "sharing": _sharing,
    "rates": _rates,
    "ages": _ages,
    "savings": _savings,
    "travel": _travel,
    "packing": _packing,
    "fractions": _fractions,
}


def generate_arithmetic(rng: random.Random) -> Item:
    """One arithmetic word problem, from a template chosen by ``rng``."""
    return ARITHMETIC_TEMPLATES[rng.choice(sorted(ARITHMETIC_TEMPLATES))](rng)


# --------------------------------------------------------------------------- ordering puzzles
# A clue is (type, person a, person b); positions are 0-based, position 0 first. Its text depends on the
# scene; its truth only on the ordering.

_ORDINALS = ("first", "second", "third", "fourth", "fifth")


@dataclass(frozen=True)
class _Scene:
    setting: str  # "{people} {verb}"; positions counted as described by ``where``
    where: str
    before: str  # "{a} is ... {b}"
    right_before: str
    position: str  # "Who {position}?" with {ordinal}
    end: str


_SCENES = (
    _Scene(
        "{people} stand in a line at a ticket window.",
        "The person at the front of the line is first.",
        "{a} stands somewhere ahead of {b}.",
        "{a} stands directly ahead of {b}.",
        "Who is {ordinal} in line?",
        "{a} is at the front or at the back of the line.",
    ),
    _Scene(
        "{people} sit in a row of chairs numbered from left to right.",
        "The leftmost chair is first.",
        "{a} sits somewhere to the left of {b}.",
        "{a} sits directly to the left of {b}.",
        "Who sits in the {ordinal} chair?",
        "{a} sits in one of the two end chairs.",
    ),
    _Scene(
        "{people} ran a race; there were no ties.",
        "The winner finished first.",
        "{a} finished ahead of {b}.",
        "{a} finished directly ahead of {b}.",
        "Who finished {ordinal}?",
        "{a} finished either first or last.",
    ),
)
_CLUE_TYPES = ("before", "right_before", "adjacent", "not_adjacent", "one_between", "end", "not_end")


def _clue_holds(clue: tuple[str, int, int], pos: Sequence[int]) -> bool:
    kind, a, b = clue
    n = len(pos)
    if kind == "before":
        return pos[a] < pos[b]
    if kind == "right_before":
        return pos[a] + 1 == pos[b]
    if kind == "adjacent":
        return abs(pos[a] - pos[b]) == 1
    if kind == "not_adjacent":
        return abs(pos[a] - pos[b]) != 1
    if kind == "one_between":
        return abs(pos[a] - pos[b]) == 2
    if kind == "end":
        return pos[a] in (0, n - 1)
    return pos[a] not in (0, n - 1)  # not_end


def _clue_text(clue: tuple[str, int, int], scene: _Scene, names: Sequence[str]) -> str:
    kind, a, b = clue
    x, y = names[a], names[b]
    if kind == "before":
        return scene.before.format(a=x, b=y)
    if kind == "right_before":
        return scene.right_before.format(a=x, b=y)
    if kind == "adjacent":
        return f"{x} and {y} are next to each other."
    if kind == "not_adjacent":
        return f"{x} and {y} are not next to each other."
    if kind == "one_between":
        return f"There is exactly one person between {x} and {y}."
    if kind == "end":
        return scene.end.format(a=x)
    return f"{x} is neither first nor last."


def _minimal_clues(
    candidates: list[Any], worlds: list[Any], holds: Callable[[Any, Any], bool], rng: random.Random
) -> list[Any] | None:
    """Clues (from the shuffled true candidates) that leave exactly one world, each needed by the others;
    None when even all candidates leave several worlds (the caller draws another puzzle)."""
    rng.shuffle(candidates)
    chosen: list[Any] = []
    alive = list(worlds)
    for clue in candidates:
        if len(alive) == 1:
            break
        remaining = [w for w in alive if holds(clue, w)]
        if len(remaining) < len(alive):
            chosen.append(clue)
            alive = remaining
    if len(alive) != 1:
        return None
    for clue in list(chosen):  # drop clues the others already imply
        rest = [c for c in chosen if c is not clue]
        if sum(all(holds(c, w) for c in rest) for w in worlds) == 1:
            chosen = rest
    return chosen


def _ordering_candidates(n: int) -> list[tuple[str, int, int]]:
    """Every clue about ``n`` people: ordered pairs for before / right_before, unordered pairs for the
    symmetric relations, one person (``b`` unused, 0) for end / not_end."""
    clues: list[tuple[str, int, int]] = []
    for a, b in itertools.permutations(range(n), 2):
        clues += [("before", a, b), ("right_before", a, b)]
    for a, b in itertools.combinations(range(n), 2):
        clues += [("adjacent", a, b), ("not_adjacent", a, b), ("one_between", a, b)]
    clues += [(kind, a, 0) for a in range(n) for kind in ("end", "not_end")]
    return clues


def _ordering(rng: random.Random) -> Item:
    n = rng.choice((4, 5))
    names = rng.sample(NAMES, n)
    scene = rng.choice(_SCENES)
    worlds = [tuple(p) for p in itertools.permutations(range(n))]
    while True:
        truth = tuple(rng.sample(range(n), n))  # truth[i] = position of person i
        candidates = [c for c in _ordering_candidates(n) if _clue_holds(c, truth)]
        clues = _minimal_clues(candidates, worlds, _clue_holds, rng)
        if clues is not None:
            break
    asked = rng.randrange(n)
    answer = names[truth.index(asked)]
    people = ", ".join(names[:-1]) + f" and {names[-1]}"
    lines = [scene.setting.format(people=f"{n} people, {people},"), scene.where]
    lines += [_clue_text(c, scene, names) for c in clues]
    lines.append(scene.position.format(ordinal=_ORDINALS[asked]))
    key = f"logic|ordering|{n}|{sorted(clues)}|{asked}"
    others = tuple(x for x in names if x != answer)
    return Item("logic", "ordering", " ".join(lines), answer, len(clues), key, tuple(names), others)


# --------------------------------------------------------------------------- knights and knaves
# A statement is (speaker, claim); a claim is a tuple whose truth depends on the assignment (True = knight).


def _claim_true(claim: tuple[Any, ...], world: Sequence[bool]) -> bool:
    kind = claim[0]
    if kind == "is":
        return world[claim[1]] == claim[2]
    if kind == "same":
        return world[claim[1]] == world[claim[2]]
    if kind == "both_knights":
        return world[claim[1]] and world[claim[2]]
    if kind == "or":
        return world[claim[1]] or not world[claim[2]]
    if kind == "some_knave":
        return not all(world)
    return sum(world) == 1  # exactly_one_knight


def _statement_holds(statement: tuple[int, tuple[Any, ...]], world: Sequence[bool]) -> bool:
    speaker, claim = statement
    return world[speaker] == _claim_true(claim, world)  # knights say true things, knaves false ones


def _claim_text(speaker: int, claim: tuple[Any, ...], names: Sequence[str]) -> str:
    kind = claim[0]

    def pair(i: int, j: int) -> str:  # "Ada and I", never "I and Ada"
        if i == speaker:
            i, j = j, i
        return f"{names[i]} and {'I' if j == speaker else names[j]}"

    if kind == "is":
        return f"{names[claim[1]]} is a {'knight' if claim[2] else 'knave'}"  # never about the speaker
    if kind == "same":
        return f"{pair(claim[1], claim[2])} are the same kind"
    if kind == "both_knights":
        return f"{pair(claim[1], claim[2])} are both knights"
    if kind == "or":
        first = "I am a knight" if claim[1] == speaker else f"{names[claim[1]]} is a knight"
        second = "I am a knave" if claim[2] == speaker else f"{names[claim[2]]} is a knave"
        return f"{first} or {second}"
    if kind == "some_knave":
        return "At least one of us three is a knave"
    return "Exactly one of us three is a knight"


def _knights(rng: random.Random) -> Item:
    names = rng.sample(NAMES, 3)
    worlds = list(itertools.product((True, False), repeat=3))
    claims: list[tuple[Any, ...]] = [("some_knave",), ("exactly_one_knight",)]
    for i in range(3):
        claims += [("is", i, True), ("is", i, False)]
        for j in range(3):
            if i < j:
                claims += [("same", i, j), ("both_knights", i, j)]
            if i != j:
                claims.append(("or", i, j))
    while True:
        truth = tuple(rng.random() < 0.5 for _ in range(3))
        # "I am a knight" is said by everyone and tells nothing: no claim about the speaker alone
        candidates = [
            (s, c)
            for s in range(3)
            for c in claims
            if not (c[0] == "is" and c[1] == s) and _statement_holds((s, c), truth)
        ]
        statements = _minimal_clues(candidates, worlds, _statement_holds, rng)
        if statements is not None:
            break
    statements.sort(key=lambda s: s[0])
    asked = rng.randrange(3)
    lines = [
        f"On an island every person is either a knight, who always tells the truth, or a knave, who always "
        f"lies. You meet {names[0]}, {names[1]} and {names[2]}."
    ]
    lines += [f'{names[s]} says: "{_claim_text(s, c, names)}."' for s, c in statements]
    lines.append(f"Is {names[asked]} a knight or a knave?")
    answer = "knight" if truth[asked] else "knave"
    key = f"logic|knights|{sorted(statements)}|{asked}"
    wrong = ("knave" if truth[asked] else "knight",)
    return Item("logic", "knights", " ".join(lines), answer, len(statements), key, ("knight", "knave"), wrong)


LOGIC_TEMPLATES: dict[str, Callable[[random.Random], Item]] = {"ordering": _ordering, "knights": _knights}


def generate_logic(rng: random.Random) -> Item:
    """One logic puzzle with a unique answer, of a kind chosen by ``rng``."""
    return LOGIC_TEMPLATES[rng.choice(sorted(LOGIC_TEMPLATES))](rng)


_GENERATORS: dict[str, Callable[[random.Random], Item]] = {
    "arithmetic": generate_arithmetic,
    "logic": generate_logic,
}


def item_for_seed(kind: Kind, seed: int | None, split: str | None = None) -> Item:
    """The item of ``seed``: the first generated item whose pool is ``split`` (any pool when None)."""
    rng = random.Random(seed)
    generate = _GENERATORS[kind]
    while True:
        item = generate(rng)
        if split is None or item.pool() == split:
            return item


# =========================================================================== answers

_MARKER = re.compile(r"answer\s*(?:is)?\s*[:=]\s*(.*)", re.IGNORECASE)
_STRIP = " \t\"'`*_.!,;()[]"
_NUMBER = re.compile(r"^(?:(?:US)?\$|USD\s*)?\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?:\s+[a-z]+){0,3}$", re.I)
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)


def answer_text(action: str) -> str | None:
    """The answer part of a reply: after the last ``Answer:`` marker, else the whole (short, one-line) reply."""
    if not isinstance(action, str) or len(action) > MAX_ACTION_CHARS:
        return None
    lines = [line.strip() for line in action.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        match = _MARKER.search(line)
        if match:
            return match.group(1).strip(_STRIP) or None
    if len(lines) != 1:
        return None
    return lines[0].strip(_STRIP) or None


def parse_number(action: str) -> Decimal | None:
    """The number a reply answers (``"Answer: 1,200"``, ``"$42"``, ``"42 apples"``), or None."""
    text = answer_text(action)
    match = _NUMBER.match(text) if text else None
    if match is None:
        return None
    try:
        return Decimal(match.group(1).replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern only admits valid decimals
        return None


def parse_option(action: str, options: Sequence[str]) -> str | None:
    """The option (case-insensitive, an article allowed: ``"a knave"``) a reply answers, or None."""
    text = answer_text(action)
    if text is None:
        return None
    text = _ARTICLE.sub("", text).strip(_STRIP).casefold()
    return next((o for o in options if o.casefold() == text), None)


def _shown(action: str, limit: int = 40) -> str:
    """A short, printable-ASCII rendering of an action for feedback (never echo huge or odd text)."""
    text = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in action[:limit])
    return text + ("..." if len(action) > limit else "")


# =========================================================================== the environment


class ReasoningEnv(Env):
    """One reasoning item per episode: answer it with ``Answer: <value>``.

    Args:
        kind: ``"arithmetic"`` (word problems, whole-number answers) or ``"logic"`` (puzzles answered by a
            name, or by ``knight`` / ``knave``).
    """

    action_tokens = 16

    def __init__(self, kind: Kind = "arithmetic") -> None:
        if kind not in _GENERATORS:
            raise SpecError(f"kind must be 'arithmetic' or 'logic', not {kind!r}")
        self.kind: Kind = kind
        self._item: Item | None = None
        self._turns = 0
        self._done = False

    @property
    def instructions(self) -> str:  # type: ignore[override]  # reads spec.max_turns, set after __init__
        spec = getattr(self, "spec", None)
        attempts = spec.max_turns if spec else 1
        if self.kind == "arithmetic":
            what = "an arithmetic word problem. The answer is a whole number"
            form = "Answer: 42"
        else:
            what = (
                "a logic puzzle with exactly one solution. The answer is one of the names in the puzzle, or "
                "'knight' or 'knave'"
            )
            form = "Answer: Ada"
        tries = "one answer" if attempts == 1 else f"up to {attempts} answers (a wrong one is told so)"
        return (
            f"You are given {what}. Think it through, then reply with the answer on one line in the form "
            f"'{form}'. You have {tries}. A correct answer scores 1, a wrong one 0. A reply without an answer "
            "in that form scores 0 and ends the episode."
        )

    @property
    def item(self) -> Item:
        """The current item (scripted policies read its answer)."""
        if self._item is None:
            raise EnvError("call reset() before step(): the episode has not started")
        return self._item

    def _form(self) -> str:
        if self.kind == "arithmetic":
            return "'Answer: <whole number>'"
        return "'Answer: <" + " or ".join(self.item.options) + ">'"

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        """Start an episode on the item of ``seed``. ``options={"item": Item}`` plays a given item."""
        options = dict(options or {})
        item = options.pop("item", None)
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}; ReasoningEnv accepts 'item'")
        if item is None:
            item = item_for_seed(self.kind, seed, self._split_of(seed))
        elif not isinstance(item, Item) or item.kind != self.kind:
            raise EnvError(f"reset option 'item' must be a {self.kind} Item")
        self._item, self._turns, self._done = item, 0, False
        info = {"invalid_action": False, "template": item.template, "steps": item.steps}
        return Step(f"{item.question}\nReply {self._form()}.", 0.0, info=info)

    async def step(self, action: str) -> Step:
        item = self.item
        if self._done:
            raise EnvError("the episode has ended; call reset() before stepping again")
        spec = self._require_spec()
        self._turns += 1
        given: str | None
        if self.kind == "arithmetic":
            number = parse_number(action)
            if number is None:
                given = None
            else:  # 42, 42.0 and 42.00 are all "42"; 42.5 stays "42.5" (a valid, wrong answer)
                given = str(int(number)) if number == number.to_integral_value() else str(number)
            correct = given == item.answer
        else:
            given = parse_option(action, item.options)
            correct = given is not None and given.casefold() == item.answer.casefold()
        info: dict[str, Any] = {"invalid_action": given is None}
        if given is None:
            shown = _shown(action) if isinstance(action, str) else type(action).__name__
            reward = spec.invalid_action.penalty
            terminated = spec.invalid_action.mode == "terminate"
            text = f"No answer found in '{shown}'. Reply {self._form()}."
        else:
            reward = 1.0 if correct else 0.0
            terminated = correct or self._turns >= spec.max_turns
            text = f"Correct: the answer is {item.answer}." if correct else f"Wrong: {given} is not the answer."
        truncated = not terminated and self._turns >= spec.max_turns
        if terminated or truncated:
            self._done = True
            info.update(success=bool(correct and given is not None), answer=item.answer, given=given)
            if not correct:
                text += f" The answer was {item.answer}."
        else:
            left = spec.max_turns - self._turns
            text += f" {left} answer{'s' if left != 1 else ''} left. {item.question}\nReply {self._form()}."
        return Step(text, float(reward), terminated, truncated, info)

    def scripted_policies(self) -> dict[str, Policy]:
        return {"optimal": optimal_policy, "random": random_policy, "noisy": noisy_policy}


def _reasoning(env: Env) -> ReasoningEnv:
    if not isinstance(env, ReasoningEnv):
        raise EnvError(f"reasoning policies drive ReasoningEnv, not {type(env).__name__}")
    return env


def optimal_policy(env: Env, rng: random.Random) -> str:
    """The correct answer."""
    return f"Answer: {_reasoning(env).item.answer}"


def random_policy(env: Env, rng: random.Random) -> str:
    """A plausible guess: one of the item's distractors or its answer, uniformly (right about 1 in 4-6)."""
    item = _reasoning(env).item
    return f"Answer: {rng.choice([item.answer, *item.distractors])}"


def noisy_policy(env: Env, rng: random.Random) -> str:
    """The correct answer with probability ``NOISY_OPTIMAL_PROB``, otherwise the ``random`` policy's guess."""
    if rng.random() < NOISY_OPTIMAL_PROB:
        return optimal_policy(env, rng)
    return random_policy(env, rng)

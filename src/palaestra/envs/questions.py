"""20 Questions and Guess My City (LMRL-Gym's information-gathering dialogue tasks): ``twenty-questions-v0``
and ``guess-my-city-v0``.

The agent asks questions about a hidden object (or city) and finally guesses it. Reward: -1 per turn, 0 on the
turn that guesses it (which ends the episode with success); at most ``spec.max_turns`` (20) turns.

The answerer (the *oracle*) is pluggable:

- ``oracle="rules"`` (default): a rule-based oracle over a bundled knowledge base
  (``data/twenty_questions_objects.json``: 270 objects; ``data/cities.json``: 129 cities, both written for
  Palaestra from general knowledge). It understands a fixed set of question forms, tolerant to wording
  (case, punctuation, articles, synonyms, "the object" / "this" / "it"...), and says "I cannot answer that."
  to anything else.
- any other string: a model spec (``palaestra.models.make_model``), taken from the runner's model pool; or
  a ready ``Model``. The model is prompted with the hidden answer, its knowledge-base facts and the question.

Guesses are always recognised by rules ("Is it a dog?", "Guess: dog", "Is it Paris?"), matched against the
names and aliases of the knowledge base, so success is judged exactly whatever the oracle. The hidden items
of the train, validation and test seed ranges come from three disjoint pools (split by a hash of the name),
so test episodes hide items never hidden in training.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import json
import math
import random
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np

from palaestra.core.errors import EnvError
from palaestra.core.types import ChatRequest, Message, SamplingParams, Step
from palaestra.envs.base import Env, Policy

if TYPE_CHECKING:
    from palaestra.models.base import Model

# Replies longer than this are invalid actions (one question per turn, not an essay).
MAX_ACTION_CHARS = 300
# Probability that the ``noisy`` policy (LMRL-Gym's dataset mixture) takes the optimal action.
NOISY_OPTIMAL_PROB = 0.5
# Probability that the ``random`` policy guesses (a uniformly random item) rather than asks a random question.
RANDOM_GUESS_PROB = 0.25
# Share of the items held out as hidden answers for each evaluation split; the rest are the train pool.
_POOL_PERCENT = {"test": 15, "validation": 15}

YES, NO = "Yes.", "No."
CANNOT = "I cannot answer that."
_GUESS_HINT = ' (To make a guess, ask "Is it <name>?" or write "Guess: <name>".)'

# ============================================================================ text normalisation

_CONTRACTIONS = (
    (r"\b(is|does|can|was|has|could|would)n't (it|this|that)\b", r"\1 \2"),  # "isn't it X?" asks "is it X?"
    (r"\bwhat's\b", "what is"),
    (r"\bit's\b", "it is"),
    (r"\bthat's\b", "that is"),
    (r"\bwhere's\b", "where is"),
    (r"\bhow's\b", "how is"),
    (r"\bcan't\b", "can not"),
    (r"\bwon't\b", "will not"),
    (r"n't\b", " not"),
    (r"'re\b", " are"),
    (r"'m\b", " am"),
    (r"'ll\b", " will"),
    (r"'s\b", ""),  # possessives: "the city's name" -> "the city name"
)


def normalize(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: accents, punctuation and contractions removed.

    ``"What's the city's population?"`` -> ``"what is the city population"``; ``"Washington, D.C."`` ->
    ``"washington dc"``; decimal points are kept as ``_`` (``"2.5 million"`` -> ``"2_5 million"``).
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    for pattern, repl in _CONTRACTIONS:
        text = re.sub(pattern, repl, text)
    text = text.replace("'", "")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(?<=\d)\.(?=\d)", "_", text)
    text = re.sub(r"(?<=[a-z])\.(?=[a-z])", "", text)  # d.c. -> dc
    text = re.sub(r"[^a-z0-9_]+", " ", text)
    return " ".join(text.split())


_LEADING_FILLER = re.compile(
    r"^(?:(?:ok|okay|so|alright|all right|hmm+|um+|well|great|good|thanks|thank you|then|and|now|next|right|cool|"
    r"hi|hello|yes|no|got it|i see|interesting|question|q|question \d+|q\d+|\d+|next question|my next question|"
    r"my question|"
    r"my next question is|my question is|here is my question|here is my next question|i will ask|i ask|"
    r"let me ask|let me ask you|i would like to ask|i want to ask|i want to know|i would like to know|"
    r"tell me|please tell me|can you tell me|could you tell me|please|answer this)\s+)+"
)
_TRAILING_FILLER = re.compile(r"(?:\s+(?:please|then|now|at all|by any chance|or not|exactly|though))+$")
_SUBJECT = re.compile(
    r"\b(?:the|your|this|that|my|our) (?:hidden |secret |mystery |mysterious |unknown |target |chosen )?"
    r"(?:object|thing|item|word|answer|city|place|town|one)"
    r"(?: (?:you are|you have|you|we are|i am) (?:thinking of|thinking about|from|in|in mind|looking for|"
    r"have in mind|chose|picked))?\b"
)
# Rewrites applied in order to the normalised question (after the subject became "it").
_REWRITES = (
    (r"^(is|does|can|could|would|will|has|was|do|did) (?:this|that)\b", r"\1 it"),
    (r"^(?:are|were) you (?:thinking of|thinking about)\b", "is it"),
    (
        r"^is it (?:something|(?:a |an )?thing|(?:a |an )?object) (?:that is |which is )?(found|used|kept|seen|made)\b",
        r"is it \1",
    ),
    (r"^(?:could|would|might|can|will) it be\b", "is it"),
    (r"^(?:are|were) you (?:from|born in|located in|in|living in)\b", "is it in"),
    (r"^(?:do|did) you (?:live|come from|come|reside|grow up)(?: in)?\b", "is it in"),
    (
        r"^(?:would|could|can|do|will|might|did) (?:you|i|we|one|someone|people) (?:usually |normally |typically )?"
        r"(?:find|see|keep|store|use) it (in|on|at)\b",
        r"is it \1",
    ),
    (
        r"^is it (?:usually |normally |typically |commonly |mostly |mainly |often |generally )?"
        r"(?:found|located|situated|kept|stored|seen|used|based) (in|on|at|outdoors|outside|indoors|inside)\b",
        r"is it \1",
    ),
    (r"\b(?:a|an|the|some|any)\b", ""),
    (r"\b(?:kind|type|sort|form|piece|pair|article|item|example|member|variety) of\b", ""),
    (r"\bmade (?:out )?(of|from)\b", "made of"),
    (
        r"\b(?:usually|typically|generally|normally|commonly|mostly|mainly|primarily|often|really|actually|also|"
        r"ever|considered|basically|literally|still|in general|generally speaking)\b",
        "",
    ),
)
_REWRITES_RE = tuple((re.compile(p), r) for p, r in _REWRITES)


def simplify(question: str) -> str:
    """The canonical form the question patterns match: normalised, fillers and articles removed, and the
    subject ("the object", "this", "the city you are from"...) turned into "it"."""
    text = normalize(question)
    text = _LEADING_FILLER.sub("", text)
    text = _TRAILING_FILLER.sub("", text)
    text = _SUBJECT.sub("it", text)
    for pattern, repl in _REWRITES_RE:
        text = pattern.sub(repl, text)
    return " ".join(text.split())


def _name_key(name: str) -> str:
    """How a name or alias is looked up: normalised, articles removed (``"The Netherlands"`` -> ``"netherlands"``)."""
    return " ".join(w for w in normalize(name).split() if w not in ("a", "an", "the"))


# ============================================================================ knowledge bases


@dataclass(frozen=True, eq=False)
class Item:
    """One hidden object or city: its name, aliases and the knowledge-base record (``facts``)."""

    name: str
    aliases: tuple[str, ...]
    facts: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"Item({self.name!r})"


@dataclass(frozen=True)
class Query:
    """A parsed question: what is asked (``kind``), about which value (``arg``), and whether it is negated
    ("Is it natural?" is "Is it man-made?" negated)."""

    kind: str
    arg: Any = None
    negate: bool = False


@dataclass(frozen=True)
class Parsed:
    """What an action is: an ``invalid`` action, a ``guess`` (of ``item``, or of an unknown ``name``), a
    ``question`` the rules understand (``query``), or a question they do not (``unknown``)."""

    kind: Literal["invalid", "guess", "question", "unknown"]
    text: str = ""  # the question line the oracle is asked
    item: Item | None = None
    name: str = ""
    query: Query | None = None
    hint: bool = False  # an unknown "is it X?" that may have been meant as a guess


Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], "Query | None"]]


def _rules(table: list[tuple[str, Callable[[re.Match[str]], Query | None]]]) -> tuple[Rule, ...]:
    return tuple((re.compile(pattern), build) for pattern, build in table)


def _const(kind: str, arg: Any = None, negate: bool = False) -> Callable[[re.Match[str]], Query]:
    query = Query(kind, arg, negate)
    return lambda _m: query


def _alt(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


class KnowledgeBase(abc.ABC):
    """Items, the question forms the rule oracle understands, and how it answers them."""

    kind: str = ""  # "object" / "city"
    rules: tuple[Rule, ...] = ()

    def __init__(self, items: tuple[Item, ...], meta: dict[str, Any]) -> None:
        self.items = items
        self.meta = meta
        self.index: dict[str, Item] = {}
        for item in items:
            for key in self._keys(item):
                self.index.setdefault(key, item)
        self._pools: dict[str, tuple[Item, ...]] | None = None

    def _keys(self, item: Item) -> list[str]:
        return [_name_key(n) for n in (item.name, *item.aliases)]

    # ------------------------------------------------------------------ splits

    def pool(self, split: str | None) -> tuple[Item, ...]:
        """The items hidden for seeds of ``split`` (``None`` or an unknown split: all items).

        Each item is assigned by a hash of its name, so pools are stable across Python versions.
        """
        if self._pools is None:
            pools: dict[str, list[Item]] = {"test": [], "validation": [], "train": []}
            for item in self.items:
                bucket = int(hashlib.sha256(item.name.encode()).hexdigest(), 16) % 100
                test, val = _POOL_PERCENT["test"], _POOL_PERCENT["validation"]
                pools["test" if bucket < test else "validation" if bucket < test + val else "train"].append(item)
            self._pools = {k: tuple(v) for k, v in pools.items()}
        return self._pools.get(split or "", self.items)

    # ------------------------------------------------------------------ names and guesses

    def lookup(self, text: str) -> Item | None:
        """The item a (normalised or raw) name or alias denotes, or None."""
        key = _name_key(text)
        item = self.index.get(key)
        if item is None and key.endswith("s") and len(key) > 3:
            item = self.index.get(key[:-1]) or (self.index.get(key[:-2]) if key.endswith("es") else None)
        return item

    # ------------------------------------------------------------------ questions

    def parse_query(self, simple: str) -> Query | None:
        """The query a simplified question asks, or None when no question form matches."""
        for pattern, build in self.rules:
            match = pattern.fullmatch(simple)
            if match:
                query = build(match)
                if query is not None:
                    return query
        return None

    @abc.abstractmethod
    def answer(self, item: Item, query: Query) -> str:
        """The rule oracle's answer to ``query`` about ``item``."""
        raise NotImplementedError

    @abc.abstractmethod
    def question_set(self) -> tuple[tuple[str, Query], ...]:
        """The questions the scripted policies ask, as (canonical text, query); every text parses back."""
        raise NotImplementedError

    @abc.abstractmethod
    def guess_text(self, item: Item) -> str:
        raise NotImplementedError

    @abc.abstractmethod
    def facts_text(self, item: Item) -> str:
        """The item's knowledge-base facts in words (for a model oracle's prompt)."""
        raise NotImplementedError

    def redact(self, item: Item) -> tuple[str, ...]:
        """Names the oracle must never say (replaced in a model oracle's reply)."""
        return (item.name, *item.aliases)


def _yes(value: bool) -> str:
    return YES if value else NO


# ---------------------------------------------------------------------------- objects

_CATEGORY_WORDS = {
    "animal": _alt("animal", "creature", "beast", "living creature"),
    "plant": _alt("plant", "plant life", "vegetation"),
    "food": _alt(
        "food",
        "food or drink",
        "food item",
        "foodstuff",
        "something edible",
        "something to eat",
        "something (?:you|people|we) eat or drink",
        "consumable",
    ),
    "kitchenware": _alt(
        "kitchenware",
        "kitchen utensil",
        "utensil",
        "cookware",
        "tableware",
        "kitchen item",
        "kitchen tool",
        "kitchen object",
        "crockery",
        "cutlery",
        "dish",
        "dishes",
    ),
    "appliance": _alt(
        "appliance", "home appliance", "household appliance", "electrical appliance", "domestic appliance"
    ),
    "electronics": _alt(
        "electronic device",
        "electronic gadget",
        "gadget",
        "electronics",
        "device",
        "electronic item",
        "electronic object",
        "electrical device",
    ),
    "tool": _alt("tool", "hand tool", "power tool", "implement"),
    "furniture": _alt("furniture", "furnishing", "furniture item"),
    "vehicle": _alt(
        "vehicle",
        "means of transport",
        "mode of transport",
        "means of transportation",
        "mode of transportation",
        "transport",
        "transportation",
        "way to travel",
        "used for (?:transport|transportation|travel|travelling|traveling|getting around)",
    ),
    "clothing": _alt("clothing", "clothes", "garment", "apparel", "clothing item", "outfit", "cloth"),
    "personal": _alt(
        "personal item", "accessory", "fashion accessory", "personal belonging", "personal object", "personal accessory"
    ),
    "instrument": _alt("musical instrument", "instrument", "music instrument"),
    "sports": _alt(
        "sports equipment",
        "sporting equipment",
        "sporting goods",
        "sports item",
        "sports gear",
        "sport equipment",
        "used (?:in|for|to play|for playing) (?:sport|sports)",
        "sports related",
    ),
    "toy": _alt("toy", "game", "toy or game", "plaything", "for (?:children|kids)"),
    "office": _alt(
        "office supply",
        "office supplies",
        "school supply",
        "school supplies",
        "stationery",
        "stationary",
        "office or school supply",
    ),
    "household": _alt("household item", "household object", "household good", "household goods"),
}
_CATEGORY_QUESTIONS = {
    "animal": "Is it an animal?",
    "plant": "Is it a plant?",
    "food": "Is it food or drink?",
    "kitchenware": "Is it kitchenware?",
    "appliance": "Is it a household appliance?",
    "electronics": "Is it an electronic device?",
    "tool": "Is it a tool?",
    "furniture": "Is it furniture?",
    "vehicle": "Is it a vehicle?",
    "clothing": "Is it clothing?",
    "personal": "Is it a personal item?",
    "instrument": "Is it a musical instrument?",
    "sports": "Is it sports equipment?",
    "toy": "Is it a toy or game?",
    "office": "Is it an office or school supply?",
    "household": "Is it a household item?",
}

# Yes/no questions about tags (and the derived "alive"): regular expressions over the simplified question.
_YOU = _alt("you", "people", "we", "i", "one", "someone", "humans", "person")
_TAG_PATTERNS: dict[str, list[str]] = {
    "alive": [
        r"is it (?:alive|living|living thing|living being|living organism|organism|life form|live|animate)",
        r"does it live",
        r"is it living or dead",
        r"does it breathe",
    ],
    "mammal": [r"is it mammal"],
    "bird": [r"is it bird"],
    "fish": [r"is it fish"],
    "insect": [r"is it (?:insect|bug)"],
    "reptile": [r"is it reptile"],
    "amphibian": [r"is it amphibian"],
    "pet": [
        r"is it (?:pet|house pet|domestic animal)",
        r"is it kept as pet",
        rf"(?:do|can|would) {_YOU} (?:keep|have|own) it as pet",
        rf"do {_YOU} keep it as pets?",
    ],
    "farm": [r"is it (?:farm animal|livestock)", r"is it (?:on|in) farm", r"does it live (?:on|in) farm"],
    "wild": [r"is it (?:wild|wild animal)", r"does it live in (?:wild|nature)", r"is it (?:in|found in) wild"],
    "eats_meat": [
        r"does it eat (?:meat|other animals|animals|flesh)",
        r"is it (?:carnivore|carnivorous|predator)",
        r"does it hunt",
    ],
    "lays_eggs": [r"does it lay eggs?", r"does it (?:hatch from|come from) (?:egg|eggs)"],
    "flies": [r"(?:can|does) it fly", r"is it able to fly", r"does it have wings and fly"],
    "water": [
        r"does it live in (?:water|sea|ocean)",
        r"is it (?:in|on|in or on) water",
        r"is it (?:aquatic|water animal|"
        r"sea creature|sea animal|marine animal)",
        r"is it used (?:in|on) water",
        r"does it go (?:in|on) water",
    ],
    "legs": [r"does it have legs?", r"does it have any legs"],
    "four_legs": [
        r"does it have (?:four|4) legs",
        r"is it (?:four legged|4 legged|quadruped)",
        r"does it walk on (?:four|4) legs",
    ],
    "fur": [r"does it have (?:fur|hair)", r"is it (?:furry|hairy)"],
    "dangerous": [
        r"is it (?:dangerous|harmful|deadly)",
        rf"can it (?:hurt|harm|kill|injure) {_YOU}",
        r"can it (?:hurt|harm|kill|injure) (?:you|people|someone|person|human|humans)",
    ],
    "noise": [
        r"does it make (?:noise|noises|sound|sounds)",
        r"is it (?:noisy|loud)",
        r"can it make (?:noise|sound)",
        r"does it make any (?:noise|sound)",
    ],
    "tree": [r"is it tree"],
    "flower": [r"is it flower", r"does it have flowers?"],
    "leaves": [r"does it have leaves", r"does it have leaf"],
    "edible": [
        rf"(?:can|do|would) {_YOU} eat it",
        r"is it (?:edible|eatable)",
        r"can it be eaten",
        rf"is it something {_YOU} (?:can )?eat",
        r"is it eaten",
    ],
    "drink": [
        rf"(?:can|do|would) {_YOU} drink it",
        r"is it (?:drink|beverage)",
        r"is it something to drink",
        rf"is it something {_YOU} (?:can )?drink",
    ],
    "fruit": [r"is it fruit"],
    "vegetable": [r"is it (?:vegetable|veggie|veg)"],
    "sweet": [r"is it sweet", r"does it taste sweet", r"is it sugary"],
    "meat": [r"is it meat", r"does it (?:contain|have) meat", r"is it made (?:of|with) meat", r"is it meat dish"],
    "dairy": [r"is it (?:dairy|dairy product)", r"is it made (?:of|with) milk"],
    "baked": [r"is it baked", rf"do {_YOU} bake it", r"is it baked good"],
    "cooked": [
        rf"do {_YOU} (?:cook|have to cook|need to cook) it",
        r"is it cooked",
        r"does it (?:need|have) to be cooked",
        r"is it eaten cooked",
    ],
    "grows_on_trees": [r"does it grow on trees?", r"does it come from trees?"],
    "manmade": [
        r"is it (?:manmade|man made|artificial|manufactured|human made|made by (?:people|humans|man)|"
        r"handmade|synthetic)",
        r"did (?:people|humans) make it",
        r"is it made by people",
    ],
    "electric": [
        r"does it (?:use|need|require|run on|work with|work on|have|take) (?:electricity|power|batteries|"
        r"battery|electric power|electrical power)",
        r"is it (?:electric|electronic|electrical|powered|"
        r"battery powered|battery operated|electrically powered)",
        r"does it (?:plug in|have plug|have cord)",
        rf"do {_YOU} plug it in",
        r"does it need to be plugged in",
        r"is it plugged in",
    ],
    "screen": [r"does it have (?:screen|display|monitor)"],
    "engine": [r"does it have (?:engine|motor)", r"is it (?:motorized|motorised|engine powered)"],
    "wheels": [r"does it have wheels?"],
    "metal": [r"is it made of (?:metal|steel|iron|aluminum|aluminium|tin)", r"is it (?:metal|metallic)"],
    "wood": [r"is it made of (?:wood|timber)", r"is it (?:wooden|wood)"],
    "plastic": [r"is it made of plastic", r"is it plastic"],
    "glass": [r"is it made of glass", r"is it glass"],
    "fabric": [r"is it made of (?:fabric|cloth|cotton|wool|textile|textiles|material)", r"is it (?:fabric|cloth)"],
    "paper": [r"is it made of (?:paper|cardboard)", r"is it (?:paper|cardboard)"],
    "sharp": [
        r"is it (?:sharp|pointy|pointed)",
        rf"can {_YOU} cut (?:with it|things with it|things)",
        r"can it cut(?: things| you)?",
        r"does it have (?:blade|sharp edge|point|sharp point)",
        r"is it used (?:for|to) (?:cut|cutting)(?: things)?",
    ],
    "wearable": [
        rf"(?:can|do|would) {_YOU} wear it",
        r"is it (?:worn|wearable|something to wear)",
        rf"is it something {_YOU} wear",
        r"can it be worn",
        r"is it worn by people",
    ],
    "ride": [
        rf"(?:can|do) {_YOU} ride(?: in| on)? it",
        r"can it carry (?:people|you|person|passengers)",
        rf"(?:can|do) {_YOU} travel (?:in|on) it",
        rf"(?:can|do) {_YOU} drive it",
        r"is it rideable",
    ],
    "music": [
        r"(?:is it|can it be) used (?:to|for) (?:make|play|making|playing) music",
        r"does it (?:make|play) music",
        rf"can {_YOU} (?:make|play) music (?:on|with) it",
        r"is it musical",
        r"is it related to music",
        r"is it used in music",
    ],
    "strings": [r"does it have strings?", r"is it (?:stringed|string|stringed instrument|string instrument)"],
    "blow": [
        rf"do {_YOU} blow (?:into|in|through|on|in to)? ?it",
        r"is it (?:wind instrument|woodwind|"
        r"woodwind instrument|brass instrument|brass)",
    ],
    "container": [
        rf"can {_YOU} (?:put|store|keep|carry|hold) (?:things|stuff|items|something|objects) in it",
        r"is it (?:container|receptacle)",
        r"(?:does|can) it (?:hold|store|contain|carry) (?:things|stuff|"
        r"something|other things|items|objects|liquid|liquids|water|food)",
        rf"do {_YOU} put (?:things|stuff|something) in it",
    ],
    "light": [
        r"does it (?:give off|produce|make|emit|give|provide|create) light",
        r"does it (?:light up|glow|shine)",
        r"is it (?:light source|source of light)",
    ],
    "heat": [
        r"does it (?:get hot|produce heat|give off heat|make heat|heat up|heat things|generate heat|get warm|"
        r"use heat)",
        r"is it (?:hot|warm)",
        r"is it used (?:for|to) (?:heat|heating)(?: things| food)?",
    ],
    "soft": [r"is it (?:soft|fluffy|squishy|cuddly)"],
    "handle": [r"does it have (?:handle|handles)"],
    "buttons": [r"does it have (?:buttons|button)"],
    "round": [
        r"is it (?:round|spherical|circular|ball shaped|sphere|circle|disc shaped|disk shaped|rounded)",
        r"is it shaped like (?:ball|circle|sphere)",
        r"does it have round shape",
    ],
    "ball": [r"is it ball"],
    "cleaning": [
        r"is it used (?:for|to|in|when) (?:clean|cleaning|wash|washing)(?: things| stuff)?",
        rf"(?:can|do) {_YOU} (?:clean|wash) (?:with it|things with it)",
        r"is it (?:cleaning tool|cleaning product|cleaning item|cleaning supply|cleaning equipment)",
        r"does it clean(?: things)?",
    ],
    "cooking": [
        r"is it used (?:for|in|to|when) (?:cook|cooking|prepare food|preparing food|making food|make food|"
        r"baking|bake)",
        rf"(?:can|do) {_YOU} cook (?:with it|food with it)",
        r"is it (?:cooking tool|cooking utensil|cooking equipment)",
        r"does it cook(?: food)?",
    ],
    "eat_with": [
        rf"(?:can|do) {_YOU} (?:eat|drink|eat or drink) (?:with|from|out of|off|using) it",
        r"is it used (?:for|to|when) (?:eat|eating|drink|drinking)",
        r"is it eating utensil",
    ],
    "writing": [
        r"is it used (?:for|to|in|when) (?:write|writing|draw|drawing)",
        rf"(?:can|do) {_YOU} (?:write|draw) (?:with|on) it",
        r"is it (?:writing tool|writing utensil|"
        r"writing instrument|writing implement)",
    ],
    "computer": [
        r"is it (?:part of|used with|accessory for|peripheral for|connected to|related to) computer",
        r"is it computer (?:accessory|peripheral|part|related)",
        rf"do {_YOU} use it with computer",
        r"does it (?:connect|plug) (?:to|into) computer",
    ],
    "public_transport": [
        r"is it (?:public transport|public transportation|mass transit|public transit)",
        r"is it used (?:for|as) public (?:transport|transportation|transit)",
    ],
    "cargo": [
        r"is it used (?:to|for) (?:carry|carrying|transport|transporting|move|moving|deliver|delivering) "
        r"(?:goods|cargo|freight|loads|heavy loads)",
        r"does it (?:carry|transport) (?:goods|cargo|freight|loads)",
    ],
    "kitchen": [r"is it (?:in|for|used in) kitchen", r"is it kitchen thing"],
    "bathroom": [r"is it (?:in|for|used in) (?:bathroom|washroom|restroom)"],
    "bedroom": [r"is it (?:in|for|used in) bedroom"],
    "garden": [
        r"is it (?:in|for|used in) (?:garden|yard|backyard)",
        r"is it (?:used for gardening|gardening tool)",
        r"does it grow in garden",
    ],
    "outdoors": [
        r"is it (?:outdoors|outside|outdoor|used outdoors|used outside|kept outside|outdoor object)",
        r"is it (?:in|used in) (?:outdoors|outside|open air)",
        r"does it live (?:outdoors|outside)",
    ],
    "in_home": [
        r"is it (?:in|used in|inside) (?:house|home|homes|houses|most homes|typical home|your home|apartment|"
        r"household)",
        r"is it (?:indoors|inside|indoor|used indoors|used inside|kept indoors|kept inside)",
        r"do (?:you|people|most people) have it (?:at home|in their home|in home|in house|in their house)",
        r"does it live in (?:house|home)",
        r"is it (?:in|inside) house or home",
    ],
    "office": [
        r"is it (?:in|used in|for) office",
        rf"do {_YOU} use it (?:in|at) (?:office|work)",
        r"is it used at work",
        r"is it office (?:item|equipment|tool|object)",
    ],
}
_NEGATED_TAG_PATTERNS: dict[str, list[str]] = {
    "manmade": [
        r"is it (?:natural|found in nature|from nature|organic thing)",
        r"does it occur (?:naturally|in nature)",
    ],
    "soft": [r"is it hard"],
    "alive": [r"is it (?:dead|inanimate|not alive|nonliving|non living|lifeless)"],
    "outdoors": [r"is it (?:only )?(?:used )?indoors only"],
}
_TAG_QUESTIONS = {
    "alive": "Is it alive?",
    "mammal": "Is it a mammal?",
    "bird": "Is it a bird?",
    "fish": "Is it a fish?",
    "insect": "Is it an insect?",
    "reptile": "Is it a reptile?",
    "amphibian": "Is it an amphibian?",
    "pet": "Is it a pet?",
    "farm": "Is it a farm animal?",
    "wild": "Is it a wild animal?",
    "eats_meat": "Does it eat meat?",
    "lays_eggs": "Does it lay eggs?",
    "flies": "Can it fly?",
    "water": "Is it found in or on water?",
    "legs": "Does it have legs?",
    "four_legs": "Does it have four legs?",
    "fur": "Does it have fur?",
    "dangerous": "Is it dangerous?",
    "noise": "Does it make noise?",
    "tree": "Is it a tree?",
    "flower": "Is it a flower?",
    "leaves": "Does it have leaves?",
    "edible": "Can you eat it?",
    "drink": "Can you drink it?",
    "fruit": "Is it a fruit?",
    "vegetable": "Is it a vegetable?",
    "sweet": "Is it sweet?",
    "meat": "Does it contain meat?",
    "dairy": "Is it a dairy product?",
    "baked": "Is it baked?",
    "cooked": "Do you cook it?",
    "grows_on_trees": "Does it grow on trees?",
    "manmade": "Is it man-made?",
    "electric": "Does it use electricity?",
    "screen": "Does it have a screen?",
    "engine": "Does it have an engine?",
    "wheels": "Does it have wheels?",
    "metal": "Is it made of metal?",
    "wood": "Is it made of wood?",
    "plastic": "Is it made of plastic?",
    "glass": "Is it made of glass?",
    "fabric": "Is it made of fabric?",
    "paper": "Is it made of paper?",
    "sharp": "Is it sharp?",
    "wearable": "Can you wear it?",
    "ride": "Can you ride it?",
    "music": "Is it used to make music?",
    "strings": "Does it have strings?",
    "blow": "Do you blow into it?",
    "container": "Can you put things in it?",
    "light": "Does it give off light?",
    "heat": "Does it get hot?",
    "soft": "Is it soft?",
    "handle": "Does it have a handle?",
    "buttons": "Does it have buttons?",
    "round": "Is it round?",
    "ball": "Is it a ball?",
    "cleaning": "Is it used for cleaning?",
    "cooking": "Is it used for cooking?",
    "eat_with": "Do you eat or drink with it?",
    "writing": "Is it used for writing?",
    "computer": "Is it used with a computer?",
    "public_transport": "Is it public transport?",
    "cargo": "Is it used to carry goods?",
    "kitchen": "Is it found in a kitchen?",
    "bathroom": "Is it found in a bathroom?",
    "bedroom": "Is it found in a bedroom?",
    "garden": "Is it found in a garden?",
    "outdoors": "Is it found outdoors?",
    "in_home": "Is it found in a house?",
    "office": "Is it used in an office?",
}
_SIZE_ORDER = ("tiny", "small", "medium", "large", "huge")
_SIZE_PATTERNS: list[tuple[str, Query]] = [
    (
        r"is it (?:bigger|larger) than (?:breadbox|bread box|loaf of bread|microwave|shoebox|shoe box)",
        Query("size_above", "medium"),
    ),
    (
        r"is it (?:smaller|littler) than (?:breadbox|bread box|loaf of bread|microwave|shoebox|shoe box)",
        Query("size_above", "medium", True),
    ),
    (r"is it (?:big|large)(?: object| thing)?", Query("size_above", "medium")),
    (
        r"is it (?:bigger|larger|taller|heavier) than (?:person|human|man|woman|adult|me|you|people|human being)",
        Query("size_above", "large"),
    ),
    (r"is it (?:huge|enormous|giant|gigantic|very big|very large|really big|massive)", Query("size_above", "large")),
    (
        r"is it (?:smaller|lighter) than (?:person|human|man|woman|adult|human being)",
        Query("size_above", "large", True),
    ),
    (
        rf"(?:can|could) {_YOU} (?:hold|carry) it in (?:your |one |my |their )?(?:hand|hands|palm)",
        Query("size_above", "small", True),
    ),
    (
        r"(?:does|can|would|could) it fit in (?:your |my |one |a )?(?:hand|palm|pocket|pockets)",
        Query("size_above", "small", True),
    ),
    (
        rf"(?:can|could) {_YOU} (?:put|carry|keep) it in (?:your |my |their )?(?:pocket|pockets)",
        Query("size_above", "small", True),
    ),
    (r"is it (?:handheld|hand held|pocket sized)", Query("size_above", "small", True)),
    (r"is it small(?: object| thing)?", Query("size_above", "medium", True)),
    (r"is it (?:tiny|very small|really small|minuscule|microscopic)", Query("size_above", "tiny", True)),
    (r"is it smaller than (?:coin|penny|fingernail|thumb|golf ball|grape)", Query("size_above", "tiny", True)),
]
_SIZE_QUESTIONS = (
    ("Is it bigger than a coin?", Query("size_above", "tiny")),
    ("Can you hold it in your hand?", Query("size_above", "small", True)),
    ("Is it bigger than a breadbox?", Query("size_above", "medium")),
    ("Is it bigger than a person?", Query("size_above", "large")),
)
_COLOR_SYNONYMS = {"grey": "gray", "golden": "gold", "silvery": "silver", "violet": "purple"}
_WORN_ON = {
    "head": "head|face|eyes|ears|nose",
    "neck": "neck|throat",
    "body": "body|torso|chest|upper body|back|shoulders",
    "waist": "waist|hips|belly",
    "legs": "legs|leg|lower body",
    "hands": "hands|hand|fingers|finger",
    "wrist": "wrist|wrists|arm|arms",
    "feet": "feet|foot|toes",
}
_WORN_LOOKUP = {word: part for part, words in _WORN_ON.items() for word in words.split("|")}


def _object_rules(colors: list[str]) -> tuple[Rule, ...]:
    table: list[tuple[str, Callable[[re.Match[str]], Query | None]]] = []
    for category, words in _CATEGORY_WORDS.items():
        table.append((rf"is it {words}", _const("category", category)))
    for tag, patterns in _TAG_PATTERNS.items():
        table.extend((p, _const("tag", tag)) for p in patterns)
    for tag, patterns in _NEGATED_TAG_PATTERNS.items():
        table.extend((p, _const("tag", tag, True)) for p in patterns)
    table.extend((p, _const(q.kind, q.arg, q.negate)) for p, q in _SIZE_PATTERNS)
    table.append((r"is it bigger than (?:coin|penny|fingernail|thumb)", _const("size_above", "tiny")))
    color_words = _alt(*colors, *_COLOR_SYNONYMS)

    def color(match: re.Match[str]) -> Query:
        word = match["c"]
        return Query("color", _COLOR_SYNONYMS.get(word, word))

    for pattern in (
        rf"is it (?P<c>{color_words})(?: in colou?r| colou?red| colou?r)?",
        rf"is it (?P<c>{color_words}) (?:thing|object)",
        rf"does it come in (?P<c>{color_words})",
        rf"is (?:its|it) colou?r (?P<c>{color_words})",
        rf"is colou?r(?: of it)? (?P<c>{color_words})",
        rf"does it have (?P<c>{color_words}) colou?r",
    ):
        table.append((pattern, color))
    parts = _alt(*_WORN_LOOKUP)

    def worn(match: re.Match[str]) -> Query:
        return Query("worn_on", _WORN_LOOKUP[match["p"]])

    for pattern in (
        rf"(?:do|can|would) {_YOU} wear it (?:on|around|over) (?:your |their |my )?(?P<p>{parts})",
        rf"is it worn (?:on|around|over) (?:your |their |my )?(?P<p>{parts})",
        rf"does it go (?:on|around|over) (?:your |their |my )?(?P<p>{parts})",
        rf"do {_YOU} put it on (?:your |their |my )?(?P<p>{parts})",
        rf"is it (?:worn )?for (?:your |their |my )?(?P<p>{parts})",
    ):
        table.append((pattern, worn))
    return _rules(table)


class ObjectKB(KnowledgeBase):
    """The 20 Questions knowledge base: objects with a category, size, colours, tags and (if worn) where."""

    kind = "object"

    def __init__(self, items: tuple[Item, ...], meta: dict[str, Any]) -> None:
        super().__init__(items, meta)
        self.rules = _object_rules(list(meta["colors"]))

    def answer(self, item: Item, query: Query) -> str:
        facts = item.facts
        kind, arg = query.kind, query.arg
        if kind == "color":
            if not facts["colors"]:
                return "It comes in many colours."
            value = arg in facts["colors"]
        elif kind == "category":
            value = facts["category"] == arg
        elif kind == "tag":
            value = facts["category"] in ("animal", "plant") if arg == "alive" else arg in facts["tags"]
        elif kind == "size_above":
            value = _SIZE_ORDER.index(facts["size"]) > _SIZE_ORDER.index(arg)
        elif kind == "worn_on":
            value = facts.get("worn_on") == arg
        else:
            return CANNOT
        return _yes(value != query.negate)

    def question_set(self) -> tuple[tuple[str, Query], ...]:
        questions = [(text, Query("category", c)) for c, text in _CATEGORY_QUESTIONS.items()]
        questions += [(text, Query("tag", t)) for t, text in _TAG_QUESTIONS.items()]
        questions += list(_SIZE_QUESTIONS)
        questions += [(f"Is it {c}?", Query("color", c)) for c in self.meta["colors"]]
        questions += [(f"Do you wear it on your {p}?", Query("worn_on", p)) for p in self.meta["worn_on"]]
        return tuple(questions)

    def guess_text(self, item: Item) -> str:
        name = item.name
        if name.endswith("s") and not name.endswith("ss") and " of " not in name:
            return f"Is it {name}?"  # grapes, scissors, chopsticks
        return f"Is it {'an' if name[0] in 'aeiou' else 'a'} {name}?"

    def facts_text(self, item: Item) -> str:
        facts, meta = item.facts, self.meta
        lines = [
            f"kind of thing: {meta['categories'][facts['category']]}",
            f"size: {meta['sizes'][facts['size']]}",
            "typical colours: " + (", ".join(facts["colors"]) or "any (it comes in many colours)"),
        ]
        if facts.get("worn_on"):
            lines.append(f"worn on the {facts['worn_on']}")
        alive = facts["category"] in ("animal", "plant")
        lines.append(f"it is {'a living thing' if alive else 'not alive'}")
        lines += [f"it is true that it is {meta['tags'][t]}" for t in facts["tags"]]
        return "\n".join(f"- {line}" for line in lines)


# ---------------------------------------------------------------------------- cities

_POP_BANDS = (
    (1.0, "fewer than 1 million"),
    (2.0, "between 1 and 2 million"),
    (5.0, "between 2 and 5 million"),
    (10.0, "between 5 and 10 million"),
    (20.0, "between 10 and 20 million"),
    (math.inf, "more than 20 million"),
)
_POP_THRESHOLDS = (1.0, 2.0, 5.0, 10.0, 20.0)
_NUMBER_WORDS = {
    w: float(i)
    for i, w in enumerate(
        [
            *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"),
            *("twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"),
        ]
    )
} | {"thirty": 30.0, "forty": 40.0, "fifty": 50.0, "half": 0.5}
_CLIMATE_WORDS = {
    "tropical": ["tropical"],
    "arid": ["arid", "desert", "dry", "semi arid"],
    "mediterranean": ["mediterranean"],
    "oceanic": ["oceanic", "maritime"],
    "subtropical": ["subtropical", "humid subtropical"],
    "continental": ["continental"],
    "highland": ["highland", "mountain", "alpine"],
}
_CLIMATE_GROUPS = {
    "temperate": ("oceanic", "mediterranean", "subtropical", "highland"),
    "hot": ("tropical", "arid"),
    "humid": ("tropical", "subtropical"),
}
_CONTINENT_ALIASES = {
    "europe": "Europe",
    "asia": "Asia",
    "africa": "Africa",
    "north america": "North America",
    "south america": "South America",
    "oceania": "Oceania",
    "australasia": "Oceania",
}
_CONTINENT_ADJECTIVES = {
    "european": "Europe",
    "asian": "Asia",
    "african": "Africa",
    "north american": "North America",
    "south american": "South America",
    "oceanian": "Oceania",
}
_REGION_ALIASES = {
    "near east": "Middle East",
    "mideast": "Middle East",
    "western asia": "Middle East",
    "northern africa": "North Africa",
    "subsaharan africa": "Sub-Saharan Africa",
    "sub saharan africa": "Sub-Saharan Africa",
    "us and canada": "Northern America",
    "central america": "Central America and the Caribbean",
    "caribbean": "Central America and the Caribbean",
    "latin america": "latin",
    "americas": "americas",
    "scandinavia": "nordic",
    "nordic countries": "nordic",
    "far east": "East Asia",
    "asia pacific": "asia pacific",
}
_LANGUAGE_ALIASES = {
    "chinese": "Chinese",
    "mandarin": "Mandarin Chinese",
    "farsi": "Persian",
    "tagalog": "Filipino",
    "tamazight": "Berber",
    "amazigh": "Berber",
    "gaelic": "Irish",
    "flemish": "Dutch",
}
_EXTRA_LANGUAGES = (
    "German",
    "Italian",
    "Russian",
    "Arabic",
    "Japanese",
    "Korean",
    "Hindi",
    "Portuguese",
    "Latin",
    "Esperanto",
    "Hebrew",
    "Greek",
    "Polish",
    "Thai",
    "Swahili",
    "Dutch",
    "Turkish",
)
_SPEAKERS = _alt(
    "they",
    "people",
    "locals",
    "residents",
    "inhabitants",
    "most people",
    "you",
    "natives",
    "people there",
    "people who live there",
    "citizens",
    "population",
    "folks",
    "it",
)
_THERE = r"(?: there| in it| in that city| in city| in that place| in this city| here)?"


def _parse_number(text: str) -> float | None:
    text = text.replace("_", ".")
    try:
        return float(text)
    except ValueError:
        return _NUMBER_WORDS.get(text)


def _millions(number: str, unit: str | None) -> float | None:
    value = _parse_number(number)
    if value is None:
        return None
    if unit in ("million", "millions", "m", "mil", "mn"):
        return value
    if unit in ("thousand", "k"):
        return value / 1000
    if unit in ("billion", "billions"):
        return value * 1000
    return value / 1e6 if value >= 1000 else value  # "more than 5 people?" is read as 5 million


class CityKB(KnowledgeBase):
    """The Guess My City knowledge base: cities with country, continent, region, languages, climate and more."""

    kind = "city"

    def __init__(self, items: tuple[Item, ...], meta: dict[str, Any]) -> None:
        super().__init__(items, meta)
        self.countries: dict[str, str] = {}
        self.demonyms: dict[str, str] = {}
        for country, info in meta["countries"].items():
            for name in (country, *info["aliases"]):
                self.countries[_name_key(name)] = country
            self.demonyms[_name_key(info["adjective"])] = country
        self.regions = {_name_key(r): r for r in meta["regions"]} | {
            _name_key(k): v for k, v in _REGION_ALIASES.items()
        }
        self.languages = {_name_key(lang): lang for item in items for lang in item.facts["languages"]}
        self.languages |= {_name_key(lang): lang for lang in _EXTRA_LANGUAGES}
        self.languages |= {_name_key(k): v for k, v in _LANGUAGE_ALIASES.items()}
        self.rules = self._build_rules()

    def _keys(self, item: Item) -> list[str]:
        keys = super()._keys(item)
        country = self.meta["countries"][item.facts["country"]]
        extra = [f"{k} {_name_key(c)}" for k in keys for c in (item.facts["country"], *country["aliases"])]
        return keys + extra

    # ------------------------------------------------------------------ parsing

    def place(self, text: str) -> Query | None:
        """The yes/no query "is it in <text>?" asks: a continent, region, country or hemisphere."""
        key = _name_key(text)
        if key in _CONTINENT_ALIASES:
            return Query("continent", _CONTINENT_ALIASES[key])
        if key in self.countries:
            return Query("country", self.countries[key])
        if key in self.regions:
            return Query("region", self.regions[key])
        match = re.fullmatch(r"(northern|southern|eastern|western) hemisphere", key)
        if match:
            return Query("hemisphere", match[1])
        if key in ("tropics", "tropical zone", "tropical region"):
            return Query("tropics")
        return None

    def _build_rules(self) -> tuple[Rule, ...]:
        table: list[tuple[str, Callable[[re.Match[str]], Query | None]]] = []

        def place(match: re.Match[str]) -> Query | None:
            return self.place(match["x"])

        def adjective(match: re.Match[str]) -> Query | None:
            word = _name_key(match["x"])
            if word in _CONTINENT_ADJECTIVES:
                return Query("continent", _CONTINENT_ADJECTIVES[word])
            if word in self.demonyms:
                return Query("country", self.demonyms[word])
            return None

        table += [
            (
                r"is it (?:in|on|within|part of|inside|located in|situated in) "
                r"(?:continent of |country of |region of )?(?P<x>.+?)(?: continent| region)?",
                place,
            ),
            (r"is it (?P<x>.+?)(?: city| town| place)?", adjective),
            (r"is it (?:north|above) of equator|is it (?:above|north of) equator", _const("hemisphere", "northern")),
            (r"is it (?:south|below) of equator|is it (?:below|south of) equator", _const("hemisphere", "southern")),
            (r"is it (?:on|near|close to) equator", _const("near_equator")),
            (r"is it (?:between|within) tropics", _const("tropics")),
        ]

        def language(match: re.Match[str]) -> Query | None:
            lang = self.languages.get(_name_key(match["l"]))
            return Query("language", lang) if lang else None

        lang = r"(?P<l>[a-z]+(?: [a-z]+)??)"
        for pattern in (
            rf"(?:do|does) {_SPEAKERS} speak {lang}{_THERE}",
            rf"is {lang} (?:spoken|language|main language|official language|official|primary language|spoken language|"
            rf"widely spoken|commonly spoken|national language|local language|first language|native language)"
            rf"{_THERE}",
            rf"is (?:main |official |primary |local |native |national |first |spoken |dominant )*language"
            rf"(?: spoken)?{_THERE} {lang}",
            rf"is it {lang} speaking(?: city| country| place| area)?",
            rf"is {lang} one of (?:its |official |main )*languages",
            rf"do {_SPEAKERS} speak {lang} as (?:their )?(?:main|first|native) language{_THERE}",
        ):
            table.append((pattern, language))
        table += [
            (r".*\b(?:what|which) (?:main |official |local |primary |native )?languages?\b.*", _const("open_language")),
            (r".*\b(?:what|which) continents?\b.*", _const("open_continent")),
            (
                r".*\b(?:what|which) (?:part|region|area|corner) of (?:world|globe|earth|planet)\b.*",
                _const("open_region"),
            ),
            (
                r"(?:in )?(?:what|which) (?:world )?region(?: of world)?(?: is it| it is)(?: in| located in| located)?",
                _const("open_region"),
            ),
            (r"where(?: in world)? is it(?: located| situated| found)?(?: in world)?", _const("open_region")),
            (r".*\b(?:what|which) hemispheres?\b.*", _const("open_hemisphere")),
            (
                r".*\b(?:what|which) country\b.*|.*\bcountry is it in\b.*|.*\bname of country\b.*",
                _const("open_country"),
            ),
            (
                r"what is (?:its|it) name|what is it called|what city is it|which city is it|what is name(?: of it)?",
                _const("open_name"),
            ),
            (
                r".*\b(?:climate|weather)\b.*(?:like|describe|kind|type|how|what)\b.*|.*\b(?:what|how|describe|which)\b.*"
                r"\b(?:climate|weather)\b.*",
                _const("open_climate"),
            ),
            (
                r"how (?:many|much) (?:people|inhabitants|residents|citizens|population)\b.*|.*\bwhat is (?:its |it )?"
                r"population\b.*|how (?:big|large|populous|crowded) is it(?: city)?|what (?:size|population) is it",
                _const("open_population"),
            ),
        ]
        climate_words = {w: c for c, ws in _CLIMATE_WORDS.items() for w in ws}

        def climate(match: re.Match[str]) -> Query | None:
            word = match["w"]
            if word in _CLIMATE_GROUPS:
                return Query("climate_group", word)
            return Query("climate", climate_words[word]) if word in climate_words else None

        words = _alt(*climate_words, *_CLIMATE_GROUPS)
        for pattern in (
            rf"(?:is it|does it have) (?P<w>{words})(?: climate| city| place| weather| area| all year| year round)?",
            rf"is (?:its |it )?(?:climate|weather) (?P<w>{words})",
            r"is it in (?P<w>desert)",
        ):
            table.append((pattern, climate))
        table += [
            (
                r"(?:does it|do they|is there|does it get|do they get|does it have|is it) (?:snow|snowy|get snow|"
                r"see snow|have snow|snowfall)(?: there)?(?: in winter| in winters)?|"
                r"does it snow(?: there)?(?: in winters?)?",
                _const("flag", "snow"),
            ),
            (
                r"is it cold(?: in winter| there| place| city| in winters)?|(?:are|is) (?:its )?winters? cold|"
                r"does it get cold(?: in winter)?",
                _const("flag", "snow"),
            ),
            (
                r"is it (?:national |country |countrys |nation |nations |its country |its countrys )*capital"
                r"(?: city)?(?: of (?:its |his |her |their )?(?:country|nation))?",
                _const("flag", "capital"),
            ),
            (r"is it (?:seat of (?:national )?government|where government is)", _const("flag", "capital")),
            (
                r"is it (?:on|by|near|next to|close to|along|at|beside) (?:coast|sea|ocean|seaside|seacoast|sea coast|"
                r"shore|beach|oceanfront|waterfront)",
                _const("flag", "coastal"),
            ),
            (
                r"is it (?:coastal|seaside|port|harbor|harbour|beach|ocean)(?: city| town| place)?",
                _const("flag", "coastal"),
            ),
            (
                r"does it have (?:coast|coastline|beach|beaches|port|harbor|harbour|seaport|access to sea|sea access)",
                _const("flag", "coastal"),
            ),
            (r"is there (?:beach|sea|ocean|coast)(?: there| nearby)?", _const("flag", "coastal")),
            (r"is it landlocked", _const("flag", "coastal", True)),
            (
                r"is it (?:on|by|near|along|beside|next to|built on|located on|situated on) river(?: bank)?",
                _const("flag", "river"),
            ),
            (
                r"does (?:river|any river) (?:run|flow|go|pass|cross) through it|is there river(?: there| in it)?|"
                r"does it have river|is it river city",
                _const("flag", "river"),
            ),
            (
                r"is it (?:on|by|near|next to|beside|along) lake|does it have lake|is there lake(?: there)?",
                _const("flag", "lake"),
            ),
            (
                r"is it (?:at|in) (?:high )?(?:altitude|elevation)|is it (?:high up|mountainous|mountain city)|"
                r"is it (?:in|up in|among) mountains|is it high above sea level|is it at high (?:altitude|elevation)",
                _const("flag", "high_altitude"),
            ),
            (
                r"(?:has|did|was|have) it (?:ever )?"
                r"(?:host|hosted|held|hold|had|have|been host of|host to|been host to) "
                r"(?:olympics|olympic games|olympic)|(?:were|have|has) (?:olympics|olympic games) (?:ever )?(?:been )?"
                r"(?:held|hosted)(?: there| in it)?|is it olympic (?:city|host|host city)",
                _const("flag", "olympics"),
            ),
            (r"is it (?:megacity|mega city)", _const("population_above", 10.0)),
            (r"is it (?:big|large|huge|major|small|little|populous)(?: city| town| place)?", _const("open_population")),
        ]

        def population(match: re.Match[str]) -> Query | None:
            value = _millions(match["n"], match["u"])
            if value is None:
                return None
            return Query(
                "population_above", value, match["cmp"] in ("less", "fewer", "under", "below", "smaller", "lower")
            )

        cmp = r"(?P<cmp>more|over|above|greater|larger|bigger|higher|at least|less|fewer|under|below|smaller|lower)"
        num = r"(?P<n>[0-9_]+|[a-z]+)(?: (?P<u>million|millions|m|mil|mn|thousand|k|billion|billions))?"
        who = r"(?: people| inhabitants| residents| citizens| population| persons| people living there)?"
        for pattern in (
            rf"(?:does|do) it (?:have|contain) {cmp}(?: than)? {num}{who}(?: living there| in it)?",
            rf"is (?:its |it )?population {cmp}(?: than)? {num}{who}",
            rf"(?:do|does|are there) {cmp}(?: than)? {num}{who} (?:live|living)(?: there| in it)?",
            rf"is it (?:home to|populated by|city of) {cmp}(?: than)? {num}{who}",
            rf"are there {cmp}(?: than)? {num}{who}(?: there| in it)?",
            rf"is it {cmp} than {num}{who}",
        ):
            table.append((pattern, population))
        return _rules(table)

    # ------------------------------------------------------------------ answers

    def answer(self, item: Item, query: Query) -> str:
        facts = item.facts
        kind, arg = query.kind, query.arg
        if kind == "open_continent":
            continents = facts["continents"]
            return f"{continents[0]}." if len(continents) == 1 else f"{' and '.join(continents)} (it spans both)."
        if kind == "open_region":
            return f"{facts['region']}."
        if kind == "open_language":
            return _and(facts["languages"]) + "."
        if kind == "open_climate":
            return str(self.meta["climates"][facts["climate"]])
        if kind == "open_population":
            band = next(text for limit, text in _POP_BANDS if facts["population_millions"] < limit)
            return f"Its urban area has {band} people."
        if kind == "open_hemisphere":
            ns = "northern" if facts["lat"] >= 0 else "southern"
            ew = "eastern" if facts["lon"] >= 0 else "western"
            return f"The {ns} and {ew} hemispheres."
        if kind == "open_country":
            return "I cannot name the country. Ask about it another way."
        if kind == "open_name":
            return "I cannot tell you its name, but you can guess it."
        value: bool
        if kind == "continent":
            value = arg in facts["continents"]
        elif kind == "country":
            value = facts["country"] == arg
        elif kind == "region":
            if arg == "latin":
                value = facts["region"] in ("Central America and the Caribbean", "South America")
            elif arg == "americas":
                value = facts["continents"][0] in ("North America", "South America")
            elif arg == "nordic":
                value = facts["country"] in ("Sweden", "Norway", "Denmark", "Finland", "Iceland")
            elif arg == "asia pacific":
                value = facts["region"] in ("East Asia", "Southeast Asia", "Australia and New Zealand")
            else:
                value = facts["region"] == arg
        elif kind == "hemisphere":
            coordinate = facts["lat"] if arg in ("northern", "southern") else facts["lon"]
            value = (coordinate >= 0) == (arg in ("northern", "eastern"))
        elif kind == "tropics":
            value = abs(facts["lat"]) < 23.44
        elif kind == "near_equator":
            value = abs(facts["lat"]) <= 10
        elif kind == "language":
            langs = facts["languages"]
            value = (
                any("Chinese" in lang or lang == "Cantonese" for lang in langs) if arg == "Chinese" else arg in langs
            )
        elif kind == "climate":
            value = facts["climate"] == arg
        elif kind == "climate_group":
            value = facts["climate"] in _CLIMATE_GROUPS[arg]
        elif kind == "flag":
            value = bool(facts[arg])
        elif kind == "population_above":
            value = facts["population_millions"] > arg
        else:
            return CANNOT
        return _yes(value != query.negate)

    def question_set(self) -> tuple[tuple[str, Query], ...]:
        meta = self.meta
        questions: list[tuple[str, Query]] = [
            ("What continent is it on?", Query("open_continent")),
            ("What part of the world is it in?", Query("open_region")),
            ("What language do people speak there?", Query("open_language")),
            ("What is the climate like?", Query("open_climate")),
            ("How many people live there?", Query("open_population")),
            ("Which hemisphere is it in?", Query("open_hemisphere")),
            ("Is it a capital city?", Query("flag", "capital")),
            ("Is it on the coast?", Query("flag", "coastal")),
            ("Is there a river in it?", Query("flag", "river")),
            ("Is it on a lake?", Query("flag", "lake")),
            ("Does it snow there in winter?", Query("flag", "snow")),
            ("Is it at high altitude?", Query("flag", "high_altitude")),
            ("Has it hosted the Olympic Games?", Query("flag", "olympics")),
            ("Is it in the tropics?", Query("tropics")),
            ("Is it in the northern hemisphere?", Query("hemisphere", "northern")),
            ("Is it in the eastern hemisphere?", Query("hemisphere", "eastern")),
        ]
        questions += [(f"Is it in {c}?", Query("continent", c)) for c in meta["continents"]]
        questions += [(f"Is it in {r}?", Query("region", r)) for r in meta["regions"] if r not in meta["continents"]]
        questions += [(f"Is it in {_with_the(c)}?", Query("country", c)) for c in meta["countries"]]
        languages = sorted({lang for item in self.items for lang in item.facts["languages"]})
        questions += [(f"Do people speak {lang} there?", Query("language", lang)) for lang in languages]
        questions += [(f"Does it have a {c} climate?", Query("climate", c)) for c in meta["climates"]]
        questions += [
            (f"Does it have more than {n:g} million people?", Query("population_above", n)) for n in _POP_THRESHOLDS
        ]
        return tuple(questions)

    def guess_text(self, item: Item) -> str:
        return f"Is it {item.name}?"

    def facts_text(self, item: Item) -> str:
        facts = item.facts
        band = next(text for limit, text in _POP_BANDS if facts["population_millions"] < limit)
        flags = {
            "capital": "it is its country's capital",
            "coastal": "it is on a sea or ocean coast",
            "river": "a river runs through it",
            "lake": "it lies on a lake",
            "snow": "it snows most winters",
            "high_altitude": "it is high above sea level (over about 1,500 m)",
            "olympics": "it has hosted the Olympic Games",
        }
        lines = [
            f"country: {facts['country']}",
            f"continent: {' and '.join(facts['continents'])}; region: {facts['region']}",
            f"main language(s): {_and(facts['languages'])}",
            f"climate: {self.meta['climates'][facts['climate']]}",
            f"population of the urban area: {band}",
            *(text for flag, text in flags.items() if facts[flag]),
            *(f"it is not true that {text}" for flag, text in flags.items() if not facts[flag]),
            f"famous for: {facts['landmark']}",
        ]
        return "\n".join(f"- {line}" for line in lines)

    def redact(self, item: Item) -> tuple[str, ...]:
        country = item.facts["country"]
        return (*super().redact(item), country, *self.meta["countries"][country]["aliases"])


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _with_the(country: str) -> str:
    plural = country.startswith(("United", "Democratic", "Netherlands", "Philippines"))
    return f"the {country}" if plural else country


# ---------------------------------------------------------------------------- loading


def _read_json(filename: str) -> dict[str, Any]:
    text = (resources.files("palaestra.envs") / "data" / filename).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@functools.cache
def objects_kb() -> ObjectKB:
    """The 20 Questions knowledge base (``data/twenty_questions_objects.json``), loaded once per process."""
    data = _read_json("twenty_questions_objects.json")
    items = tuple(Item(o["name"], tuple(o["aliases"]), o) for o in data.pop("objects"))
    return ObjectKB(items, data)


@functools.cache
def cities_kb() -> CityKB:
    """The Guess My City knowledge base (``data/cities.json``), loaded once per process."""
    data = _read_json("cities.json")
    items = tuple(Item(c["name"], tuple(c["aliases"]), c) for c in data.pop("cities"))
    return CityKB(items, data)


# ============================================================================ parsing actions

# "Guess: X" and the like: a guess even when X is no known name (then a wrong one).
_EXPLICIT_GUESS = re.compile(
    r"^(?:(?:my |final |last |our |next )*(?:guess|answer)(?: is| would be| will be)?(?: that)?(?: it is| its)?|"
    r"i (?:guess|will guess|am guessing|would guess)(?: that)?(?: it is| its)?|(?:the )?answer is) (?P<x>.+)$"
)
# "Is it X?", "I think it is X": a guess only when X is a known name.
_SOFT_GUESS = re.compile(
    r"^(?:is it|it is|is it in|is it called|is it named|i think it is|i believe it is|it must be|i bet it is|"
    r"i am sure it is|i know it is|maybe it is|perhaps it is|i think you are thinking of|is answer) (?P<x>.+)$"
)
_IS_IT_ARTICLE = re.compile(r"^(?:is it|it is) (?:a|an|the) (?P<x>.+)$")
_INTERROGATIVE = re.compile(
    r"^(?:is|are|does|do|can|could|would|will|has|have|had|what|which|where|how|who|did|was|were|should|may|"
    r"might|in what|in which|on what|on which)\b"
)


def question_line(action: str) -> str:
    """The part of a reply that is the question: the last line with a '?' (``"Hmm.\\nIs it red?"`` -> ``"Is it
    red?"``), else the whole reply; surrounding whitespace, quotes and markdown removed."""
    lines = [line for line in action.splitlines() if line.strip()]
    with_mark = [line for line in lines if "?" in line]
    line = (with_mark or lines or [""])[-1]
    return line.strip().strip("*_`\"' ").strip()


def parse_action(action: str, kb: KnowledgeBase) -> Parsed:
    """Classify an action: invalid, a guess, a question the rules understand, or one they do not."""
    if not isinstance(action, str) or len(action) > MAX_ACTION_CHARS:
        return Parsed("invalid")
    line = question_line(action)
    text = normalize(line)
    letters = sum(ch.isalpha() for ch in line)
    if not text or letters < 2:
        return Parsed("invalid", line)
    core = _LEADING_FILLER.sub("", text)
    explicit = _EXPLICIT_GUESS.match(core)
    if explicit:
        name = _guessed_name(explicit["x"])
        return Parsed("guess", line, kb.lookup(name), name)
    core = _SUBJECT.sub("it", core)
    with_article = _IS_IT_ARTICLE.match(core)
    if with_article:  # "Is it an orange?" is a guess; "Is it orange?" asks about the colour
        item = kb.lookup(_guessed_name(with_article["x"]))
        if item is not None:
            return Parsed("guess", line, item, _guessed_name(with_article["x"]))
    simple = simplify(line)
    is_question = "?" in line or bool(_INTERROGATIVE.match(core))
    if is_question:
        query = kb.parse_query(simple)
        if query is not None:
            return Parsed("question", line, query=query)
    soft = _SOFT_GUESS.match(simple)
    name = _guessed_name(soft["x"]) if soft else simple  # "Is it a dog?", "I think it is a dog.", "Dog?"
    item = kb.lookup(name)
    if item is not None:
        return Parsed("guess", line, item, name)
    if not is_question:
        return Parsed("invalid", line)
    return Parsed("unknown", line, hint=bool(soft or with_article))


def _guessed_name(name: str) -> str:
    name = re.sub(r"^(?:is it in|is it|it is|its|in)\s+", "", name)
    name = re.sub(r"\s+(?:then|right|maybe|perhaps|please|or not|final answer|i think|is that right)$", "", name)
    return name.strip()


# ============================================================================ the environments

_ANSWER_RE = re.compile(r"^\W*(?:(?:the |my )?answer(?: is)?\W*)?(yes|no)\b", re.IGNORECASE)


def normalize_model_answer(text: str, names: tuple[str, ...]) -> str:
    """A model oracle's reply as the agent sees it: ``Yes.``/``No.`` when it starts so, else its first line
    (at most 200 characters) with the hidden names redacted; an empty reply becomes "I cannot answer that."."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = line.strip("*_`\"' ")
    match = _ANSWER_RE.match(line)
    if match:
        return YES if match[1].lower() == "yes" else NO
    if not line:
        return CANNOT
    for name in sorted(names, key=len, reverse=True):
        line = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", "[hidden]", line, flags=re.IGNORECASE)
    if len(line) > 200:
        line = line[:197].rstrip() + "..."
    return line


def _shown(action: str, limit: int = 40) -> str:
    """A short, printable-ASCII rendering of an action for feedback (never echo huge or odd text)."""
    text = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in action[:limit])
    return text + ("..." if len(action) > limit else "")


class _QuestionsEnv(Env):
    """Shared machinery of ``twenty-questions-v0`` and ``guess-my-city-v0``.

    Args:
        oracle: ``"rules"`` (the rule-based oracle over the knowledge base), a model spec string (built
            through the runner's model pool, or a pool this environment owns and closes), or a ready ``Model``
            (shared, never closed here). A model oracle that raises ``ModelError`` ends the episode as an error
            (the runner's rule), never as a loss.
        observation: ``"answer"`` (the answer to the last question and the turns left, for chat agents) or
            ``"transcript"`` (LMRL-Gym's form: ``Questions:`` then every question with its answer so far).
    """

    action_tokens = 48  # one question
    _thing = ""  # "object" / "city"
    _oracle_max_tokens = 16

    def __init__(self, oracle: str | Model = "rules", observation: str = "answer") -> None:
        if isinstance(oracle, str) and not oracle.strip():
            raise EnvError("oracle must be 'rules', a model spec (e.g. 'smollm2-135m') or a Model")
        if observation not in ("answer", "transcript"):
            raise EnvError(f"observation must be 'answer' or 'transcript', not {observation!r}")
        self._oracle: str | Model = oracle
        self._model: Model | None = None
        self._observation_mode = observation
        self._item: Item | None = None
        self._pool: tuple[Item, ...] = ()
        self._log: list[tuple[str, str]] = []  # (question line, answer) of every valid turn
        self._facts: list[tuple[Query, str]] = []  # rule-parsed questions with the answers given
        self._wrong: list[Item] = []  # known items guessed wrongly
        self._turns = 0
        self._done = False

    @property
    @abc.abstractmethod
    def kb(self) -> KnowledgeBase:
        raise NotImplementedError

    @property
    def uses_rules(self) -> bool:
        return isinstance(self._oracle, str) and self._oracle.strip() == "rules"

    # ------------------------------------------------------------------ instructions

    @abc.abstractmethod
    def _scope(self) -> str:
        raise NotImplementedError

    @abc.abstractmethod
    def _examples(self) -> str:
        raise NotImplementedError

    @property
    def instructions(self) -> str:  # type: ignore[override]  # reads spec.max_turns, set after __init__
        spec = getattr(self, "spec", None)
        turns = spec.max_turns if spec else 20
        text = (
            f"{self._scope()}\n"
            f"Find it by asking questions, one per turn, each ending with '?'. {self._examples()}\n"
            f'To guess, ask "Is it <name>?" or write "Guess: <name>". A correct guess wins and ends the game; '
            f"a wrong guess is answered No.\n"
            f"You have {turns} turns. Every turn costs -1 reward; the turn on which you guess correctly gives 0. "
            "A reply that is neither a question nor a guess (or is longer than "
            f"{MAX_ACTION_CHARS} characters) also costs -1 and uses up a turn, without an answer. "
            'A question the answerer does not understand is answered "I cannot answer that." (the turn is used).'
        )
        if self.uses_rules:
            text += f"\nThe answerer understands questions like these (and rephrasings of them): {self._understood()}"
        return text

    @abc.abstractmethod
    def _understood(self) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ the environment contract

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        """Start an episode. ``options={"answer": name}`` fixes the hidden item (any name or alias)."""
        options = dict(options or {})
        answer = options.pop("answer", None)
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}; {type(self).__name__} accepts only 'answer'")
        kb = self.kb
        if answer is None:
            self._pool = kb.pool(self._split_of(seed))
            item = random.Random(seed).choice(self._pool)
        else:
            found = kb.lookup(str(answer))
            if found is None:
                raise EnvError(f"{answer!r} is not a {kb.kind} of the knowledge base; pass a listed name or alias")
            item, self._pool = found, kb.items
        if not self.uses_rules and self._model is None:
            self._model = self.partner_model(self._oracle)
        self._item, self._log, self._facts, self._wrong = item, [], [], []
        self._turns, self._done = 0, False
        left = self._require_spec().max_turns
        text = f"I am thinking of {'an object' if kb.kind == 'object' else 'a city'}. You have {left} questions."
        if self._observation_mode == "transcript":
            text += "\nQuestions:"
        return Step(text, 0.0, info={"invalid_action": False})

    async def step(self, action: str) -> Step:
        if self._item is None:
            raise EnvError("call reset() before step(): the episode has not started")
        if self._done:
            raise EnvError("the episode has ended; call reset() before stepping again")
        spec = self._require_spec()
        item, kb = self._item, self.kb
        parsed = parse_action(action, kb)
        invalid = parsed.kind == "invalid"
        terminated = False
        if invalid:
            reward = spec.invalid_action.penalty
            shown = _shown(action) if isinstance(action, str) else type(action).__name__
            answer = (
                f"'{shown}' is not a question or a guess. Ask one question ending with '?', or guess with "
                f'"Guess: <name>". That used up a turn.'
            )
            terminated = spec.invalid_action.mode == "terminate"
        elif parsed.kind == "guess":
            if parsed.item is item:
                terminated, reward = True, 0.0
                answer = f"Yes! It is {self._article(item)}{item.name}."
            else:
                reward = -1.0
                answer = NO
                if parsed.item is None:
                    answer += f" ('{_shown(parsed.name)}' is not one of the {kb.kind} names I know.)"
                elif parsed.item not in self._wrong:
                    self._wrong.append(parsed.item)
        else:
            reward = -1.0
            answer = await self._answer(parsed, item)
        self._turns += 1
        if not invalid:
            self._log.append((parsed.text, answer))
        truncated = not terminated and self._turns >= spec.max_turns
        info: dict[str, Any] = {"invalid_action": invalid}
        if terminated or truncated:
            self._done = True
            info["success"] = terminated and not invalid
        observation = self._observe(answer, logged=not invalid, success=info.get("success", False))
        return Step(observation, float(reward), terminated, truncated, info)

    async def _answer(self, parsed: Parsed, item: Item) -> str:
        if self.uses_rules:
            if parsed.kind == "question" and parsed.query is not None:
                answer = self.kb.answer(item, parsed.query)
                self._facts.append((parsed.query, answer))
                return answer
            return CANNOT + (_GUESS_HINT if parsed.hint else "")
        answer = await self._ask_model(parsed.text, item)
        if parsed.kind == "question" and parsed.query is not None:
            self._facts.append((parsed.query, answer))
        return answer

    def oracle_request(self, question: str, item: Item | None = None) -> ChatRequest:
        """The chat request a model oracle gets for ``question`` about the hidden item."""
        item = item or self._item
        if item is None:
            raise EnvError("call reset() first: there is no hidden item yet")
        return ChatRequest(
            messages=(Message("system", self._oracle_prompt(item)), Message("user", question)),
            sampling=SamplingParams(temperature=0.0, max_tokens=self._oracle_max_tokens),
        )

    @abc.abstractmethod
    def _oracle_prompt(self, item: Item) -> str:
        raise NotImplementedError

    async def _ask_model(self, question: str, item: Item) -> str:
        """Ask the model oracle; ``ModelError`` propagates (the runner stores the episode as an error)."""
        if self._model is None:
            raise EnvError("the model oracle was not built; call reset() first")
        completion = await self._model.generate(self.oracle_request(question, item))
        return normalize_model_answer(completion.text, self.kb.redact(item))

    def _article(self, item: Item) -> str:
        return ""

    def _observe(self, answer: str, logged: bool, success: bool) -> str:
        item = self._item
        assert item is not None
        left = self.turns_left
        if self._observation_mode == "transcript":
            parts = ["Questions:", *(f"{q} {a}" for q, a in self._log)]
            if not logged:
                parts.append(answer)
        else:
            parts = [answer]
        if success:
            parts.append(f"You found it in {self._turns} question{'s' if self._turns != 1 else ''}.")
        elif self._done:
            parts.append(f"Game over. It was {self._article(item)}{item.name}.")
        else:
            parts.append(f"{left} question{'s' if left != 1 else ''} left.")
        return "\n".join(parts)

    # ------------------------------------------------------------------ state for scripted policies and tests

    @property
    def hidden(self) -> Item:
        """The hidden item (for tests and tools; agents are never shown it, and the scripted policies do not
        read it)."""
        if self._item is None:
            raise EnvError("call reset() first: there is no hidden item yet")
        return self._item

    @property
    def pool(self) -> tuple[Item, ...]:
        """The items this episode's hidden item was drawn from (its split's pool)."""
        return self._pool

    @property
    def transcript(self) -> tuple[tuple[str, str], ...]:
        """Every valid turn's question line and the answer it got."""
        return tuple(self._log)

    @property
    def turns_left(self) -> int:
        return self._require_spec().max_turns - self._turns

    def candidates(self) -> tuple[Item, ...]:
        """The pool items consistent with every rule-parsed answer so far and not yet guessed wrongly.

        With a model oracle its answers may contradict the knowledge base; if nothing is consistent, the pool
        minus the wrong guesses is returned.
        """
        kb = self.kb
        wrong = set(map(id, self._wrong))
        alive = [i for i in self._pool if id(i) not in wrong]
        consistent = [i for i in alive if all(kb.answer(i, q) == a for q, a in self._facts)]
        return tuple(consistent or alive)

    def copy(self) -> Self:
        """An independent copy in the same state; the oracle model (and the spec) are shared, not copied."""
        keys = ("spec", "_oracle", "_model", "_item", "_pool", "_wrong")
        shared: dict[str, Any] = {k: self.__dict__.pop(k) for k in keys if k in self.__dict__}
        try:
            clone = super().copy()
        finally:
            self.__dict__.update(shared)
        clone.__dict__.update(shared)
        clone.__dict__["_wrong"] = list(self._wrong)  # items are shared; the list is the copy's own
        return clone

    def scripted_policies(self) -> dict[str, Policy]:
        return {"optimal": optimal_policy, "random": random_policy, "noisy": noisy_policy}


class TwentyQuestionsEnv(_QuestionsEnv):
    """20 Questions: find the hidden object with yes/no questions (``twenty-questions-v0``)."""

    @property
    def kb(self) -> ObjectKB:
        return objects_kb()

    def _scope(self) -> str:
        categories = "; ".join(self.kb.meta["categories"].values())
        return (
            "Let's play 20 Questions. I am thinking of a common thing: an animal, plant, food or everyday object. "
            f"It belongs to one of these kinds of things: {categories}."
        )

    def _examples(self) -> str:
        return "Ask yes/no questions, for example: Is it an animal? Is it bigger than a breadbox? Is it made of metal?"

    def _understood(self) -> str:
        tags = " ".join(_TAG_QUESTIONS.values())
        return (
            f"Is it an animal? (or any of the kinds of things above) {tags} Is it bigger than a breadbox? "
            "Is it bigger than a person? Can you hold it in your hand? Is it bigger than a coin? Is it red? "
            "(or another colour) Do you wear it on your feet? (or head, neck, body, waist, legs, hands, wrist)"
        )

    def _article(self, item: Item) -> str:
        guess = self.kb.guess_text(item)
        return guess[len("Is it ") : -len(item.name) - 1]

    def _oracle_prompt(self, item: Item) -> str:
        return (
            "You are the answerer in a game of 20 Questions. The player asks questions to find the hidden object.\n"
            f"The hidden object is: {item.name}\n"
            f"Facts about it:\n{self.kb.facts_text(item)}\n"
            "Answer the player's question about the hidden object truthfully with one word: Yes or No. If the "
            "question cannot be answered with yes or no, reply: I cannot answer that. "
            "Never say the name of the hidden object."
        )


class GuessMyCityEnv(_QuestionsEnv):
    """Guess My City: find the hidden city with questions, open ones included (``guess-my-city-v0``)."""

    _oracle_max_tokens = 48

    @property
    def kb(self) -> CityKB:
        return cities_kb()

    def _scope(self) -> str:
        continents = ", ".join(self.kb.meta["continents"])
        return (
            "Let's play Guess My City. I am thinking of a well-known city somewhere in the world (on any of these "
            f"continents: {continents}): a capital or a large or famous city."
        )

    def _examples(self) -> str:
        return (
            "Ask yes/no questions or open questions, for example: Is it in Europe? Is it a capital city? "
            "What language do people speak there? What is the climate like? (I will not tell you the name of "
            "the city or of its country, but you may ask whether it is in a given country.)"
        )

    def _understood(self) -> str:
        generic = " ".join(text for text, query in self.kb.question_set() if query.kind.startswith(("open", "flag")))
        return (
            f"{generic} Is it in the tropics? Is it in the northern (or southern, eastern, western) hemisphere? "
            "Is it in Europe? (or another continent, or a region such as Southeast Asia, or a country) "
            "Is it a French city? Do people speak Spanish there? Does it have a Mediterranean (or tropical, arid, "
            "oceanic, subtropical, continental, highland) climate? Is it hot? "
            "Does it have more than 5 million people?"
        )

    def _oracle_prompt(self, item: Item) -> str:
        return (
            "You are the answerer in a game of Guess My City. The player asks questions to find the hidden city.\n"
            f"The hidden city is: {item.name}, {item.facts['country']}\n"
            f"Facts about it:\n{self.kb.facts_text(item)}\n"
            "Answer the player's question about the hidden city truthfully and briefly, in one short sentence. "
            "Start with Yes or No when the question is a yes/no question. "
            "Never say the name of the city or the name of its country."
        )


# ============================================================================ scripted policies


def _questions_env(env: Env) -> _QuestionsEnv:
    if not isinstance(env, _QuestionsEnv):
        raise EnvError(f"question-game policies drive TwentyQuestionsEnv or GuessMyCityEnv, not {type(env).__name__}")
    return env


@functools.cache
def _answer_matrix(kb: KnowledgeBase) -> np.ndarray:
    """Answer codes of every question of ``kb.question_set()`` (rows) for every item (columns)."""
    questions = kb.question_set()
    codes: dict[str, int] = {}
    matrix = np.zeros((len(questions), len(kb.items)), dtype=np.int16)
    for q, (_, query) in enumerate(questions):
        for i, item in enumerate(kb.items):
            matrix[q, i] = codes.setdefault(kb.answer(item, query), len(codes))
    return matrix


@functools.lru_cache(maxsize=8192)
def _best_question(kb: KnowledgeBase, candidates: tuple[int, ...]) -> tuple[int, float]:
    """Index of the question whose answer over ``candidates`` (item indices) has the highest entropy, and it."""
    answers = _answer_matrix(kb)[:, list(candidates)]
    k = len(candidates)
    best, best_entropy = 0, -1.0
    for q in range(answers.shape[0]):
        counts = np.unique(answers[q], return_counts=True)[1]
        p = counts / k
        entropy = float(-(p * np.log2(p)).sum())
        if entropy > best_entropy + 1e-9:
            best, best_entropy = q, entropy
    return best, best_entropy


def optimal_policy(env: Env, rng: random.Random) -> str:
    """Greedy information gain over the knowledge base (a heuristic, not the proven optimum).

    It keeps the items of the episode's pool consistent with the answers so far (it reads the pool, never the
    hidden item) and asks the question of the rule oracle's question set whose answer splits them with the
    highest entropy; it guesses when at most two candidates are left, when no question splits them, or on the
    last turn.
    """
    game = _questions_env(env)
    kb = game.kb
    candidates = game.candidates()
    if len(candidates) <= 2 or game.turns_left <= 1:
        return kb.guess_text(candidates[0])
    index = {id(item): i for i, item in enumerate(kb.items)}
    question, entropy = _best_question(kb, tuple(sorted(index[id(c)] for c in candidates)))
    if entropy <= 0.0:
        return kb.guess_text(candidates[0])
    return kb.question_set()[question][0]


def random_policy(env: Env, rng: random.Random) -> str:
    """A random question of the rule oracle's question set, or (with probability ``RANDOM_GUESS_PROB``) a guess
    of a uniformly random item of the whole knowledge base; it ignores the answers."""
    kb = _questions_env(env).kb
    if rng.random() < RANDOM_GUESS_PROB:
        return kb.guess_text(rng.choice(kb.items))
    return rng.choice(kb.question_set())[0]


def noisy_policy(env: Env, rng: random.Random) -> str:
    """LMRL-Gym's dataset mixture: ``optimal`` with probability ``NOISY_OPTIMAL_PROB``, else ``random``."""
    if rng.random() < NOISY_OPTIMAL_PROB:
        return optimal_policy(env, rng)
    return random_policy(env, rng)

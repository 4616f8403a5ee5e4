"""Car Dealer (LMRL-Gym's strategic-dialogue task): ``car-dealer-v0``.

The agent is the seller at a car dealership; the buyer has a persona drawn from the seed (one of ten
personalities, a brand, a car type, one to four wanted features and a budget of $10,000 to $90,000). The
seller has one car on the lot, of the brand and type the buyer asked for; it knows that car's features and
its MSRP, not the buyer's budget, personality or wishes. The episode ends when the buyer buys (at a price
the seller named) or leaves, or after ``max_turns`` seller messages (no sale). The only reward is LMRL-Gym's,
on the final step:

- bought: ``buy_price / ((budget + msrp) / 2)``
- not bought: ``-(budget - msrp) / msrp``

The buyer is simulated either by fixed rules (``buyer="rules"``, the default: a buyer that tracks the
seller's offers, counters, concedes and walks away; see :class:`RuleBuyer`) or by any model
(``buyer="<model spec>"`` or a ready :class:`~palaestra.models.base.Model`), prompted with the persona and
the conversation and asked to end with ``DECISION: BUY $PRICE`` or ``DECISION: LEAVE``.

Personas of the train, validation and test seed ranges come from disjoint parts of the persona space (a
hash of the whole combination), so test buyers are never seen in training. The brands, car types and
features are LMRL-Gym's lists; the personalities, price table and buyer rules are this module's own.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from palaestra.core.errors import EnvError
from palaestra.core.types import ChatRequest, Message, SamplingParams, Step
from palaestra.envs.base import Env, Policy

if TYPE_CHECKING:
    from palaestra.models.base import Model

# --------------------------------------------------------------------------- the persona space

BUDGETS = (10_000, 30_000, 50_000, 70_000, 90_000)  # LMRL-Gym's budgets
BRANDS = (
    "Volkswagen",
    "Lexus",
    "Ford",
    "Mazda",
    "Hyundai",
    "Toyota",
    "Mercedes-Benz",
    "BMW",
    "Audi",
    "Subaru",
    "Honda",
    "Porsche",
    "Tesla",
)
CAR_TYPES = ("sedan", "SUV", "truck", "convertible", "electric", "luxury")
FEATURES = (
    "backup camera",
    "navigation system",
    "heated seats",
    "leather seats",
    "third-row seating",
    "blind spot monitoring",
    "sunroof",
    "Apple CarPlay",
)

# Rough list prices (US dollars, 2020s): a base price per car type for a mainstream brand, a brand factor,
# and an add-on price per feature. MSRP = (base x factor + features) x a seeded factor in [0.95, 1.05].
_TYPE_BASE = {
    "sedan": 26_000,
    "SUV": 33_000,
    "truck": 40_000,
    "convertible": 36_000,
    "electric": 40_000,
    "luxury": 48_000,
}
_BRAND_FACTOR = {
    "Hyundai": 0.9,
    "Mazda": 0.95,
    "Volkswagen": 1.0,
    "Ford": 1.0,
    "Toyota": 1.0,
    "Subaru": 1.0,
    "Honda": 1.0,
    "Tesla": 1.3,
    "Lexus": 1.45,
    "Audi": 1.5,
    "BMW": 1.55,
    "Mercedes-Benz": 1.6,
    "Porsche": 2.4,
}
_FEATURE_PRICE = {
    "backup camera": 400,
    "navigation system": 1_200,
    "heated seats": 600,
    "leather seats": 1_500,
    "third-row seating": 2_000,
    "blind spot monitoring": 800,
    "sunroof": 1_200,
    "Apple CarPlay": 300,
}
_MSRP_NOISE = (0.95, 1.05)
MIN_CAR_FEATURES = 2
# Bounds of any MSRP this module draws (cheapest type and brand with the two cheapest features, low noise;
# the dearest with every feature, high noise), rounded outwards to $100: they bound the reward range.
MSRP_MIN = math.floor((26_000 * 0.9 + 300 + 400) * _MSRP_NOISE[0] / 100) * 100
MSRP_MAX = math.ceil((48_000 * 2.4 + sum(_FEATURE_PRICE.values())) * _MSRP_NOISE[1] / 100) * 100

# No buyer pays more than this multiple of its budget (a rule buyer's most, with every bonus; a model
# buyer's BUY above it is refused as unaffordable). It keeps the bought reward below 2.
MAX_STRETCH = 1.2
# Willingness bonus (a fraction) when the seller names the buyer's brand or car type.
CAR_MENTION_BONUS = 0.02
# Prices outside this range are not read as prices (a "$5" tip or a "$10 billion" joke).
PRICE_MIN, PRICE_MAX = 1_000, 1_000_000
MAX_UTTERANCE_CHARS = 500
# The observation keeps the car line and the most recent conversation lines that fit in this many characters.
MAX_TRANSCRIPT_CHARS = 3_000
BUYER_MAX_TOKENS = 96


@dataclass(frozen=True)
class Personality:
    """How a rule buyer of one personality behaves; ``description`` also goes into a model buyer's prompt.

    Fractions are of the buyer's maximum price W (see :meth:`RuleBuyer.max_price`).
    """

    name: str
    patience: int  # seller messages it listens to; without a deal by then it leaves
    stretch: float  # W is at most stretch x budget ...
    value: float  # ... and at most value x MSRP (before feature bonuses)
    feature_weight: float  # W grows by this fraction for each wanted feature the seller points out
    opening: float  # its first acceptable price, as a fraction of W
    concession: float  # each price round closes this share of the gap between its price and W
    walk_factor: float  # an offer above walk_factor x W makes it leave at once
    budget_answer: float | None  # asked its budget, it says budget x this (None: it will not say)
    chatty: bool  # says which features it wants in its first line
    description: str


# fmt: off
PERSONALITIES: tuple[Personality, ...] = (
    #           name       patience stretch value feat  open  conc  walk  budget chatty
    Personality("stingy",          8, 0.95, 0.95, 0.02, 0.65, 0.20, 1.4, 0.8,  False, "counts every dollar"),
    Personality("impulsive",       3, 1.10, 1.03, 0.05, 0.90, 0.50, 1.8, 1.0,  True, "decides fast, loves features"),
    Personality("skeptical",       6, 1.00, 0.97, 0.01, 0.75, 0.25, 1.5, None, False, "distrusts sales talk"),
    Personality("friendly",        7, 1.05, 1.00, 0.04, 0.85, 0.40, 2.0, 1.0,  True, "warm and easy to please"),
    Personality("indecisive",     10, 1.00, 1.00, 0.03, 0.80, 0.15, 1.7, 0.9,  False, "slow to make up their mind"),
    Personality("impatient",       3, 1.00, 1.00, 0.02, 0.85, 0.50, 1.3, None, False, "in a hurry, quick to walk out"),
    Personality("polite",          6, 1.00, 1.00, 0.03, 0.80, 0.35, 1.8, 1.0,  False, "courteous and respectful"),
    Personality("talkative",       9, 1.05, 1.00, 0.05, 0.80, 0.30, 1.8, 1.0,  True, "loves to talk about cars"),
    Personality("haggler",         8, 0.95, 0.95, 0.02, 0.60, 0.25, 1.4, 0.85, False, "always pushes for a discount"),
    Personality("uncommunicative", 4, 1.00, 1.00, 0.03, 0.80, 0.35, 1.6, None, False, "says as little as possible"),
)
# fmt: on
_PERSONALITY = {p.name: p for p in PERSONALITIES}

# Share of the persona space (by hash) held out for each evaluation split; the rest is for train seeds.
_POOL_PERCENT = {"test": 15, "validation": 15}


@dataclass(frozen=True)
class Persona:
    """The buyer: personality, wished brand and car type, wanted features (in ``FEATURES`` order), budget."""

    personality: str
    brand: str
    car_type: str
    features: tuple[str, ...]
    budget: int

    @property
    def traits(self) -> Personality:
        return _PERSONALITY[self.personality]

    def key(self) -> str:
        return "|".join([self.personality, self.brand, self.car_type, ",".join(self.features), str(self.budget)])


@dataclass(frozen=True)
class Car:
    """The car the seller offers: the buyer's brand and type, its features (``FEATURES`` order) and MSRP."""

    brand: str
    car_type: str
    features: tuple[str, ...]
    msrp: int

    def describe(self) -> str:
        return f"{_with_article(self.brand)} {_type_noun(self.car_type)} with {_join(self.features)}"


def persona_split(persona: Persona) -> str:
    """The split (``train`` / ``validation`` / ``test``) whose seeds may draw this persona, by a stable hash."""
    bucket = int(hashlib.sha256(persona.key().encode()).hexdigest(), 16) % 100
    if bucket < _POOL_PERCENT["test"]:
        return "test"
    if bucket < _POOL_PERCENT["test"] + _POOL_PERCENT["validation"]:
        return "validation"
    return "train"


def draw_persona(rng: random.Random, split: str | None) -> Persona:
    """A random persona of ``split`` (any persona when ``split`` is None), drawn by rejection."""
    while True:
        k = rng.randint(1, 4)
        wanted = set(rng.sample(FEATURES, k))
        persona = Persona(
            personality=rng.choice(PERSONALITIES).name,
            brand=rng.choice(BRANDS),
            car_type=rng.choice(CAR_TYPES),
            features=tuple(f for f in FEATURES if f in wanted),
            budget=rng.choice(BUDGETS),
        )
        if split is None or persona_split(persona) == split:
            return persona


def list_price(brand: str, car_type: str, features: tuple[str, ...], noise: float = 1.0) -> int:
    """The MSRP of a car, rounded to $100."""
    price = _TYPE_BASE[car_type] * _BRAND_FACTOR[brand] + sum(_FEATURE_PRICE[f] for f in features)
    return round(price * noise / 100) * 100


def draw_car(rng: random.Random, persona: Persona) -> Car:
    """The car on the lot: the persona's brand and type; each wanted feature with probability 0.75, each
    other feature with probability 0.35 (at least ``MIN_CAR_FEATURES``)."""
    while True:
        chosen = [f for f in FEATURES if rng.random() < (0.75 if f in persona.features else 0.35)]
        if len(chosen) >= MIN_CAR_FEATURES:
            break
    noise = rng.uniform(*_MSRP_NOISE)
    return Car(
        persona.brand,
        persona.car_type,
        tuple(chosen),
        list_price(persona.brand, persona.car_type, tuple(chosen), noise),
    )


# --------------------------------------------------------------------------- the reward


def lmrl_reward(bought: bool, buy_price: int | None, budget: int, msrp: int) -> float:
    """LMRL-Gym's Car Dealer reward: bought ``buy_price / ((budget + msrp) / 2)``; else ``-(budget - msrp) / msrp``.

    Not bought, the reward is negative when the buyer could afford the MSRP (budget > MSRP: a lost sale)
    and positive when it could not (budget < MSRP): then not selling earns ``1 - budget / msrp``, and a
    sale beats it only at a price above ``(1 - budget / msrp) * (budget + msrp) / 2``.
    """
    if bought:
        if buy_price is None:
            raise ValueError("a sale needs a buy price")
        return buy_price / ((budget + msrp) / 2)
    return -(budget - msrp) / msrp


# --------------------------------------------------------------------------- reading the seller's words

_NUMBER = r"(?<![\w.,])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_PRICE_RE = re.compile(
    r"(?P<cur>\$|\bUS\$|\bUSD\s?)?\s?" + _NUMBER + r"(?:\s?(?P<unit>k|thousand|grand|million)\b)?"
    r"(?:\s?(?P<word>dollars?|bucks|usd)\b)?",
    re.IGNORECASE,
)
_UNIT = {"k": 1_000, "thousand": 1_000, "grand": 1_000, "million": 1_000_000}
# An amount followed by one of these is a discount, a payment or a distance, not the price of the car.
_NOT_PRICE_AFTER = re.compile(
    r"\s*(off\b|discount|rebate|cash\s*back|down\b|(per|a|each|/)\s*(month|mo\b|year|yr\b)|monthly|"
    r"miles?\b|mi\b|km\b|kilomet)",
    re.IGNORECASE,
)
_NOT_PRICE_BEFORE = re.compile(
    r"(\bsave|\bsaving|\bsavings of|\bdiscount of|\brebate of|\bknock(ed)? off|\boff by"
    r"|\b(reduce|lower|cut)(d|ed)? (it )?by|\bdown payment of|\bdeposit of)\s*$",
    re.IGNORECASE,
)


def parse_prices(text: str) -> list[int]:
    """Every car price stated in ``text``, in order, in whole dollars.

    A number is a price when it carries a currency mark or unit (``$23,500``, ``23500 dollars``,
    ``23.5k``, ``USD 23500``, ``23 grand``) or thousands commas (``23,500``); bare numbers (``2023``) are
    not. Amounts of discounts, payments or distances (``$2,000 off``, ``$400 a month``, ``save $1,000``,
    ``30,000 miles``) and amounts outside $1,000..$1,000,000 are skipped.
    """
    prices = []
    for match in _PRICE_RE.finditer(text):
        raw, unit = match["num"], (match["unit"] or "").lower()
        if not (match["cur"] or unit or match["word"] or "," in raw):
            continue
        if _NOT_PRICE_AFTER.match(text, match.end()) or _NOT_PRICE_BEFORE.search(text, 0, match.start()):
            continue
        value = float(raw.replace(",", "")) * _UNIT.get(unit, 1)
        if PRICE_MIN <= value <= PRICE_MAX:
            prices.append(round(value))
    return prices


def seller_offer(text: str) -> int | None:
    """The seller's offer in an utterance: the lowest price it names (a buyer hears the best deal), or None."""
    prices = parse_prices(text)
    return min(prices) if prices else None


_TAG_RE = re.compile(r"<\s*/?\s*[a-zA-Z][^<>]*>")
_WORD_RE = re.compile(r"[a-zA-Z]{2,}")


def utterance_problem(action: Any) -> str | None:
    """Why ``action`` is not a valid seller message, or None when it is.

    Valid: text of at most ``MAX_UTTERANCE_CHARS`` characters, without markup tags, with at least one word
    of two or more Latin letters or a price (``$25,000`` alone is a valid offer). A message without a price
    is valid too (the buyer answers it and asks for a price).
    """
    if not isinstance(action, str):
        return f"a message must be text, not {type(action).__name__}"
    if not action.strip():
        return "the message was empty"
    if len(action) > MAX_UTTERANCE_CHARS:
        return f"the message was {len(action):,} characters long; the limit is {MAX_UTTERANCE_CHARS}"
    if _TAG_RE.search(action):
        return "the message contained markup tags (<...>); write plain sentences"
    if not _WORD_RE.search(action) and not parse_prices(action):
        return "the message had no English words and no price"
    return None


# Phrases for the wanted features, the brands and the car types, as a seller might say them.
_FEATURE_WORDS = {
    "backup camera": (
        "backup camera",
        "back-up camera",
        "rear camera",
        "reverse camera",
        "rearview camera",
        "rear-view camera",
    ),
    "navigation system": ("navigation", "nav system", "gps", "sat nav"),
    "heated seats": ("heated seat", "seat heating", "heated front seats"),
    "leather seats": ("leather",),
    "third-row seating": (
        "third-row",
        "third row",
        "3rd row",
        "3rd-row",
        "seven seats",
        "7 seats",
        "seven-seat",
        "7-seat",
    ),
    "blind spot monitoring": ("blind spot", "blind-spot", "blindspot"),
    "sunroof": ("sunroof", "sun roof", "moonroof", "moon roof", "panoramic roof"),
    "Apple CarPlay": ("carplay", "car play"),
}
_BRAND_WORDS = {"Mercedes-Benz": ("mercedes", "benz"), "Volkswagen": ("volkswagen", "vw")}
_TYPE_WORDS = {
    "sedan": ("sedan", "saloon"),
    "SUV": ("suv", "crossover"),
    "truck": ("truck", "pickup", "pick-up"),
    "convertible": ("convertible", "cabriolet", "drop-top", "roadster"),
    "electric": ("electric", "ev", "battery"),
    "luxury": ("luxury", "premium"),
}
_ACCEPT_RE = re.compile(
    r"(^\W*(ok(ay)?|alright|all right|fine|yes|sure)?\W*deal\b|\bit'?s a deal\b"
    r"|\b(you'?ve |you )?got (a|yourself a) deal\b|\bi (can )?accept\b|\bwe (can )?accept\b"
    r"|\baccept(ed)? your (offer|price)\b|\bi agree\b|\bagreed\b|\byour (offer|price) works\b"
    r"|\bi'?ll take (it|that|your offer)\b|\blet'?s do it\b)",
    re.IGNORECASE,
)
_NEEDS_RE = re.compile(r"\b(look(ing)? for|need|want|feature|important|prefer|interested|must.have|wish|require)", re.I)
_BUDGET_RE = re.compile(r"\b(budget|afford|spend|price range|how much (can|could|are|would|do|will) you)\b", re.I)


def _says(text: str, phrase: str) -> bool:
    return re.search(r"(?<![a-z])" + re.escape(phrase.lower()) + r"(?![a-z])", text) is not None


def mentioned_features(text: str, features: tuple[str, ...]) -> tuple[str, ...]:
    """Which of ``features`` the (lower-cased) ``text`` talks about."""
    return tuple(f for f in features if any(_says(text, w) for w in _FEATURE_WORDS[f] + (f.lower(),)))


def mentions_car(text: str, car: Car) -> bool:
    """Whether the (lower-cased) ``text`` names the car's brand or type."""
    words = _BRAND_WORDS.get(car.brand, ()) + (car.brand.lower(),) + _TYPE_WORDS[car.car_type]
    return any(_says(text, w) for w in words)


def accepts_counter(text: str) -> bool:
    """Whether the seller's words accept the buyer's counter-offer ("Deal!", "I accept", "you got a deal")."""
    return _ACCEPT_RE.search(text) is not None


# --------------------------------------------------------------------------- the rule buyer


@dataclass
class Move:
    """What the buyer does in reply to one seller message."""

    kind: str  # "buy", "leave", "walk", "counter", "talk", "invalid"
    price: int | None = None  # the deal price ("buy") or the counter-offer ("counter")
    liked: tuple[str, ...] = ()  # wanted features the seller just pointed out
    asked_needs: bool = False
    asked_budget: bool = False


@dataclass
class RuleBuyer:
    """The rule-based buyer: a maximum price W, and a current acceptable price f x W that rises each round.

    - W = min(stretch x budget, value x MSRP) x interest, capped at ``MAX_STRETCH`` x budget; interest starts
      at 1 and grows by ``feature_weight`` for each wanted feature (that the car has) the seller points out,
      and by ``CAR_MENTION_BONUS`` the first time the seller names the brand or car type.
    - Each message with a price p: if p > walk_factor x W the buyer walks out. Otherwise it concedes (f
      closes ``concession`` of its gap to 1; half that if the seller did not lower its price since its last
      offer), then buys at p if p <= f x W, else counters with f x W (rounded down to $100).
    - "Deal" / "I accept" without a price takes the buyer's standing counter-offer.
    - After ``patience`` seller messages (valid or not) without a deal it leaves.
    """

    persona: Persona
    car: Car
    interest: float = 1.0
    fraction: float = 0.0
    pointed_out: set[str] = field(default_factory=set)
    car_named: bool = False
    last_offer: int | None = None
    counter: int | None = None
    messages: int = 0

    def __post_init__(self) -> None:
        self.fraction = self.persona.traits.opening

    def max_price(self, interest: float | None = None) -> float:
        """W: the most this buyer would pay now (or with ``interest``)."""
        t, budget = self.persona.traits, self.persona.budget
        base = min(t.stretch * budget, t.value * self.car.msrp) * (self.interest if interest is None else interest)
        return min(base, MAX_STRETCH * budget)

    def appeal(self, text: str) -> tuple[tuple[str, ...], float]:
        """The wanted features ``text`` newly points out (that the car has) and the interest it would bring."""
        lower = text.lower()
        wanted = tuple(f for f in self.persona.features if f in self.car.features and f not in self.pointed_out)
        liked = mentioned_features(lower, wanted)
        gain = self.persona.traits.feature_weight * len(liked)
        if not self.car_named and mentions_car(lower, self.car):
            gain += CAR_MENTION_BONUS
        return liked, gain

    def concede(self, price: int) -> float:
        """The acceptable fraction after a round in which the seller offers ``price``."""
        t = self.persona.traits
        lowered = self.last_offer is None or price < self.last_offer
        return self.fraction + (t.concession if lowered else t.concession / 2) * (1 - self.fraction)

    def hear(self, text: str, offer: int | None, *, valid: bool = True) -> Move:
        """Update on one seller message (``offer``: its price, if any) and decide the reply."""
        self.messages += 1
        t = self.persona.traits
        if not valid:
            return Move("leave") if self.messages >= t.patience else Move("invalid")
        liked, gain = self.appeal(text)
        self.pointed_out.update(liked)
        self.car_named = self.car_named or mentions_car(text.lower(), self.car)
        self.interest += gain
        if offer is None and self.counter is not None and accepts_counter(text):
            offer = self.counter
        w = self.max_price()
        if offer is not None:
            if offer > t.walk_factor * w:
                return Move("walk", offer, liked)
            self.fraction = self.concede(offer)
            self.last_offer = offer
            if offer <= self.fraction * w:
                return Move("buy", offer, liked)
            if self.messages >= t.patience:
                return Move("leave", None, liked)
            self.counter = max(self.counter or 0, math.floor(self.fraction * w / 100) * 100)
            return Move("counter", self.counter, liked)
        if self.messages >= t.patience:
            return Move("leave", None, liked)
        return Move(
            "talk",
            self.counter,
            liked,
            asked_needs="?" in text and _NEEDS_RE.search(text) is not None,
            asked_budget="?" in text and _BUDGET_RE.search(text) is not None,
        )


# --------------------------------------------------------------------------- text helpers


def _with_article(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _type_noun(car_type: str) -> str:
    return {"electric": "electric car", "luxury": "luxury car"}.get(car_type, car_type)


def _join(items: tuple[str, ...] | list[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items) or "no extras"
    return ", ".join(items[:-1]) + " and " + items[-1]


def _money(amount: float) -> str:
    return f"${round(amount):,}"


def _shown(action: str, limit: int = 40) -> str:
    text = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in action[:limit])
    return text + ("..." if len(action) > limit else "")


def _floor100(amount: float) -> int:
    return math.floor(amount / 100) * 100


# Templated buyer lines; the episode's random generator picks among them.
_LINES = {
    "counter": (
        "That's more than I want to pay. I could do {price}.",
        "How about {price}?",
        "I was thinking more like {price}.",
        "Too steep for me. My offer is {price}.",
    ),
    "buy": ("Deal! I'll take it for {price}.", "Alright, {price} it is. I'll buy it.", "You've got a deal at {price}."),
    "walk": (
        "{price}? That's way out of my range. I'm leaving.",
        "{price}? No way. I'm going elsewhere. Goodbye.",
    ),
    "leave": (
        "I don't think we'll agree on a price. I'll look elsewhere. Goodbye.",
        "This is taking too long. I'm going to leave. Goodbye.",
    ),
    "ask_price": ("So what's the price?", "What would it cost me?", "How much are you asking for it?"),
    "standing": ("My offer is still {price}.", "I'm still at {price}.", "{price} is what I can do."),
    "invalid": ("Sorry, I didn't understand that.", "Pardon? I didn't catch that."),
    "liked": ("{features}? That's exactly what I wanted.", "Oh, {features}. That's a big plus for me."),
}
_PERSONALITY_LINES = {
    "stingy": "Every dollar counts for me.",
    "skeptical": "I've heard that kind of sales talk before.",
    "friendly": "Thanks for your help, by the way!",
    "indecisive": "Hmm, I'm still not sure.",
    "impatient": "Let's make this quick.",
    "haggler": "I know I can get a better price.",
}


def _opening_line(persona: Persona) -> str:
    line = f"Hi, I'm looking for {_with_article(persona.brand)} {_type_noun(persona.car_type)}."
    if persona.traits.chatty:
        line += f" Ideally with {_join(persona.features)}."
    return line


# --------------------------------------------------------------------------- the model buyer

_DECISION_RE = re.compile(
    r"DECISION\s*[:=]?\s*\**\s*(?P<kind>BUY|BOUGHT|ACCEPT|LEAVE|REJECT|WALK|NO DEAL)\b(?P<rest>[^\n]*)", re.IGNORECASE
)


@dataclass(frozen=True)
class BuyerDecision:
    """A model buyer's decision line: ``buy`` (with the price it named, if any) or ``leave``."""

    kind: str
    price: int | None = None


def parse_buyer_reply(text: str) -> tuple[str, BuyerDecision | None]:
    """Split a model buyer's reply into what it says (decision line removed) and its decision, if any.

    The last ``DECISION: BUY $PRICE`` / ``DECISION: LEAVE`` line counts (``ACCEPT``/``REJECT`` are read as
    buy/leave); a leading role label (``Buyer:``) and anything after a ``Seller:`` line are dropped.
    """
    text = re.split(r"\n\s*(?:Seller|Dealer|Salesperson)\s*:", text, maxsplit=1, flags=re.IGNORECASE)[0]
    matches = list(_DECISION_RE.finditer(text))
    decision = None
    if matches:
        last = matches[-1]
        kind = "buy" if last["kind"].upper() in ("BUY", "BOUGHT", "ACCEPT") else "leave"
        prices = parse_prices(last["rest"]) or [
            round(float(n.replace(",", ""))) for n in re.findall(r"\d[\d,]*", last["rest"]) if n.replace(",", "")
        ]
        decision = BuyerDecision(kind, prices[0] if kind == "buy" and prices else None)
        text = text[: matches[0].start()] + text[matches[-1].end() :]
    label = r"^\s*\**\s*(buyer|seller|dealer|customer)\s*\**\s*:\s*"
    said = " ".join(re.sub(label, "", text.strip(), flags=re.IGNORECASE).split())
    return said[:400], decision


# --------------------------------------------------------------------------- the environment


@dataclass(frozen=True)
class Outcome:
    bought: bool
    price: int | None = None


class CarDealerEnv(Env):
    """Sell the car on the lot to a simulated buyer; LMRL-Gym's reward on the final step.

    Args:
        buyer: ``"rules"`` (the default, :class:`RuleBuyer`), a model spec string (built through the runner's
            model pool, or a pool this environment owns and closes), or a ready ``Model`` (shared, never
            closed here). A model buyer that raises ``ModelError`` ends the episode as an error (the
            runner's rule), never as a loss.
    """

    action_tokens = 96  # a sales pitch with a price

    def __init__(self, buyer: str | Model = "rules") -> None:
        if isinstance(buyer, str) and not buyer.strip():
            raise EnvError("buyer must be 'rules', a model spec (e.g. 'smollm2-135m') or a Model")
        self._buyer: str | Model = buyer
        self._model: Model | None = None
        self._persona: Persona | None = None
        self._car: Car | None = None
        self._rules: RuleBuyer | None = None
        self._rng = random.Random(0)
        self._lines: list[tuple[str, str]] = []
        self._offers: list[int] = []  # prices the seller named (or accepted), in order
        self._counter: int | None = None  # the buyer's standing counter-offer
        self._turns = 0
        self._done = False
        self._outcome: Outcome | None = None

    @property
    def uses_rules(self) -> bool:
        return isinstance(self._buyer, str) and self._buyer.strip() == "rules"

    @property
    def instructions(self) -> str:  # type: ignore[override]  # reads spec.max_turns, set after __init__
        spec = getattr(self, "spec", None)
        turns = spec.max_turns if spec else 20
        return (
            "You are a salesperson at a car dealership, talking with a customer who wants to buy a car. You have "
            "one car on the lot for them; its features and its MSRP (list price) are on the first line of every "
            "observation. You do not know the buyer's budget, personality or which features they care about: ask, "
            "and point out what they like.\n"
            f"Reply with what you say to the buyer: plain English, at most {MAX_UTTERANCE_CHARS} characters. To make "
            "an offer, state the full price in dollars, e.g. 'I can let it go for $23,500.' (23500 dollars and $23.5k "
            "also work). If you name several prices, the lowest is your offer. Amounts of discounts or payments "
            "('$2,000 off', '$400 a month') are not offers. To accept the buyer's counter-offer, repeat its price or "
            "say 'Deal!'. A message without a price is fine: the buyer answers it.\n"
            "The buyer may counter, ask questions, buy at your offer or walk away; it ends the conversation when it "
            f"decides, and after {turns} of your messages it leaves without buying.\n"
            "Reward: 0 until the end; then, if the buyer bought, price / ((budget + MSRP) / 2); if not, "
            "(MSRP - budget) / MSRP, where budget is the buyer's (hidden) budget. So a lost sale costs a lot when "
            "the buyer could afford the car, and selling far below what the buyer would pay wastes reward.\n"
            "An empty message, one with neither words nor a price, with markup tags or over the length limit is "
            "invalid: the buyer does not understand it, reward 0, and it uses up one of your messages and the "
            "buyer's patience."
        )

    # ------------------------------------------------------------------ state for policies and tests

    @property
    def persona(self) -> Persona:
        """The buyer's persona (for scripted policies and tests; the agent is never shown it)."""
        if self._persona is None:
            raise EnvError("call reset() first: there is no buyer yet")
        return self._persona

    @property
    def car(self) -> Car:
        if self._car is None:
            raise EnvError("call reset() first: there is no car yet")
        return self._car

    @property
    def rule_buyer(self) -> RuleBuyer:
        """The rule buyer's state (with a model buyer, a shadow that follows the same messages)."""
        if self._rules is None:
            raise EnvError("call reset() first: there is no buyer yet")
        return self._rules

    @property
    def offers(self) -> tuple[int, ...]:
        return tuple(self._offers)

    @property
    def turns(self) -> int:
        return self._turns

    @property
    def conversation(self) -> tuple[tuple[str, str], ...]:
        """(speaker, line) pairs so far, speaker ``"Buyer"`` or ``"Seller"``."""
        return tuple(self._lines)

    # ------------------------------------------------------------------ rendering

    def _observation(self, ending: str = "") -> str:
        car = self.car
        head = f"Your car: {car.describe()}. MSRP: {_money(car.msrp)}."
        lines = [f"{who}: {text}" for who, text in self._lines]
        kept: list[str] = []
        size = 0
        for line in reversed(lines):
            if size + len(line) > MAX_TRANSCRIPT_CHARS and kept:
                break
            kept.append(line)
            size += len(line) + 1
        kept.reverse()
        omitted = len(lines) - len(kept)
        parts = [head, "Conversation so far:"]
        if omitted:
            parts.append(f"({omitted} earlier line{'s' if omitted != 1 else ''} not shown)")
        parts += kept
        if ending:
            parts.append(ending)
        return "\n".join(parts)

    # ------------------------------------------------------------------ the environment contract

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        """Start an episode. ``options``: ``persona`` (a dict of :class:`Persona` fields) fixes the buyer,
        ``car`` (a dict with ``features`` and/or ``msrp``) fixes the car."""
        options = dict(options or {})
        persona_opt, car_opt = options.pop("persona", None), options.pop("car", None)
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}; CarDealerEnv accepts 'persona' and 'car'")
        rng = random.Random(seed)
        persona = draw_persona(rng, self._split_of(seed)) if persona_opt is None else _persona_from(persona_opt)
        car = draw_car(rng, persona)
        if car_opt is not None:
            car = _car_from(car_opt, car)
        if not self.uses_rules and self._model is None:
            self._model = self.partner_model(self._buyer)
        self._persona, self._car, self._rng = persona, car, rng
        self._rules = RuleBuyer(persona, car)
        self._lines = [("Buyer", _opening_line(persona))]
        self._offers, self._counter = [], None
        self._turns, self._done, self._outcome = 0, False, None
        return Step(self._observation(), 0.0, info={"invalid_action": False})

    async def step(self, action: str) -> Step:
        if self._persona is None:
            raise EnvError("call reset() before step(): the episode has not started")
        if self._done:
            raise EnvError("the episode has ended; call reset() before stepping again")
        spec = self._require_spec()
        rules = self.rule_buyer
        self._turns += 1
        problem = utterance_problem(action)
        info: dict[str, Any] = {"invalid_action": problem is not None}
        outcome: Outcome | None = None
        if problem is not None:
            self._lines.append(("Seller", f"(a message the buyer could not understand: {problem})"))
            move = rules.hear("", None, valid=False)
            if not self.uses_rules:
                move = Move("invalid")  # the model buyer decides only on real messages
            reply = self._say(move)
            if move.kind == "leave":
                outcome = Outcome(False)
        else:
            said = " ".join(action.split())
            self._lines.append(("Seller", said))
            offer = seller_offer(said)
            if offer is None and self._counter is not None and accepts_counter(said):
                offer = self._counter
            if offer is not None:
                self._offers.append(offer)
            move = rules.hear(said, offer)
            if self.uses_rules:
                reply = self._say(move)
                if move.kind == "counter":
                    self._counter = move.price
                if move.kind == "buy":
                    outcome = Outcome(True, move.price)
                elif move.kind in ("leave", "walk"):
                    outcome = Outcome(False)
            else:
                reply, outcome = await self._ask_model()
        self._lines.append(("Buyer", reply))
        reward = spec.invalid_action.penalty if problem is not None else 0.0
        if problem is not None and spec.invalid_action.mode == "terminate" and outcome is None:
            # The declared rule ends the episode; its penalty is the whole reward of this step.
            self._done, self._outcome = True, Outcome(False)
            info.update(self._final_info(self._outcome))
            ending = f"The buyer left: {problem}. " + self._decision_text(self._outcome)
            return Step(self._observation(ending), float(reward), True, False, info)
        terminated = outcome is not None
        truncated = not terminated and self._turns >= spec.max_turns
        ending = ""
        if terminated or truncated:
            final = outcome or Outcome(False)
            self._done, self._outcome = True, final
            reward += lmrl_reward(final.bought, final.price, self.persona.budget, self.car.msrp)
            info.update(self._final_info(final))
            ending = "" if terminated else f"Time is up after {spec.max_turns} messages: the buyer leaves. "
            ending += self._decision_text(final)
        return Step(self._observation(ending), float(reward), terminated, truncated, info)

    def _final_info(self, outcome: Outcome) -> dict[str, Any]:
        return {
            "success": outcome.bought,
            "bought": outcome.bought,
            "buy_price": outcome.price,
            "msrp": self.car.msrp,
            "budget": self.persona.budget,
        }

    def _decision_text(self, outcome: Outcome) -> str:
        msrp = _money(self.car.msrp)
        if outcome.bought and outcome.price is not None:
            return f"Decision: bought. MSRP: {msrp}. Buy price: {_money(outcome.price)}."
        return f"Decision: not bought. MSRP: {msrp}."

    def _say(self, move: Move) -> str:
        """The rule buyer's words for ``move``, picked with the episode's random generator."""
        rng, persona = self._rng, self.persona
        parts: list[str] = []
        if move.liked:
            line = rng.choice(_LINES["liked"]).format(features=_join(move.liked))
            parts.append(line[0].upper() + line[1:])
        price = _money(move.price) if move.price is not None else ""
        if move.kind in ("counter", "buy", "walk", "leave", "invalid"):
            parts.append(rng.choice(_LINES[move.kind]).format(price=price))
        else:  # talk
            if move.asked_needs:
                wanted = persona.features[:1] if persona.personality == "uncommunicative" else persona.features
                parts.append(f"I'd like {_join(wanted)}.")
            if move.asked_budget:
                share = persona.traits.budget_answer
                if share is None:
                    parts.append("I'd rather not say what my budget is.")
                else:
                    parts.append(f"My budget is about {_money(round(persona.budget * share, -3))}.")
            if move.price is not None:
                parts.append(rng.choice(_LINES["standing"]).format(price=price))
            elif not (move.asked_needs or move.asked_budget):
                parts.append(rng.choice(_LINES["ask_price"]))
        if move.kind == "counter" and persona.personality in _PERSONALITY_LINES and rng.random() < 0.3:
            parts.append(_PERSONALITY_LINES[persona.personality])
        return " ".join(parts)

    # ------------------------------------------------------------------ the model buyer

    def buyer_request(self) -> ChatRequest:
        """The chat request a model buyer gets: the persona and the car, then the conversation so far."""
        persona, car = self.persona, self.car
        spec = getattr(self, "spec", None)
        turns = spec.max_turns if spec else 20
        system = (
            "You are role-playing a customer (the buyer) at a car dealership, talking with a salesperson (the "
            "seller). Stay in character.\n"
            f"Your personality: {persona.personality} ({persona.traits.description}).\n"
            f"You want {_with_article(persona.brand)} {_type_noun(persona.car_type)} with {_join(persona.features)}.\n"
            f"Your budget is {_money(persona.budget)}; never pay more than {_money(MAX_STRETCH * persona.budget)}.\n"
            f"The car the seller offers: {car.describe()}. MSRP: {_money(car.msrp)}.\n"
            "Write only your next message to the seller, one to three sentences, without a 'Buyer:' label. "
            "Haggle over the price if you like. When you have decided, end your message with a last line "
            "'DECISION: BUY $PRICE' (PRICE must be a price the seller offered) or 'DECISION: LEAVE'. "
            f"The seller has at most {turns} messages; after that you leave without buying."
        )
        conversation = "\n".join(f"{who}: {text}" for who, text in self._lines)
        user = f"Conversation so far:\n{conversation}\n\nWrite the buyer's next message."
        return ChatRequest(
            messages=(Message("system", system), Message("user", user)),
            sampling=SamplingParams(temperature=0.0, max_tokens=BUYER_MAX_TOKENS, stop=("\nSeller:", "\nDealer:")),
        )

    async def _ask_model(self) -> tuple[str, Outcome | None]:
        """Ask the model buyer for its reply; ``ModelError`` propagates (the runner stores an error episode)."""
        if self._model is None:
            raise EnvError("the model buyer was not built; call reset() first")
        completion = await self._model.generate(self.buyer_request())
        said, decision = parse_buyer_reply(completion.text)
        named = parse_prices(said)
        if named:
            self._counter = named[-1]
        said = said or "..."
        if decision is None:
            return said, None
        if decision.kind == "leave":
            return said, Outcome(False)
        if not self._offers:
            # No price is on the table yet: a purchase is impossible, so the conversation goes on.
            return said, None
        price = decision.price if decision.price in self._offers else self._offers[-1]
        if price > MAX_STRETCH * self.persona.budget:
            return said + f" (The buyer cannot pay {_money(price)}: no sale.)", Outcome(False)
        return said, Outcome(True, price)

    # ------------------------------------------------------------------ copies and resources

    def copy(self) -> Self:
        """An independent copy in the same state; the buyer model (and the spec) are shared, not copied."""
        shared: dict[str, Any] = {k: self.__dict__.pop(k) for k in ("spec", "_buyer", "_model") if k in self.__dict__}
        try:
            clone = super().copy()
        finally:
            self.__dict__.update(shared)
        clone.__dict__.update(shared)
        return clone

    def scripted_policies(self) -> dict[str, Policy]:
        return {"optimal": optimal_policy, "random": random_policy, "noisy": noisy_policy}


def _persona_from(data: Any) -> Persona:
    if isinstance(data, Persona):
        return data
    try:
        persona = Persona(
            personality=str(data["personality"]),
            brand=str(data["brand"]),
            car_type=str(data["car_type"]),
            features=tuple(f for f in FEATURES if f in set(data["features"])),
            budget=int(data["budget"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvError(
            f"bad persona option {data!r} ({exc}); give personality, brand, car_type, features, budget"
        ) from None
    unknown = set(data["features"]) - set(FEATURES)
    if (
        persona.personality not in _PERSONALITY
        or persona.brand not in BRANDS
        or persona.car_type not in CAR_TYPES
        or unknown
        or not persona.features
        or persona.budget not in BUDGETS
    ):
        raise EnvError(
            f"bad persona option {data!r}: personality in {sorted(_PERSONALITY)}, brand in {BRANDS}, car_type in "
            f"{CAR_TYPES}, 1+ features from {FEATURES}, budget in {BUDGETS}"
        )
    return persona


def _car_from(data: Any, drawn: Car) -> Car:
    if not isinstance(data, dict) or set(data) - {"features", "msrp"}:
        raise EnvError(f"bad car option {data!r}: a dict with 'features' and/or 'msrp'")
    features = drawn.features
    if "features" in data:
        if set(data["features"]) - set(FEATURES):
            raise EnvError(f"bad car features {data['features']!r}: choose from {FEATURES}")
        features = tuple(f for f in FEATURES if f in set(data["features"]))
    msrp = int(data.get("msrp", list_price(drawn.brand, drawn.car_type, features)))
    if not MSRP_MIN <= msrp <= MSRP_MAX:  # the declared reward range holds for these MSRPs only
        raise EnvError(f"bad car msrp {msrp}: it must lie in {MSRP_MIN}..{MSRP_MAX}")
    return Car(drawn.brand, drawn.car_type, features, msrp)


# --------------------------------------------------------------------------- scripted policies


def _dealer(env: Env) -> CarDealerEnv:
    if not isinstance(env, CarDealerEnv):
        raise EnvError(f"Car Dealer policies drive CarDealerEnv, not {type(env).__name__}")
    return env


def _pitch(env: CarDealerEnv) -> str:
    """Point out the car and the wanted features it has that were not mentioned yet (reads the persona)."""
    rules, car = env.rule_buyer, env.car
    todo = [f for f in env.persona.features if f in car.features and f not in rules.pointed_out]
    parts = []
    if not rules.car_named:
        parts.append(f"This {car.brand} {_type_noun(car.car_type)} is a great fit for you.")
    if todo:
        parts.append(f"It has {_join(todo)}, just what you wanted.")
    return " ".join(parts)


def optimal_policy(env: Env, rng: random.Random) -> str:
    """The best play against the rule buyer: it reads the persona and the buyer's state.

    It points out every wanted feature the car has in its first message (the most W can be), then names
    lower and lower prices above the buyer's acceptable price, so that the buyer concedes fully every round,
    and on the buyer's last patient message names the highest price it will then accept. When even that sale
    is worth less than no sale (a buyer whose budget is far below the MSRP), it names a price that makes the
    buyer walk out. Against the rule buyer no play gets a higher return (up to whole-dollar rounding).
    """
    env = _dealer(env)
    rules, persona, car = env.rule_buyer, env.persona, env.car
    t = persona.traits
    pitch = _pitch(env)
    _, gain = rules.appeal(pitch)
    w = rules.max_price(rules.interest + gain)
    left = max(1, t.patience - rules.messages)  # seller messages the buyer will still hear, this one included
    best = math.floor(w * (1 - (1 - rules.fraction) * (1 - t.concession) ** left))
    if lmrl_reward(False, None, persona.budget, car.msrp) > lmrl_reward(True, best, persona.budget, car.msrp):
        walk = math.ceil(t.walk_factor * w / 1000) * 1000 + 1000
        return f"I'm sorry, but the price is firm at {_money(walk)}."
    if left == 1:
        price = math.floor(w * rules.concede(0))  # the buyer's price if this offer is lower than the last
        if rules.last_offer is not None and price >= rules.last_offer:
            price = math.floor(w * rules.concede(rules.last_offer))  # not lower: the buyer concedes half
        return f"{pitch} Final offer: {_money(price)}.".strip()
    price = _floor100(w * (1 + 0.01 * (left - 1)))
    if rules.last_offer is not None:
        price = min(price, rules.last_offer - 100)
    if price <= w * rules.concede(price):  # earlier low offers leave no room above the buyer's price
        price = math.floor(w * rules.concede(price))
    return f"{pitch} I can let it go for {_money(price)}.".strip()


_SMALL_TALK = (
    "This car is in great condition.",
    "Would you like to take it for a test drive?",
    "What are you looking for in a car?",
    "It comes with a full warranty.",
    "What is your budget?",
    "It has {feature}.",
)
_OFFERS = (
    "I can let it go for {price}.",
    "The price is {price}.",
    "How about {price}?",
    "For you, {price}.",
    "It's yours for {price}, with {feature}.",
)


def random_policy(env: Env, rng: random.Random) -> str:
    """A random message: small talk (30%) or a price between 50% and 150% of the MSRP (70%)."""
    car = _dealer(env).car
    feature = rng.choice(FEATURES)
    if rng.random() < 0.3:
        return rng.choice(_SMALL_TALK).format(feature=feature)
    price = _money(round(car.msrp * rng.uniform(0.5, 1.5), -2))
    return rng.choice(_OFFERS).format(price=price, feature=feature)


NOISY_OPTIMAL_PROB = 0.5


def noisy_policy(env: Env, rng: random.Random) -> str:
    """LMRL-Gym's dataset mixture: ``optimal`` with probability ``NOISY_OPTIMAL_PROB``, else ``random``."""
    if rng.random() < NOISY_OPTIMAL_PROB:
        return optimal_policy(env, rng)
    return random_policy(env, rng)

"""Text navigation in a small house (LMRL-Gym's Text-Nav task): ``textnav-fo-v0`` and ``textnav-po-v0``.

Each seed generates a house: 3 to 6 rooms on a grid, joined by doors (a tree, so there is one route between
any two rooms), containers that open and close (a fridge, a wardrobe, a toolbox...) and a few objects,
lying in rooms or inside containers. The quest is "put the X in the Y, then close the Y". The agent types
free-text commands; every observation ends with the sorted list of admissible commands.

Rewards (as LMRL-Gym): 1.0 for the command that completes the quest, 0.0 for everything else. Two actions
fail the quest and end the episode with reward 0: eating the quest object, and closing a container other
than the quest's after putting the quest object in it. A command that is not admissible here follows
``spec.invalid_action`` (registered: reward 0, nothing happens, the episode goes on).

Partially observed (``textnav-po-v0``): the feedback of the last command and what the agent sees in its
room (containers, loose objects, the contents of open containers, exits and their doors), but not the
room's name nor what it carries. Fully observed (``textnav-fo-v0``) adds the location and the inventory.

Splits: every house has a canonical fingerprint of its layout (rooms, their places, doors, containers; the
same under rotations and mirror images of the plan) and a hash of it puts the layout in the train,
validation or test pool. A seed of a split draws houses until one falls in that split's pool, so no test
house layout ever appears under a train seed.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from palaestra.core.errors import EnvError, SpecError
from palaestra.core.types import Step
from palaestra.envs.base import Env, Policy

Cell = tuple[int, int]  # (row, column) of a room on the house plan; north is row - 1

# Probability that the ``noisy`` policy takes the walkthrough's command rather than a random admissible one:
# LMRL-Gym's Text-Nav data came from a walkthrough followed with probability 0.9.
NOISY_OPTIMAL_PROB = 0.9

DIRECTIONS: dict[str, Cell] = {"north": (-1, 0), "south": (1, 0), "east": (0, 1), "west": (0, -1)}

# Rooms and the containers that may stand in them (container names are unique across the whole pool).
ROOM_CONTAINERS: dict[str, tuple[str, ...]] = {
    "kitchen": ("fridge", "cupboard", "oven"),
    "bedroom": ("wardrobe", "nightstand"),
    "bathroom": ("medicine cabinet", "laundry basket"),
    "living room": ("wooden chest", "tv cabinet"),
    "study": ("desk drawer", "filing cabinet"),
    "garage": ("toolbox", "storage bin"),
    "hallway": ("shoe cabinet", "coat closet"),
    "dining room": ("sideboard",),
    "laundry room": ("washing machine", "dryer"),
    "pantry": ("bread bin", "freezer"),
    "attic": ("trunk", "cardboard box"),
    "nursery": ("toy box",),
}
EDIBLE: frozenset[str] = frozenset({"apple", "banana", "sandwich", "cookie", "carrot", "cheese", "pear"})
OBJECTS: tuple[str, ...] = (
    *sorted(EDIBLE),
    *("book", "sock", "key", "coin", "candle", "towel", "hammer", "letter", "spoon", "scarf", "toy car"),
    *("teddy bear", "pen", "watch", "glove"),
)

# Generation parameters.
_ROOMS_RANGE = (3, 6)
_OBJECTS_RANGE = (2, 4)
_P_DOOR_OPEN = 0.5
_P_CONTAINER_OPEN = 0.25
_P_OBJECT_IN_CONTAINER = 0.4
# Share (percent) of house layouts held out for each evaluation split; the rest is the train pool.
_POOL_PERCENT = {"test": 10, "validation": 10}

HELD = "<held>"  # the location of an object the agent carries
_MAX_ACTION_CHARS = 200


# --------------------------------------------------------------------------- the house


@dataclass(frozen=True)
class House:
    """A house and the initial state of an episode in it.

    Args:
        rooms: room name -> grid cell ``(row, column)``; north is the row above.
        doors: the pairs of rooms joined by a door (the rooms must be adjacent cells; the doors form a tree).
        containers: container name -> the room it stands in.
        objects: object name -> where it starts: a room name or a container name.
        open_doors: the doors (pairs as in ``doors``) that start open; the others start closed.
        open_containers: the containers that start open.
        quest_object, quest_container: the quest is to put ``quest_object`` in ``quest_container`` and close it.
        start: the room the agent starts in.
    """

    rooms: dict[str, Cell]
    doors: tuple[tuple[str, str], ...]
    containers: dict[str, str]
    objects: dict[str, str]
    open_doors: frozenset[tuple[str, str]]
    open_containers: frozenset[str]
    quest_object: str
    quest_container: str
    start: str
    exits: dict[str, dict[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        doors = tuple(_pair(a, b) for a, b in self.doors)
        object.__setattr__(self, "doors", doors)
        object.__setattr__(self, "open_doors", frozenset(_pair(a, b) for a, b in self.open_doors))
        names = [*self.rooms, *self.containers, *self.objects]
        if len(set(names)) != len(names):
            raise SpecError("room, container and object names of a house must all be different")
        exits: dict[str, dict[str, str]] = {room: {} for room in self.rooms}
        for a, b in doors:
            if a not in self.rooms or b not in self.rooms:
                raise SpecError(f"door {a!r}-{b!r} joins an unknown room")
            direction = _direction(self.rooms[a], self.rooms[b])
            if direction is None:
                raise SpecError(f"door {a!r}-{b!r}: the rooms are not on adjacent cells")
            exits[a][direction] = b
            exits[b][_OPPOSITE[direction]] = a
        object.__setattr__(self, "exits", exits)
        if len(doors) != len(self.rooms) - 1 or len(_reachable(self.start, exits)) != len(self.rooms):
            raise SpecError("the doors must join every room to the start room along exactly one route (a tree)")
        if not self.open_doors <= set(doors):
            raise SpecError("open_doors must be doors of the house")
        for container, room in self.containers.items():
            if room not in self.rooms:
                raise SpecError(f"container {container!r} stands in unknown room {room!r}")
        if not self.open_containers <= set(self.containers):
            raise SpecError("open_containers must be containers of the house")
        for obj, where in self.objects.items():
            if where not in self.rooms and where not in self.containers:
                raise SpecError(f"object {obj!r} starts in {where!r}, which is neither a room nor a container")
        if self.quest_object not in self.objects or self.quest_container not in self.containers:
            raise SpecError("the quest must name an object and a container of the house")
        if self.objects[self.quest_object] == self.quest_container:
            raise SpecError("the quest object must not start inside the quest container")

    def __deepcopy__(self, memo: dict[int, Any]) -> House:
        return self  # immutable and shared: copies of an environment need not duplicate their house

    @property
    def quest(self) -> str:
        return f"put the {self.quest_object} in the {self.quest_container}, then close the {self.quest_container}"

    def route(self, start: str, goal: str) -> list[tuple[str, str, str]]:
        """The (room, direction, next room) moves from ``start`` to ``goal`` (the only route: doors form a tree)."""
        parent: dict[str, tuple[str, str] | None] = {start: None}
        queue = deque([start])
        while queue:
            room = queue.popleft()
            for direction, nxt in sorted(self.exits[room].items()):
                if nxt not in parent:
                    parent[nxt] = (room, direction)
                    queue.append(nxt)
        moves: list[tuple[str, str, str]] = []
        room = goal
        while (link := parent[room]) is not None:
            moves.append((link[0], link[1], room))
            room = link[0]
        return moves[::-1]

    def layout_fingerprint(self) -> str:
        """A digest of the house plan (rooms, cells, doors, containers), the same for rotated or mirrored plans.

        Objects, the quest, the start and which doors are open are not part of it: two episodes with the same
        fingerprint are in the same house.
        """
        variants = []
        for transform in _SYMMETRIES:
            cells = {room: transform(cell) for room, cell in self.rooms.items()}
            top = min(r for r, _ in cells.values())
            left = min(c for _, c in cells.values())
            plan = sorted((room, (r - top, c - left)) for room, (r, c) in cells.items())
            variants.append(repr((plan, sorted(self.doors), sorted(self.containers.items()))))
        return hashlib.sha256(min(variants).encode()).hexdigest()

    def pool(self) -> str:
        """The split (``train``, ``validation`` or ``test``) whose seeds may draw this house."""
        bucket = int(self.layout_fingerprint(), 16) % 100
        if bucket < _POOL_PERCENT["test"]:
            return "test"
        if bucket < _POOL_PERCENT["test"] + _POOL_PERCENT["validation"]:
            return "validation"
        return "train"


_OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}
_SYMMETRIES = (
    lambda p: (p[0], p[1]),
    lambda p: (p[1], -p[0]),
    lambda p: (-p[0], -p[1]),
    lambda p: (-p[1], p[0]),
    lambda p: (p[0], -p[1]),
    lambda p: (-p[0], p[1]),
    lambda p: (p[1], p[0]),
    lambda p: (-p[1], -p[0]),
)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _direction(a: Cell, b: Cell) -> str | None:
    delta = (b[0] - a[0], b[1] - a[1])
    return next((d for d, v in DIRECTIONS.items() if v == delta), None)


def _reachable(start: str, exits: dict[str, dict[str, str]]) -> set[str]:
    seen, queue = {start}, deque([start])
    while queue:
        for nxt in exits.get(queue.popleft(), {}).values():
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def generate_house(rng: random.Random) -> House:
    """A random house and quest: 3-6 rooms joined as a tree, 2-7 containers, 2-4 objects."""
    while True:
        names = rng.sample(sorted(ROOM_CONTAINERS), rng.randint(*_ROOMS_RANGE))
        rooms: dict[str, Cell] = {names[0]: (0, 0)}
        doors: list[tuple[str, str]] = []
        for name in names[1:]:
            taken = set(rooms.values())
            frontier = [
                (room, (cell[0] + dr, cell[1] + dc))
                for room, cell in rooms.items()
                for dr, dc in DIRECTIONS.values()
                if (cell[0] + dr, cell[1] + dc) not in taken
            ]
            neighbour, cell = rng.choice(frontier)
            rooms[name] = cell
            doors.append(_pair(neighbour, name))
        containers: dict[str, str] = {}
        for room in names:
            pool = ROOM_CONTAINERS[room]
            for container in rng.sample(pool, rng.randint(0, min(2, len(pool)))):
                containers[container] = room
        if len(containers) < 2:  # the quest needs its container and at least one wrong one
            continue
        objects: dict[str, str] = {}
        for obj in rng.sample(OBJECTS, rng.randint(*_OBJECTS_RANGE)):
            in_container = rng.random() < _P_OBJECT_IN_CONTAINER
            objects[obj] = rng.choice(sorted(containers)) if in_container else rng.choice(names)
        quest_object = rng.choice(sorted(objects))
        quest_container = rng.choice(sorted(c for c in containers if c != objects[quest_object]))
        return House(
            rooms=rooms,
            doors=tuple(doors),
            containers=containers,
            objects=objects,
            open_doors=frozenset(d for d in doors if rng.random() < _P_DOOR_OPEN),
            open_containers=frozenset(c for c in sorted(containers) if rng.random() < _P_CONTAINER_OPEN),
            quest_object=quest_object,
            quest_container=quest_container,
            start=rng.choice(names),
        )


def house_for_seed(seed: int | None, split: str | None = None) -> House:
    """The house of ``seed``: the first generated house whose layout belongs to ``split`` (any when None)."""
    rng = random.Random(seed)
    while True:
        house = generate_house(rng)
        if split is None or house.pool() == split:
            return house


# --------------------------------------------------------------------------- commands


_ARTICLES = {"the", "a", "an"}
_SYNONYMS = {"into": "in", "inside": "in", "get": "take", "grab": "take"}
_DOOR_RE = re.compile(r"(open|close) door (?:to )?(north|south|east|west)")


def normalize_command(text: str) -> str:
    """The canonical form of a command: ``"Open the Fridge."`` -> ``"open fridge"``.

    Lower case, letters and digits only, articles dropped, *into*/*inside* -> *in*, *get*/*grab* -> *take*.
    Also: a bare direction is ``go <direction>``, ``pick up X`` is ``take X``, and ``open door to the north``
    is ``open north door``.
    """
    words = [w for w in re.sub(r"[^a-z0-9]+", " ", text.lower()).split() if w not in _ARTICLES]
    words = [_SYNONYMS.get(w, w) for w in words]
    if words[:2] == ["pick", "up"]:
        words = ["take", *words[2:]]
    if len(words) == 1 and words[0] in DIRECTIONS:
        words = ["go", words[0]]
    if words[:2] == ["go", "to"] and len(words) == 3 and words[2] in DIRECTIONS:
        words = ["go", words[2]]
    joined = " ".join(words)
    match = _DOOR_RE.fullmatch(joined)
    return f"{match[1]} {match[2]} door" if match else joined


def _with_article(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name


def _listing(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _shown(action: str, limit: int = 40) -> str:
    """A short, printable-ASCII rendering of an action for feedback (never echo huge or odd text)."""
    text = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in action[:limit])
    return text + ("..." if len(action) > limit else "")


# --------------------------------------------------------------------------- the environment


@dataclass
class _State:
    room: str
    open_doors: set[tuple[str, str]]
    open_containers: set[str]
    where: dict[str, str]  # object -> room name, container name or HELD; eaten objects are removed
    quest_object_put: bool = False  # the agent put the quest object where it now is (a container)


class TextNavEnv(Env):
    """Carry an object to a container in a generated house and close it. ``observability``: full or partial.

    Args:
        observability: ``"full"`` (location and inventory are stated every turn) or ``"partial"``.
    """

    action_tokens = 24  # the longest commands ("put the teddy bear into the washing machine") are ~10 tokens

    def __init__(self, observability: Literal["full", "partial"] = "full") -> None:
        if observability not in ("full", "partial"):
            raise SpecError(f"observability must be 'full' or 'partial', not {observability!r}")
        self.observability = observability
        self._house: House | None = None
        self._state = _State("", set(), set(), {})
        self._turns = 0
        self._done = False

    # ------------------------------------------------------------------ the agent-facing text

    @property
    def instructions(self) -> str:  # type: ignore[override]  # reads spec, set after __init__
        spec = getattr(self, "spec", None)
        limit = f"You have at most {spec.max_turns} commands. " if spec else ""
        penalty = spec.invalid_action.penalty if spec else 0.0
        ends = spec is not None and spec.invalid_action.mode == "terminate"
        seeing = (
            "Each turn you are told where you are, what you carry, what you see in the room and which commands "
            "are admissible. "
            if self.observability == "full"
            else "Each turn you are told what happened and what you see in the room you are in (not its name, "
            "nor what you carry: remember it, or use 'inventory'), and which commands are admissible. "
        )
        return (
            "You are in a house of rooms joined by doors, with containers that open and close and objects you "
            "can carry. Your task is given at the start: put an object in a container, then close the "
            "container. "
            + seeing
            + "Reply with exactly one admissible command and nothing else, for example: go north, open north "
            "door, open fridge, take apple, put apple in fridge, close fridge. Command forms: go <direction>, "
            "open/close <direction> door, open/close <container>, take <object>, drop <object>, put <object> in "
            "<container>, eat <object>, inventory. You can only go through open doors and only take from or "
            "put into open containers. Completing the task gives reward 1 and ends the game; every other "
            "command gives 0. Careful: eating the object of your task, or closing a wrong container after "
            "putting the object of your task in it, fails the task and ends the game. "
            + limit
            + f"A command that is not admissible gives {penalty:g}"
            + (" and ends the game." if ends else " and does nothing.")
        )

    def _describe_room(self) -> str:
        house, state = self._require_house(), self._state
        parts = []
        containers = sorted(c for c, room in house.containers.items() if room == state.room)
        loose = sorted(o for o, where in state.where.items() if where == state.room)
        seen = []
        for container in containers:
            if container in state.open_containers:
                inside = sorted(o for o, where in state.where.items() if where == container)
                contents = _listing([_with_article(o) for o in inside]) if inside else "nothing"
                seen.append(f"an open {container} (containing {contents})")
            else:
                seen.append(f"a closed {container}")
        seen += [_with_article(o) for o in loose]
        parts.append(f"You see {_listing(seen)}." if seen else "The room is empty.")
        exits = []
        for direction in DIRECTIONS:
            if direction in house.exits[state.room]:
                nxt = house.exits[state.room][direction]
                door = "an open" if _pair(state.room, nxt) in state.open_doors else "a closed"
                exits.append(f"{door} door to the {direction}")
        parts.append(f"There is {_listing(exits)}.")
        return " ".join(parts)

    def _inventory_text(self) -> str:
        held = sorted(o for o, where in self._state.where.items() if where == HELD)
        return _listing([_with_article(o) for o in held]) if held else "nothing"

    def _observation(self, feedback: str) -> str:
        lines = [feedback] if feedback else []
        if self.observability == "full":
            lines.append(f"Location: {self._state.room}. Inventory: {self._inventory_text()}.")
        lines.append(self._describe_room())
        lines.append("Admissible commands: " + ", ".join(self.admissible_commands()) + ".")
        return "\n".join(lines)

    # ------------------------------------------------------------------ rules

    def admissible_commands(self) -> list[str]:
        """The commands that are valid now, sorted."""
        house, state = self._require_house(), self._state
        commands = ["inventory"]
        for direction, nxt in house.exits[state.room].items():
            if _pair(state.room, nxt) in state.open_doors:
                commands += [f"go {direction}", f"close {direction} door"]
            else:
                commands.append(f"open {direction} door")
        here = [c for c, room in house.containers.items() if room == state.room]
        held = [o for o, where in state.where.items() if where == HELD]
        for container in here:
            if container in state.open_containers:
                commands.append(f"close {container}")
                commands += [f"put {o} in {container}" for o in held]
            else:
                commands.append(f"open {container}")
        visible = {state.room} | {c for c in here if c in state.open_containers}
        commands += [f"take {o}" for o, where in state.where.items() if where in visible]
        commands += [f"drop {o}" for o in held]
        commands += [f"eat {o}" for o in held if o in EDIBLE]
        return sorted(commands)

    def _apply(self, command: str) -> tuple[str, bool | None]:
        """Carry out an admissible command: (feedback, True if the quest is done / False if failed / None)."""
        house, state = self._require_house(), self._state
        verb, _, rest = command.partition(" ")
        if verb == "inventory":
            return f"You are carrying {self._inventory_text()}.", None
        if verb == "go":
            state.room = house.exits[state.room][rest]
            return f"You go {rest}.", None
        if verb in ("open", "close") and rest.endswith(" door") and rest[: -len(" door")] in DIRECTIONS:
            door = _pair(state.room, house.exits[state.room][rest[: -len(" door")]])
            (state.open_doors.add if verb == "open" else state.open_doors.discard)(door)
            return f"You {verb} the {rest}.", None
        if verb == "open":
            state.open_containers.add(rest)
            inside = sorted(o for o, where in state.where.items() if where == rest)
            contents = _listing([_with_article(o) for o in inside]) if inside else "nothing"
            return f"You open the {rest}. Inside it you see {contents}.", None
        if verb == "close":
            state.open_containers.discard(rest)
            text = f"You close the {rest}."
            if state.where.get(house.quest_object) == rest:
                if rest == house.quest_container:
                    return text + " You have completed the task!", True
                if state.quest_object_put:
                    return (
                        text + f" The {house.quest_object} was meant to go in the {house.quest_container}: "
                        "you have failed the task.",
                        False,
                    )
            return text, None
        if verb == "take":
            source = state.where[rest]
            state.where[rest] = HELD
            if rest == house.quest_object:
                state.quest_object_put = False
            return f"You take the {rest}" + (f" from the {source}." if source in house.containers else "."), None
        if verb == "drop":
            state.where[rest] = state.room
            return f"You drop the {rest}.", None
        if verb == "put":
            obj, _, container = rest.partition(" in ")
            state.where[obj] = container
            if obj == house.quest_object:
                state.quest_object_put = True
            return f"You put the {obj} in the {container}.", None
        if verb == "eat":
            del state.where[rest]
            if rest == house.quest_object:
                return f"You eat the {rest}. It was needed for your task: you have failed the task.", False
            return f"You eat the {rest}. Delicious.", None
        raise EnvError(f"TextNavEnv cannot apply {command!r}; this is a bug in textnav.py")  # pragma: no cover

    # ------------------------------------------------------------------ the environment contract

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        """Start an episode. ``options={"house": House(...)}`` plays a given house instead of the seed's."""
        options = dict(options or {})
        house = options.pop("house", None)
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}; TextNavEnv accepts only 'house'")
        if house is None:
            house = house_for_seed(seed, self._split_of(seed))
        elif not isinstance(house, House):
            raise EnvError(f"reset option 'house' must be a palaestra.envs.textnav.House, not {type(house).__name__}")
        self._house = house
        self._state = _State(
            room=house.start,
            open_doors=set(house.open_doors),
            open_containers=set(house.open_containers),
            where=dict(house.objects),
        )
        self._turns, self._done = 0, False
        text = self._observation(f"Your task: {house.quest}.")
        return Step(text, 0.0, info={"invalid_action": False, "admissible_commands": self.admissible_commands()})

    async def step(self, action: str) -> Step:
        self._require_house()
        if self._done:
            raise EnvError("the episode has ended; call reset() before stepping again")
        spec = self._require_spec()
        self._turns += 1
        admissible = {normalize_command(c): c for c in self.admissible_commands()}
        valid = isinstance(action, str) and len(action) <= _MAX_ACTION_CHARS
        command = admissible.get(normalize_command(action)) if valid else None
        info: dict[str, Any] = {"invalid_action": command is None}
        outcome: bool | None = None
        if command is None:
            reward = spec.invalid_action.penalty
            shown = _shown(action) if isinstance(action, str) else type(action).__name__
            feedback = f"'{shown}' is not an admissible command. Reply with one of the admissible commands."
            terminated = spec.invalid_action.mode == "terminate"
        else:
            feedback, outcome = self._apply(command)
            terminated = outcome is not None
            reward = 1.0 if outcome else 0.0
        truncated = not terminated and self._turns >= spec.max_turns
        if terminated:
            text = feedback
        else:
            text = self._observation(feedback)
            info["admissible_commands"] = self.admissible_commands()
        if truncated:
            text += "\nYou have used all your commands without completing the task."
        if terminated or truncated:
            self._done = True
            info["success"] = outcome is True
        return Step(text, float(reward), terminated, truncated, info)

    def _require_house(self) -> House:
        if self._house is None:
            raise EnvError("call reset() before step(): the episode has not started")
        return self._house

    # ------------------------------------------------------------------ state for scripted policies

    @property
    def house(self) -> House:
        """The house of this episode (scripted policies may read all of it; the agent sees one room)."""
        return self._require_house()

    @property
    def room(self) -> str:
        """The room the agent is in."""
        self._require_house()
        return self._state.room

    @property
    def locations(self) -> dict[str, str]:
        """Where each remaining object is: a room, a container or ``HELD``."""
        self._require_house()
        return dict(self._state.where)

    def walkthrough(self) -> list[str]:
        """The shortest command sequence that completes the quest from the current state."""
        house, state = self._require_house(), self._state
        obj, target = house.quest_object, house.quest_container
        if obj not in state.where:
            raise EnvError(f"the {obj} has been eaten: the quest cannot be completed")
        commands: list[str] = []
        room, doors = state.room, set(state.open_doors)

        def walk(goal: str) -> None:
            nonlocal room
            for here, direction, nxt in house.route(room, goal):
                if _pair(here, nxt) not in doors:
                    commands.append(f"open {direction} door")
                    doors.add(_pair(here, nxt))
                commands.append(f"go {direction}")
            room = goal

        where = state.where[obj]
        if where == target:  # already in the quest container, which is open (closing it would have ended the game)
            walk(house.containers[target])
            return [*commands, f"close {target}"]
        if where != HELD:
            if where in house.containers:
                walk(house.containers[where])
                if where not in state.open_containers:
                    commands.append(f"open {where}")
            else:
                walk(where)
            commands.append(f"take {obj}")
        walk(house.containers[target])
        if target not in state.open_containers:
            commands.append(f"open {target}")
        return [*commands, f"put {obj} in {target}", f"close {target}"]

    def scripted_policies(self) -> dict[str, Policy]:
        return {"optimal": optimal_policy, "random": random_policy, "noisy": noisy_policy, "walkthrough": noisy_policy}


def _textnav(env: Env) -> TextNavEnv:
    if not isinstance(env, TextNavEnv):
        raise EnvError(f"Text-Nav policies drive TextNavEnv, not {type(env).__name__}")
    return env


def optimal_policy(env: Env, rng: random.Random) -> str:
    """The next command of the shortest walkthrough (exact: the house's doors form a tree, so routes are unique)."""
    return _textnav(env).walkthrough()[0]


def random_policy(env: Env, rng: random.Random) -> str:
    """One admissible command, uniformly at random."""
    return rng.choice(_textnav(env).admissible_commands())


def noisy_policy(env: Env, rng: random.Random) -> str:
    """LMRL-Gym's walkthrough data policy: ``optimal`` with probability ``NOISY_OPTIMAL_PROB``, else ``random``."""
    if rng.random() < NOISY_OPTIMAL_PROB:
        return optimal_policy(env, rng)
    return random_policy(env, rng)

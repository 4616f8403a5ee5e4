"""Named suites of environments: ``palaestra eval --suite lmrl`` plays every task of a suite."""

from __future__ import annotations

from palaestra.core.errors import UnknownSpecError

SUITES: dict[str, tuple[str, ...]] = {
    # LMRL-Gym's eight tasks (Abdulhai et al.), both observability variants of the maze and Text-Nav.
    "lmrl": (
        "maze-fo-v0",
        "maze-po-v0",
        "textnav-fo-v0",
        "textnav-po-v0",
        "wordle-v0",
        "chess-v0",
        "endgames-v0",
        "twenty-questions-v0",
        "guess-my-city-v0",
        "car-dealer-v0",
    ),
}


def suite(name: str) -> tuple[str, ...]:
    """The environment ids of suite ``name``; an error naming the suites when it is unknown."""
    try:
        return SUITES[name]
    except KeyError:
        raise UnknownSpecError("suite", name, SUITES) from None


def suite_of(env_ids: set[str] | frozenset[str]) -> str | None:
    """The name of the suite whose tasks are exactly ``env_ids``, if any."""
    return next((name for name, ids in SUITES.items() if set(ids) == set(env_ids)), None)

"""Exception classes: each says what was wrong and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PalaestraError(Exception):
    """Base class of every error the package raises on purpose."""


class UnknownSpecError(PalaestraError, KeyError):
    """A spec string (environment id, agent, model) names nothing known."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.choices = sorted(choices)
        close = difflib.get_close_matches(name, self.choices, n=3, cutoff=0.5)
        parts = [f"unknown {kind} {name!r}."]
        if close:
            parts.append(f"Did you mean {', '.join(repr(c) for c in close)}?")
        parts.append(f"Valid choices: {', '.join(self.choices) or '(none registered)'}.")
        if hint:
            parts.append(hint)
        super().__init__(" ".join(parts))

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class SpecError(PalaestraError, ValueError):
    """A spec string or configuration value is malformed."""


class MissingDependencyError(PalaestraError, ImportError):
    """An optional dependency is not installed; the message names the install command."""

    def __init__(self, what: str, install: str) -> None:
        super().__init__(f"{what} needs an optional dependency that is not installed. Fix: {install}")


class ModelError(PalaestraError):
    """A model backend failed for an infrastructure reason (timeout, server error, crash).

    The runner stores the episode with status ``error``; it is left out of scores and can be re-run.
    """


class EnvError(PalaestraError):
    """An environment was used against its contract (e.g. ``step`` before ``reset``)."""


class StoreError(PalaestraError):
    """The trajectory store cannot be used as asked; the message says why and how to fix it."""

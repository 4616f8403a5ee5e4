"""Tests of the built-in registrations: ids, specs, splits and unknown-id errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from palaestra.core.errors import UnknownSpecError
from palaestra.core.types import EnvSpec
from palaestra.envs import make, registered, spec


def test_builtin_ids_are_registered_with_complete_specs() -> None:
    specs = registered()
    assert {"maze-fo-v0", "maze-po-v0", "wordle-v0"} <= set(specs)
    for env_id in ("maze-fo-v0", "maze-po-v0", "wordle-v0"):
        s = specs[env_id]
        assert s.normalization is not None and s.normalization.source.startswith("scripts/normalization.py")
        assert s.invalid_action.mode == "penalty"
        assert s.splits == {"train": (0, 10_000), "validation": (10_000, 11_000), "test": (11_000, 12_000)}
        assert EnvSpec.from_json(s.to_json()) == s
    assert spec("maze-fo-v0").invalid_action.penalty == -4.0 and spec("maze-fo-v0").max_turns == 50
    assert spec("wordle-v0").invalid_action.penalty == -1.0 and spec("wordle-v0").max_turns == 6


def test_importing_palaestra_does_not_import_env_modules() -> None:
    code = (
        "import sys, palaestra.envs; "
        "print(any(m in sys.modules for m in ('palaestra.envs.maze', 'palaestra.envs.wordle', 'numpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("maze-fo-v1", "maze-fo-v0"),
        ("mazefo-v0", "maze-fo-v0"),
        ("wordle-v1", "wordle-v0"),
        ("maze-po", "maze-po-v0"),
    ],
)
def test_unknown_id_suggests_the_close_match(typo: str, meant: str) -> None:
    with pytest.raises(UnknownSpecError, match=f"Did you mean .*'{meant}'"):
        make(typo)


def test_make_records_overrides_in_the_spec() -> None:
    env = make("maze-po-v0", max_turns=10, layout="pillars")
    assert env.spec.max_turns == 10
    assert env.spec.kwargs == {"observability": "partial", "layout": "pillars"}
    assert spec("maze-po-v0").max_turns == 50  # the registered spec is untouched

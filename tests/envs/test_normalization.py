"""The registered normalisation constants are exactly what scripts/normalization.py computes."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest

from palaestra.envs import spec

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "normalization.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    module_spec = importlib.util.spec_from_file_location("palaestra_normalization_script", SCRIPT)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # dataclasses look their module up while being defined
    module_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("env_id", ["maze-fo-v0", "maze-po-v0", "wordle-v0"])
def test_registered_constants_are_reproduced_by_the_script(script: ModuleType, env_id: str) -> None:
    norm = spec(env_id).normalization
    assert norm is not None
    args = shlex.split(norm.source)
    assert args[:2] == ["scripts/normalization.py", env_id] and args[2] == "--episodes"
    computed = script.normalization(env_id, int(args[3]))
    assert computed == {"min": norm.min, "avg": norm.avg, "max": norm.max}


@pytest.mark.parametrize("env_id", ["maze-fo-v0", "maze-po-v0", "wordle-v0"])
def test_constants_are_ordered_and_map_to_0_50_100(env_id: str) -> None:
    norm = spec(env_id).normalization
    assert norm is not None
    assert norm.min < norm.avg < norm.max
    assert norm.score(norm.min) == 0.0 and norm.score(norm.avg) == 50.0 and norm.score(norm.max) == 100.0

import json

import pytest

from palaestra.core import EnvSpec, InvalidActionRule, Normalization, SpecError, parse_env_id
from palaestra.envs import registered


def test_parse_env_id():
    assert parse_env_id("maze-fo-v0") == ("maze-fo", 0)
    assert parse_env_id("wordle-v12") == ("wordle", 12)
    for bad in ("maze", "maze-fo", "Maze-v0", "maze-vx"):
        with pytest.raises(SpecError, match="<name>-v<version>"):
            parse_env_id(bad)


def test_spec_json_round_trip_is_strict_json_even_when_unbounded():
    spec = EnvSpec(
        id="x-v3",
        entry_point="m:C",
        invalid_action=InvalidActionRule("terminate", -1.0),
        normalization=Normalization(-3.0, -1.0, 0.0, source="test"),
        kwargs={"size": 4},
    )
    text = spec.to_json()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert EnvSpec.from_json(text) == spec
    assert spec.to_dict()["version"] == 3


@pytest.mark.parametrize("env_spec", list(registered().values()), ids=lambda s: s.id)
def test_builtin_specs_round_trip(env_spec):
    assert EnvSpec.from_json(env_spec.to_json()) == env_spec


def test_split_seeds():
    spec = EnvSpec(
        id="x-v0",
        entry_point="m:C",
        invalid_action=InvalidActionRule("penalty", 0.0),
        splits={"train": (0, 10), "validation": (10, 15), "test": (15, 20)},
    )
    assert spec.seeds("test", 3) == [15, 16, 17]
    assert spec.seeds("test", 2, offset=3) == [18, 19]
    assert spec.seeds("validation") == [10, 11, 12, 13, 14]
    with pytest.raises(SpecError, match="fewer episodes"):
        spec.seeds("test", 6)
    with pytest.raises(SpecError, match="unknown split"):
        spec.seeds("dev", 1)


def test_invalid_action_rule_mode_is_checked():
    with pytest.raises(SpecError):
        InvalidActionRule("ignore", 0.0)  # type: ignore[arg-type]

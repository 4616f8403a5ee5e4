import pytest

from palaestra.agents import PromptConfig, extract_action
from palaestra.core.errors import SpecError


@pytest.mark.parametrize(
    ("reply", "action"),
    [
        ("move up", "move up"),
        ("  move left.\nbecause the goal is left", "move left."),
        ("I think the best move is down.\nAction: move down", "move down"),
        ("action: `crane`", "crane"),
        ('"slate"', "slate"),
        ("\n\n  \n", None),
        ("", None),
    ],
)
def test_extract_action(reply, action):
    assert extract_action(reply) == action


def test_prompt_config_parses_options():
    config = PromptConfig.parse("temperature=0.7,history=3,max_tokens=16")
    assert (config.temperature, config.history, config.max_tokens) == (0.7, 3, 16)
    assert PromptConfig.parse("") == PromptConfig()


@pytest.mark.parametrize("bad", ["temp=0.7", "history", "history=three"])
def test_prompt_config_rejects_bad_options(bad):
    with pytest.raises(SpecError, match="prompt"):
        PromptConfig.parse(bad)

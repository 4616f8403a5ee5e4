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


async def test_the_cot_template_asks_for_reasoning_and_the_action_line_is_taken():
    from palaestra.agents import make_agent
    from palaestra.envs import make
    from palaestra.models.scripted import ScriptedModel

    env = make("maze-fo-v0")
    model = ScriptedModel(["The goal is above me, so I go up.\nAction: move up"], honor_max_tokens=False)
    agent = make_agent("prompt:template=cot,shots=0", env, model)
    step = await env.reset(seed=11000)
    system = agent.messages(env, [], step.observation)[0].content
    assert system.startswith(env.instructions) and system.endswith('final line of the form "Action: <action>".')
    action = await agent.act(env, [], step.observation)
    assert action.parsed and action.text == "move up" and action.raw.startswith("The goal is above me")

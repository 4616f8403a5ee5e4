"""Agents: the protocol, the prompted model agent and scripted agents, built from spec strings."""

from __future__ import annotations

from palaestra.agents.base import Agent
from palaestra.agents.prompt import PromptAgent, PromptConfig, extract_action
from palaestra.agents.scripted import ScriptedAgent
from palaestra.core.errors import SpecError, UnknownSpecError
from palaestra.envs.base import Env
from palaestra.models.base import Model

MODEL_AGENTS = ("prompt",)


def agent_choices(env: Env) -> list[str]:
    """Agent specs valid for ``env``: the model agents, the team topologies, and its scripted policies."""
    from palaestra.teams.spec import TOPOLOGY_NAMES

    return [*MODEL_AGENTS, *TOPOLOGY_NAMES, *env.scripted_policies()]


def needs_model(spec: str) -> bool:
    from palaestra.teams.spec import is_team_spec  # teams are built on agents: imported when needed

    name = spec.partition(":")[0]
    return name in MODEL_AGENTS or name == "design" or is_team_spec(spec)


def make_agent(spec: str, env: Env, model: Model | None = None, *, seed: int = 0) -> Agent:
    """Build the agent named by ``spec`` for ``env``.

    ``prompt`` (options: ``prompt:temperature=0.7,history=4,max_tokens=32,template=NAME``) needs a model;
    a team topology (``dylan:4``, ``independent:3/prompt:temperature=0.7``; see ``palaestra.teams``) needs
    one too; so does ``design:<hash>`` or ``design:@FILE.json`` (an agent design, ``palaestra.search.design``);
    any other name is one of the environment's scripted policies (``optimal``, ``random``...).
    """
    from palaestra.teams.spec import is_team_spec

    if is_team_spec(spec):
        from palaestra.teams import make_team

        return make_team(spec, env, model, seed=seed)
    name, _, options = spec.partition(":")
    if name == "prompt":
        if model is None:
            raise SpecError("the 'prompt' agent needs a model: pass --model (e.g. --model smollm2-135m)")
        return PromptAgent(model, PromptConfig.parse(options), seed=seed, spec=spec)
    if name == "design":
        from palaestra.search.design import make_design_agent  # search sits above agents: imported when needed

        return make_design_agent(options, model, seed=seed, spec=spec.strip())
    if name in env.scripted_policies() and not options:
        return ScriptedAgent(name, seed=seed)
    raise UnknownSpecError(f"agent for {env.spec.id}", spec, agent_choices(env))


__all__ = [
    "Agent",
    "PromptAgent",
    "PromptConfig",
    "ScriptedAgent",
    "agent_choices",
    "extract_action",
    "make_agent",
    "needs_model",
]

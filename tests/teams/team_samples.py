"""Samples for team tests: a scripted model that answers by role, member and round, read from the request."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from palaestra.core.types import ChatRequest
from palaestra.envs.reasoning import Item
from palaestra.models.scripted import ScriptedModel

# "What is 6 + 2?": the answer is 8. Members' replies in the tests are "Answer: <n>".
ITEM = Item("arithmetic", "hand", "What is 6 + 2?", "8", 1, "hand|6,2")


def role_of(request: ChatRequest) -> tuple[str, int]:
    """(who is asked, round): ``m<k>``, ``orchestrator`` or ``ranker``; the round from "Round <n>." (else 1)."""
    system = request.messages[0].content
    user = request.messages[-1].content
    member = re.search(r"You are (m\d+),", system)
    who = member.group(1) if member else ("orchestrator" if "You lead a team" in system else "ranker")
    found = re.search(r"Round (\d+)\.", user)
    return who, int(found.group(1)) if found else 1


Table = Mapping[tuple[str, int], str] | Callable[[str, int, ChatRequest], str]


def team_model(table: Table) -> ScriptedModel:
    """A model replying from ``{(member, round): reply}`` (a missing round takes the member's latest earlier
    one) or from a function ``(who, round, request) -> reply``."""

    def reply(request: ChatRequest) -> str:
        who, number = role_of(request)
        if callable(table):
            return table(who, number, request)
        for r in range(number, 0, -1):
            if (who, r) in table:
                return table[(who, r)]
        raise AssertionError(f"no scripted reply for {who} in round {number}")

    return ScriptedModel(reply, spec="scripted:team", honor_max_tokens=False)

"""``single``: one member answers alone, the baseline every other topology is measured against."""

from __future__ import annotations

from palaestra.teams.base import Team, Transcript


class SingleTeam(Team):
    """One model call per action, recorded with the same ``meta`` as the other topologies."""

    topology = "single"
    default_members = 1
    min_members = 1
    max_members = 1
    max_rounds = 1

    async def decide(self, transcript: Transcript) -> str | None:
        (reply,) = await transcript.ask(1, self.first_prompts(transcript, self.members), to="env")
        return reply.answer

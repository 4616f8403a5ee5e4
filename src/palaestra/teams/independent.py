"""``independent``: every member answers alone and the answers are combined by majority vote.

"Towards a Science of Scaling Agent Systems" calls this the Independent architecture (agents answer in
parallel, no communication, results aggregated) and reports that it amplifies errors 17.2x relative to a
single agent: there is nobody to catch a shared mistake. With ``rounds=k`` each member answers ``k`` times
(at temperature > 0, self-consistency samples) and every answer votes.
"""

from __future__ import annotations

from palaestra.teams.base import Team, Transcript, vote


class IndependentTeam(Team):
    """Members answer without seeing each other; the most common answer wins (ties: the first given)."""

    topology = "independent"
    default_members = 3

    async def decide(self, transcript: Transcript) -> str | None:
        answers: list[str | None] = []
        for round in range(1, self.config.rounds + 1):
            replies = await transcript.ask(round, self.first_prompts(transcript, self.members), to="team")
            answers += [reply.answer for reply in replies]
        return vote(answers)

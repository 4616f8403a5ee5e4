"""``decentralized``: multi-agent debate. Members answer, then over rounds each sees the others' previous
answers and revises its own; the last round's answers are combined by majority vote.

This is the Decentralized architecture of "Towards a Science of Scaling Agent Systems" (peers exchange
views over rounds), in the form of Du et al.'s debate ("Improving Factuality and Reasoning in Language
Models through Multiagent Debate", 2023: 3 agents, 2 rounds of revision). The debate ends early when every
member gives the same answer; otherwise it runs to its round limit.
"""

from __future__ import annotations

from palaestra.teams.base import Team, Transcript, agreement, render, vote


class DecentralizedTeam(Team):
    """Debate: answer, read the others, revise; stop when unanimous or at ``rounds``; final by vote."""

    topology = "decentralized"
    default_members = 3
    default_rounds = 3

    async def decide(self, transcript: Transcript) -> str | None:
        replies = await transcript.ask(1, self.first_prompts(transcript, self.members))
        for round in range(2, self.config.rounds + 1):
            if agreement([r.answer for r in replies]) == 1.0:
                break  # unanimous: nothing left to debate
            prompts = [
                (
                    reply.member,
                    render(
                        "revise",
                        observation=transcript.observation,
                        round=round,
                        others=[r for r in replies if r.member != reply.member],
                        own=reply.answer,
                    ),
                )
                for reply in replies
            ]
            replies = await transcript.ask(round, prompts)
        return vote([r.answer for r in replies])

"""``centralized``: an orchestrator assigns work to workers and integrates their answers (Magentic-One style).

The Centralized architecture of "Towards a Science of Scaling Agent Systems" (reported error amplification
4.4x relative to a single agent, against 17.2x for independent agents: the orchestrator catches some errors),
with the orchestrator of Magentic-One (Fourney et al., 2024):

- a **task ledger** (facts, guesses, plan), written first and rewritten on a re-plan;
- round 1: every worker answers the task under that plan;
- each later round, a **progress ledger**: is the task done (then the orchestrator's final answer ends the
  episode's decision), is progress being made, who acts next and with what instruction; that worker answers;
- a **stall** is a round whose progress ledger says no progress, or cannot be read; progress takes one
  stall off the count (as Magentic-One does), and after ``stalls`` (3) stalls the orchestrator re-plans
  (a new task ledger that lists what was tried) and the count starts again;
- at the round limit, the workers' latest answers are combined by majority vote.

Malformed orchestrator output never stops the team: an unreadable task ledger keeps its text as the plan;
an unreadable progress ledger counts as a stall, the next worker is taken in turn, with the plain
instruction to solve the task.
"""

from __future__ import annotations

import re
from typing import Any

from palaestra.agents.prompt import extract_action
from palaestra.core.types import ChatRequest
from palaestra.teams.base import Team, Transcript, render, vote

_FIELD = re.compile(
    r"^[\s\-*#>]*(facts|guesses|plan|done|progress|next|instruction|final)\W*?\s*[:=]\s*(.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_YES = ("yes", "true", "y")
_NO = ("no", "false", "n")
DEFAULT_INSTRUCTION = "Solve the task."


def ledger_fields(text: str) -> dict[str, str]:
    """``Key: value`` lines of an orchestrator reply (the first of each key), keys in lower case."""
    fields: dict[str, str] = {}
    for match in _FIELD.finditer(text):
        fields.setdefault(match.group(1).lower(), match.group(2).strip())
    return fields


def parse_task_ledger(text: str) -> dict[str, Any]:
    fields = ledger_fields(text)
    if not any(k in fields for k in ("facts", "guesses", "plan")):
        return {"facts": "", "guesses": "", "plan": " ".join(text.split())[:500], "malformed": True}
    return {k: fields.get(k, "") for k in ("facts", "guesses", "plan")} | {"malformed": False}


def _yes_no(value: str | None) -> bool | None:
    word = re.split(r"\W+", value.strip().lower())[0] if value and value.strip() else ""
    return True if word in _YES else False if word in _NO else None


def parse_progress_ledger(text: str, workers: tuple[str, ...]) -> dict[str, Any]:
    """The progress ledger's fields; ``next`` is a worker name (``m2``, ``worker 2`` or ``2``) or None."""
    fields = ledger_fields(text)
    nxt: str | None = None
    if "next" in fields:
        value = fields["next"].lower()
        named = [w for w in workers if re.search(rf"\b{w}\b", value)]
        numbers = [int(n) for n in re.findall(r"\d+", value)]
        if named:
            nxt = named[0]
        elif numbers and 1 <= numbers[0] <= len(workers):
            nxt = workers[numbers[0] - 1]
    ledger = {
        "done": _yes_no(fields.get("done")),
        "progress": _yes_no(fields.get("progress")),
        "next": nxt,
        "instruction": fields.get("instruction") or None,
        "final": extract_action(fields["final"]) if fields.get("final") else None,
    }
    ledger["malformed"] = ledger["done"] is None and ledger["progress"] is None and nxt is None
    return ledger


class CentralizedTeam(Team):
    """An orchestrator (task and progress ledgers, re-plan after ``stalls`` stalls) and ``members`` workers."""

    topology = "centralized"
    default_members = 3
    default_rounds = 5
    min_members = 1
    options = ("stalls", "planner_tokens")

    async def decide(self, transcript: Transcript) -> str | None:
        ledger = await self.plan(transcript, 1, tried=[])
        first = render(
            "worker", observation=transcript.observation, plan=ledger["plan"], instruction=DEFAULT_INSTRUCTION
        )
        replies = await transcript.ask(1, [(m, first) for m in self.members], to="orchestrator")
        latest = {r.member: r.answer for r in replies}
        stalls, replans, log = 0, 0, []
        for number in range(2, self.config.rounds + 1):
            progress = await self.progress(transcript, number, ledger, latest)
            log.append({"round": number, **progress})
            if progress["done"]:
                final = progress["final"] or vote(list(latest.values()))
                if final is not None:
                    transcript.extra.update(progress=log, replans=replans, ended="done")
                    return final
            stalls = max(0, stalls - 1) if progress["progress"] else stalls + 1
            if stalls >= self.config.stalls:
                tried = list(dict.fromkeys(a for a in latest.values() if a is not None))
                ledger = await self.plan(transcript, number, tried=tried)
                replans, stalls = replans + 1, 0
            worker = progress["next"] or self.members[(number - 2) % len(self.members)]
            instruction = progress["instruction"] or DEFAULT_INSTRUCTION
            transcript.say(number, "orchestrator", worker, instruction)
            user = render("worker", observation=transcript.observation, plan=ledger["plan"], instruction=instruction)
            (reply,) = await transcript.ask(number, [(worker, user)], to="orchestrator")
            latest[worker] = reply.answer
        transcript.extra.update(progress=log, replans=replans, ended="round limit")
        return vote(list(latest.values()))

    async def _orchestrate(self, transcript: Transcript, number: int, user: str) -> str:
        system = transcript.system("orchestrator", role="orchestrator")
        sampling = transcript.sampling(0, number, tokens=self.config.planner_tokens)
        (completion,) = await transcript.generate([ChatRequest(transcript.plain(system, user), sampling)])
        transcript.mark(number)
        return completion.text

    async def plan(self, transcript: Transcript, number: int, *, tried: list[str]) -> dict[str, Any]:
        """Write (or rewrite, after stalls) the task ledger; it is sent to every worker."""
        text = await self._orchestrate(
            transcript, number, render("plan", observation=transcript.observation, tried=tried)
        )
        transcript.say(number, "orchestrator", "all", text)
        ledger = parse_task_ledger(text)
        transcript.extra.setdefault("ledgers", []).append({"round": number, **ledger})
        return ledger

    async def progress(
        self, transcript: Transcript, number: int, ledger: dict[str, Any], latest: dict[str, str | None]
    ) -> dict[str, Any]:
        user = render(
            "progress",
            observation=transcript.observation,
            ledger=ledger,
            round=number,
            answers=latest,
            workers=self.members,
        )
        text = await self._orchestrate(transcript, number, user)
        transcript.say(number, "orchestrator", "orchestrator", text)  # the orchestrator's own ledger
        return parse_progress_ledger(text, self.members)

"""``meta-agent``: ADAS's Meta Agent Search, with the generated code run only in the sandbox.

ADAS (Hu et al., "Automated Design of Agentic Systems"; ../shared/reference/OPTIMIZATION.md): a meta agent, a
strong model, is shown the archive of agents found so far with their scores, writes a new agent's code,
reflects on it twice, and gets up to 3 tries to fix errors; the new agent is evaluated and added to the
archive (30 iterations in the paper; DROP F1 79.4 against 65.8 for the best hand-designed agent). ADAS ran
the code inside the search process, skipped failed iterations silently and scored every agent on the test
split. Here:

- **The prompt** shows the environments' rules, the agent-code API of ``palaestra.search.sandbox``
  (``def act(observation, history, instructions, llm) -> str``, docs/sandbox.md) with the sandbox's limits,
  the best ``show`` agents of the archive (their code, or a summary of a built-in design) with their
  validation scores and 95% intervals, and the reasons the last ``show_failures`` failed agents failed.
  Which agents are shown is the follow-up study's point: evolution-style parent choice beat showing the
  whole archive, so only the best few are (they are the new agent's parents in its lineage).
- **Code is extracted** from the reply robustly (:func:`extract_code`: the last fenced block that defines
  ``act``, else the last fenced block, else bare code from its first ``import``/``def`` line) and checked
  with ``check_code`` in a sandboxed child: it must compile, import and define ``act`` with the right
  signature. A failed check is sent back to the model with the reason, up to ``fix_tries`` (3) times, as in
  ADAS. Code that passed is reviewed ``reflections`` (2) times (ADAS's two reflections); a revision replaces
  it only if it passes the check too.
- **Failures are kept, with their reasons.** A reply with no code, or code that still fails the check, is
  archived as a failed candidate (its ``failure`` says why) without playing. Code that passes the check
  plays through ``SandboxedAgent`` in a sandboxed subprocess; when it fails during an episode (loops
  forever, imports the network, writes outside its directory, raises, returns garbage), the harness marks
  the candidate failed with the sandbox's reason. The search goes on either way.
- **Cost.** One call for the draft, up to ``fix_tries`` for fixes and ``reflections`` for reviews, each
  charged to the budget (``palaestra.search.proposer``), plus the usual evaluation of the agent.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from palaestra.core.errors import SpecError
from palaestra.core.types import Message
from palaestra.models.base import Model
from palaestra.search.design import Design, DesignSpace
from palaestra.search.methods import Proposal
from palaestra.search.proposer import Proposer, clip, render
from palaestra.search.sandbox import SandboxLimits, SandboxResult, check_code
from palaestra.search.space import SearchSpace

if TYPE_CHECKING:
    from palaestra.search.harness import Evaluation, SearchHarness

MAX_CODE_CHARS = 20_000
_FENCED = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_DEFINES_ACT = re.compile(r"^\s*def\s+act\s*\(", re.MULTILINE)
_CODE_START = re.compile(r"^(?:import |from \S+ import |def |class |@|[A-Z_][A-Z0-9_]* = )")


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def extract_code(text: str | None) -> str | None:
    """The agent code in a model's reply, or None when there is none.

    The last fenced block that defines ``act`` (a corrected version comes after a draft), else the last
    fenced block of Python (or with no language); an unterminated fence (a reply cut at its token limit) runs
    to the end. Without fences: the reply from its first line that starts code (``import``, ``def``...),
    with trailing prose lines dropped until it parses; a reply that never defines ``act`` has no code.
    """
    if not text or not text.strip():
        return None
    blocks = [
        body.strip("\n")
        for language, body in _FENCED.findall(text)
        if body.strip() and language.lower() in ("", "python", "py", "python3")
    ]
    if blocks:
        with_act = [b for b in blocks if _DEFINES_ACT.search(b)]
        return (with_act or blocks)[-1].strip("\n") + "\n"
    if not _DEFINES_ACT.search(text):
        return None
    lines = text.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), 0)
    code = lines[start:]
    for end in range(len(code), 0, -1):  # drop prose after the code, one line at a time
        candidate = "\n".join(code[:end])
        if _DEFINES_ACT.search(candidate) and _parses(candidate):
            return candidate.strip("\n") + "\n"
    return "\n".join(code).strip("\n") + "\n"  # does not parse: the sandbox's check will say why


def describe(design: Design) -> str:
    """What the meta agent is shown of an archive member: its code, or the fields of a built-in design that
    differ from the default."""
    if design.code is not None:
        return "```python\n" + clip(design.code, 3000) + "\n```"
    plain = Design().to_dict()
    changed = {k: v for k, v in design.to_dict().items() if v != plain[k] and k != "code"}
    fields = ", ".join(f"{k}={v!r}" for k, v in changed.items()) or "the defaults"
    return (
        "A built-in design, not code: the prompt agent (the rules as system message, a few demonstration "
        f"turns, the last turns, one model call per turn) with {fields}."
    )


class MetaAgent:
    """ADAS's Meta Agent Search over code designs of a ``DesignSpace`` (see the module docstring).

    Args:
        space: a ``DesignSpace`` that accepts code (``allow_code=True``).
        proposer: the meta agent's model (None: the search's model). A strong model behind ``openai:`` is
            what ADAS used; a small local model mostly writes code that fails the check.
        show: archive agents shown (the best by validation score).
        show_failures: reasons of the latest failed agents shown.
        fix_tries: requests to fix code that failed the check (ADAS: 3).
        reflections: reviews of code that passed (ADAS: 2).
        max_tokens, temperature: the meta agent's sampling.
        limits: the sandbox limits of the check and shown in the prompt (the default ones are what the
            harness plays code designs with).
    """

    name = "meta-agent"

    def __init__(
        self,
        space: SearchSpace,
        *,
        proposer: Model | None = None,
        show: int = 5,
        show_failures: int = 3,
        fix_tries: int = 3,
        reflections: int = 2,
        max_tokens: int = 2048,
        temperature: float = 0.7,
        limits: SandboxLimits | None = None,
    ) -> None:
        if not isinstance(space, DesignSpace) or not space.allow_code:
            raise SpecError(
                "meta-agent writes agents as code: it needs the design space with code allowed (--space design)"
            )
        self.space = space
        self.proposer = Proposer(proposer)
        self.show = show
        self.show_failures = show_failures
        self.fix_tries = fix_tries
        self.reflections = reflections
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.limits = limits or SandboxLimits()
        self.harness: SearchHarness | None = None
        self.attempts: list[dict[str, Any]] = []  # per proposal: checks, fixes, reflections kept, outcome

    def bind(self, harness: SearchHarness) -> None:
        self.harness = harness
        self.proposer.bind(harness)

    def prompt(self, archive: Sequence[Evaluation]) -> list[Message]:
        """The request for a new agent: API, limits, the best agents and the latest failures."""
        harness = self._harness()
        usable = sorted((e for e in archive if not e.failed), key=lambda e: (-e.score, e.index))[: self.show]
        failed = [e for e in archive if e.failed][-self.show_failures :] if self.show_failures else []
        agents = []
        for e in usable:
            assert isinstance(e.candidate, Design)
            low, high = e.ci
            score = f"{e.score:.1f} [{low:.1f}, {high:.1f}] on {len(e.per_seed())} seeds"
            agents.append({"hash": e.hash, "score": score, "body": describe(e.candidate)})
        failures = [{"hash": e.hash, "reason": clip(e.failure or "no episode played ok", 300)} for e in failed]
        user = render(
            "meta_agent",
            envs=[{"id": env.spec.id, "instructions": clip(env.instructions, 1500)} for env in harness.envs],
            max_tokens=self.limits.max_tokens_per_call,
            max_calls=self.limits.max_calls_per_turn,
            timeout=f"{self.limits.turn_timeout_s:g}",
            agents=agents,
            failures=failures,
        )
        return [Message("system", render("meta_agent_system")), Message("user", user)]

    async def propose(self, archive: Sequence[Evaluation], rng: random.Random) -> list[Proposal]:
        if not archive:
            return [Proposal(self.space.default())]
        harness = self._harness()
        seen = {e.hash for e in archive}
        parents = tuple(e.hash for e in sorted((e for e in archive if not e.failed), key=lambda e: (-e.score, e.index)))
        parents = parents[: self.show]
        messages = self.prompt(archive)
        seed = rng.randrange(2**31)
        log: dict[str, Any] = {"fixes": 0, "reflections_kept": 0}
        self.attempts.append(log)
        reply = await self._ask(messages, seed, 0)
        if reply is None:
            log["outcome"] = "proposer failed"
            return []
        code = extract_code(reply)
        if code is None:
            raw = reply.strip()
            log["outcome"] = "no code"
            design = Design(code=clip(raw, MAX_CODE_CHARS) if raw else "# (the meta agent's reply was empty)\n")
            why = "the meta agent's reply had no Python code defining act" + (
                f": {clip(raw, 200)!r}" if raw else " (an empty reply)"
            )
            harness.log(f"  meta-agent: {why}")
            return [] if design.hash in seen else [Proposal(design, parents, failure=why)]
        check = await self._check(code)
        while not check.ok and log["fixes"] < self.fix_tries:
            log["fixes"] += 1
            messages = [
                *messages,
                Message("assistant", reply),
                Message("user", render("meta_agent_fix", kind=check.kind, reason=clip(check.reason, 1500))),
            ]
            fixed = await self._ask(messages, seed, log["fixes"])
            if fixed is None:
                break
            reply = fixed
            new = extract_code(fixed)
            if new is not None and new != code:
                code, check = new, await self._check(new)
        if check.ok:
            for round_ in range(self.reflections):
                messages = [*messages, Message("assistant", reply), Message("user", render("meta_agent_reflect"))]
                revised = await self._ask(messages, seed, 100 + round_)
                if revised is None:
                    break
                reply = revised
                new = extract_code(revised)
                if new is not None and new != code and (await self._check(new)).ok:
                    code = new
                    log["reflections_kept"] += 1
        design = Design(code=code[:MAX_CODE_CHARS])
        failure = None if check.ok else f"the sandbox's check failed ({check.kind}): {clip(check.reason, 1500)}"
        log["outcome"] = "checked" if check.ok else f"check failed ({check.kind})"
        log["hash"] = design.hash
        harness.log(f"  meta-agent: {design.hash} {log['outcome']} after {log['fixes']} fixes")
        if design.hash in seen:
            return []
        return [Proposal(design, parents, failure=failure)]

    async def _ask(self, messages: Sequence[Message], seed: int, index: int) -> str | None:
        return await self.proposer.ask(
            messages, max_tokens=self.max_tokens, temperature=self.temperature, seed=seed + index, sample_index=index
        )

    async def _check(self, code: str) -> SandboxResult:
        if len(code) > MAX_CODE_CHARS:
            return SandboxResult(ok=False, kind="syntax", reason=f"the code is longer than {MAX_CODE_CHARS} characters")
        return await check_code(code, self.limits)

    def _harness(self) -> SearchHarness:
        if self.harness is None:
            raise SpecError("meta-agent needs its search harness: run it through SearchHarness.run (it binds it)")
        return self.harness

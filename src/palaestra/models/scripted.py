"""``ScriptedModel``: deterministic replies for tests, as ``scripted:echo`` or ``scripted:cycle:a|b``.

It behaves like a real backend where tests need it to: fake token ids (one per UTF-8 byte) so token-id
plumbing can be exercised, ``max_tokens`` and stop strings honoured with the matching ``finish_reason``,
and it can be told to fail on given calls (``ModelError``) or to be slow (for timeout tests).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from palaestra.core.errors import ModelError, SpecError, UnknownSpecError
from palaestra.core.types import ChatRequest, Completion, Usage

Reply = Callable[[ChatRequest], str]

SCRIPTED_FORMS = ("scripted:echo", "scripted:cycle:<reply>|<reply>|...")


def _echo(request: ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content
    return ""


def render_prompt(request: ChatRequest) -> str:
    """The text the scripted model "sees": one ``role: content`` line per message (its prompt tokens)."""
    return "".join(f"{m.role}: {m.content}\n" for m in request.messages)


class ScriptedModel:
    """A model whose replies are fixed in advance.

    Args:
        replies: ``"echo"`` (repeat the last user message), a list of replies used in turn (cycling), or a
            function from the request to the reply.
        spec: the spec recorded with runs; derived from ``replies`` when it is ``"echo"`` or a list.
        fail_on_calls: 1-based call numbers that raise ``ModelError`` instead of replying.
        delay_s: seconds to sleep before each reply (to test timeouts).
        honor_max_tokens: cut replies at ``sampling.max_tokens`` fake tokens (bytes) with
            ``finish_reason="length"``, like a real model. Turn off to always get the whole script.
    """

    weights_hash: str | None = None

    def __init__(
        self,
        replies: str | Sequence[str] | Reply = "echo",
        *,
        spec: str | None = None,
        fail_on_calls: Iterable[int] = (),
        delay_s: float = 0.0,
        honor_max_tokens: bool = True,
    ) -> None:
        self._reply: Reply
        derived: str | None
        if replies == "echo":
            self._reply = _echo
            derived = "scripted:echo"
        elif callable(replies):
            self._reply = replies
            derived = f"scripted:function:{getattr(replies, '__qualname__', type(replies).__name__)}"
        else:
            script = [replies] if isinstance(replies, str) else list(replies)
            if not script:
                raise SpecError("ScriptedModel needs at least one reply; pass e.g. ['north', 'south']")
            # '|' separates replies in the spec string, so such a script has no spec form of its own
            derived = None if any("|" in r for r in script) else "scripted:cycle:" + "|".join(script)
            turns = itertools.cycle(script)
            self._reply = lambda _request: next(turns)
        if spec is None and derived is None:
            raise SpecError(
                "a scripted reply contains '|', so it cannot be written as 'scripted:cycle:...'; "
                "pass spec='scripted:<your name>' to name this script"
            )
        self.spec: str = spec or derived or ""
        self.fail_on_calls = frozenset(fail_on_calls)
        self.delay_s = delay_s
        self.honor_max_tokens = honor_max_tokens
        self.calls = 0
        self.requests: list[ChatRequest] = []  # every request received, in order (for assertions in tests)

    @classmethod
    def from_spec(cls, spec: str, **options: Any) -> ScriptedModel:
        """Build from ``scripted:echo`` or ``scripted:cycle:<a>|<b>|...``."""
        _, _, rest = spec.partition(":")
        name, _, arg = rest.partition(":")
        if name == "echo" and not arg:
            return cls("echo", **options)
        if name == "cycle" and arg:
            return cls(arg.split("|"), **options)
        raise UnknownSpecError("scripted model", spec, SCRIPTED_FORMS)

    async def generate(self, request: ChatRequest) -> Completion:
        started = time.perf_counter()
        self.calls += 1
        call = self.calls
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if call in self.fail_on_calls:
            raise ModelError(
                f"{self.spec}: scripted failure on call {call} (fail_on_calls={sorted(self.fail_on_calls)})"
            )
        text = self._reply(request)
        finish = "stop"
        for stop in request.sampling.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
        data = text.encode()
        if self.honor_max_tokens and len(data) > request.sampling.max_tokens:
            # Cutting bytes may split a character; drop the partial one so ids and text still agree.
            text = data[: request.sampling.max_tokens].decode(errors="ignore")
            data = text.encode()
            finish = "length"
        prompt = render_prompt(request).encode()
        return Completion(
            text=text,
            model=self.spec,
            finish_reason=finish,
            usage=Usage(len(prompt), len(data)),
            latency_s=time.perf_counter() - started,
            prompt_token_ids=tuple(prompt),
            completion_token_ids=tuple(data),
            logprobs=tuple(0.0 for _ in data),  # a script is certain of its reply
        )

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"ScriptedModel({self.spec!r})"

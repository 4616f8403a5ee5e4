"""The proposer: the model a search method asks to write candidates (``reflect``'s instructions,
``meta-agent``'s code), with its calls and tokens charged to the search's budget; and the prompts it is shown.

By default the proposer is the search's own model, reached through the harness's request cache and meter, so
its calls count exactly as the agents' do. A separate proposer (``--proposer-model openai:...``, a stronger
model than the agents', as GEPA and ADAS use) is called directly; each of its calls and tokens is added to the
harness's meter (so the budget stops the search) and to ``SearchHarness.overhead`` (so ``spent`` shows it).
Prompts are Jinja files in ``palaestra/search/prompts/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jinja2

from palaestra.core.errors import ModelError, SpecError
from palaestra.core.types import ChatRequest, Message, SamplingParams
from palaestra.models.base import Model
from palaestra.search.harness import Cost

if TYPE_CHECKING:
    from palaestra.search.harness import SearchHarness

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("palaestra.search", "prompts"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, **values: Any) -> str:
    """Render ``palaestra/search/prompts/<template>.jinja``."""
    return _TEMPLATES.get_template(f"{template}.jinja").render(**values).strip()


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked when cut."""
    text = str(text)
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


class Proposer:
    """Asks a model for a proposal and charges the call to the search it is bound to.

    Args:
        model: a separate proposer model (not closed here: its maker owns it), or None for the search's model.
    """

    def __init__(self, model: Model | None = None) -> None:
        self.model = model
        self.harness: SearchHarness | None = None
        self.calls = 0  # requests asked (cache hits included)
        self.cost = Cost()  # what the proposer cost the search (model_calls / model_tokens: what reached a model)
        self.failures: list[str] = []  # model errors, in order

    @property
    def spec(self) -> str:
        if self.model is not None:
            return self.model.spec
        return self.harness.model.spec if self.harness is not None else "the search's model"

    def bind(self, harness: SearchHarness) -> None:
        self.harness = harness

    async def ask(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float, seed: int, sample_index: int = 0
    ) -> str | None:
        """The model's reply to ``messages``, or None when the model failed (the failure is noted and logged:
        a proposer that errors must not end a search that has budget left)."""
        harness = self.harness
        if harness is None:
            raise SpecError("the proposer is not bound to a search harness; the harness binds it when run starts")
        sampling = SamplingParams(
            temperature=temperature, max_tokens=max_tokens, seed=seed if temperature > 0 else None
        )
        request = ChatRequest(tuple(messages), sampling, sample_index=sample_index)
        before_calls, before_tokens = harness.meter.calls, harness.meter.tokens
        self.calls += 1
        try:
            if self.model is None:
                completion = await harness.model.generate(request)  # through the cache and the meter
            else:
                completion = await self.model.generate(request)
                harness.meter.calls += 1  # the budget counts the proposer's calls too
                harness.meter.tokens += completion.usage.total_tokens
        except ModelError as exc:
            self.failures.append(str(exc))
            harness.log(f"  proposer {self.spec} failed: {clip(str(exc), 300)}")
            return None
        finally:
            spent = Cost(
                model_calls=harness.meter.calls - before_calls, model_tokens=harness.meter.tokens - before_tokens
            )
            self.cost = self.cost + spent
            harness.overhead = harness.overhead + spent
        self.cost.calls += 1
        self.cost.tokens += completion.usage.total_tokens
        harness.overhead.calls += 1
        harness.overhead.tokens += completion.usage.total_tokens
        return completion.text

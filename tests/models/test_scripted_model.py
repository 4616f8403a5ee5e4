"""ScriptedModel: the deterministic test model behaves like a backend (ids, limits, failures, delays)."""

from __future__ import annotations

import asyncio

import pytest

from palaestra.core.errors import ModelError, SpecError, UnknownSpecError
from palaestra.core.types import ChatRequest, Message, SamplingParams
from palaestra.models import Model, ScriptedModel, make_model


def ask(text: str, **sampling: object) -> ChatRequest:
    return ChatRequest((Message("system", "be brief"), Message("user", text)), SamplingParams(**sampling))  # type: ignore[arg-type]


async def test_echo_repeats_the_last_user_message_with_byte_token_ids() -> None:
    model = make_model("scripted:echo")
    assert isinstance(model, Model)
    reply = await model.generate(ask("héllo"))
    assert reply.text == "héllo"
    assert reply.finish_reason == "stop"
    assert bytes(reply.completion_token_ids or ()).decode() == "héllo"
    assert bytes(reply.prompt_token_ids or ()).decode() == "system: be brief\nuser: héllo\n"
    assert reply.usage.completion_tokens == len("héllo".encode()) == len(reply.logprobs or ())
    assert reply.usage.prompt_tokens == len(reply.prompt_token_ids or ())
    assert model.spec == "scripted:echo" and model.weights_hash is None


async def test_cycle_spec_cycles_and_rebuilds_from_its_spec() -> None:
    model = make_model("scripted:cycle:north|south|east")
    texts = [(await model.generate(ask("go"))).text for _ in range(4)]
    assert texts == ["north", "south", "east", "north"]
    again = make_model(model.spec)
    assert [(await again.generate(ask("go"))).text for _ in range(2)] == ["north", "south"]


async def test_callable_replies_see_the_request() -> None:
    model = ScriptedModel(lambda request: request.messages[-1].content.upper(), spec="scripted:upper")
    assert (await model.generate(ask("abc"))).text == "ABC"
    assert model.spec == "scripted:upper"
    assert model.requests[0].messages[-1].content == "abc"


async def test_max_tokens_cuts_bytes_and_reports_length() -> None:
    model = ScriptedModel(["abcdefghij"])
    reply = await model.generate(ask("x", max_tokens=4))
    assert (reply.text, reply.finish_reason, reply.completion_token_ids) == ("abcd", "length", tuple(b"abcd"))
    # A multi-byte character is never split: ids and text agree.
    reply = await ScriptedModel(["aé"]).generate(ask("x", max_tokens=2))
    assert reply.text == "a" and bytes(reply.completion_token_ids or ()) == b"a"
    whole = await ScriptedModel(["abcdefghij"], honor_max_tokens=False).generate(ask("x", max_tokens=4))
    assert whole.text == "abcdefghij" and whole.finish_reason == "stop"


async def test_stop_strings_truncate_at_the_first_one() -> None:
    reply = await ScriptedModel(["move north. then east\nok"]).generate(ask("x", stop=("\n", ".")))
    assert reply.text == "move north"
    assert reply.finish_reason == "stop"


async def test_fails_on_the_chosen_calls_only() -> None:
    model = make_model("scripted:echo", fail_on_calls=[2])
    assert (await model.generate(ask("a"))).text == "a"
    with pytest.raises(ModelError, match="call 2"):
        await model.generate(ask("b"))
    assert (await model.generate(ask("c"))).text == "c"


async def test_delay_makes_timeouts_testable() -> None:
    model = ScriptedModel("echo", delay_s=5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(model.generate(ask("slow")), timeout=0.05)


def test_bad_scripted_specs_say_what_is_valid() -> None:
    with pytest.raises(UnknownSpecError, match=r"scripted:cycle:<reply>\|<reply>"):
        make_model("scripted:nonsense")
    with pytest.raises(SpecError, match="spec="):
        ScriptedModel(["a|b"])
    assert ScriptedModel(["a|b"], spec="scripted:pipes").spec == "scripted:pipes"

"""make_model: spec strings resolve to the right backend, and bad ones say what is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from palaestra.core.errors import SpecError, UnknownSpecError
from palaestra.core.types import ChatRequest, Message, SamplingParams
from palaestra.models import SPEC_FORMS, CachedModel, ScriptedModel, make_model, request_seed
from palaestra.models.openai import OpenAIModel, chat_completions_url


def test_unknown_spec_lists_every_form() -> None:
    with pytest.raises(UnknownSpecError) as info:
        make_model("smollm2-135")
    message = str(info.value)
    assert "Did you mean 'smollm2-135m'" in message
    for form in SPEC_FORMS:
        assert form in message


@pytest.mark.parametrize("spec", ["", "gpt-4", "local:", "openai:", "scripted:"])
def test_incomplete_specs_are_unknown(spec: str) -> None:
    with pytest.raises(UnknownSpecError):
        make_model(spec)


def test_local_spec_needs_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not a directory"):
        make_model(f"local:{tmp_path / 'missing'}")


def test_openai_spec_splits_model_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model("openai:claude@2024@http://127.0.0.1:9/v1", max_concurrency=2)
    assert isinstance(model, OpenAIModel)
    assert (model.model, model.base_url, model.max_concurrency) == ("claude@2024", "http://127.0.0.1:9/v1", 2)
    assert model.spec == "openai:claude@2024@http://127.0.0.1:9/v1" and model.weights_hash is None
    monkeypatch.setenv("PALAESTRA_OPENAI_BASE_URL", "http://127.0.0.1:9")
    default = make_model("openai:some-model")
    assert default.spec == "openai:some-model@http://127.0.0.1:9"
    with pytest.raises(SpecError, match="http"):
        make_model("openai:m@ftp://host")


def test_chat_completions_url_accepts_bare_hosts_and_sdk_style_base_urls() -> None:
    assert chat_completions_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("https://api.openai.com/v1") == "https://api.openai.com/v1/chat/completions"


def test_cache_option_wraps_the_model(tmp_path: Path) -> None:
    cached = make_model("scripted:echo", cache=True)
    assert isinstance(cached, CachedModel) and isinstance(cached.inner, ScriptedModel)
    assert cached.spec == "scripted:echo"
    assert make_model("scripted:echo", cache=tmp_path / "c.sqlite").path == tmp_path / "c.sqlite"


def test_request_seed_differs_per_sample_but_is_stable() -> None:
    def req(seed: int | None, index: int) -> ChatRequest:
        return ChatRequest((Message("user", "x"),), SamplingParams(temperature=1.0, seed=seed), index)

    assert request_seed(req(None, 3)) is None
    assert request_seed(req(7, 0)) == 7
    derived = {request_seed(req(7, i)) for i in range(1, 20)}
    assert len(derived) == 19 and 7 not in derived
    assert request_seed(req(7, 5)) == request_seed(req(7, 5)) < 2**63

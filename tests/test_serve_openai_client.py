"""`reasonscale serve` through the official `openai` Python client: what is written for the OpenAI API works here."""

from __future__ import annotations

import pytest

from reasonscale.serve import BackgroundServer, create_app
from reasonscale.types import SamplingParams

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def client(server):
    """No retries, so a 5xx would surface as an error instead of being retried away."""
    with openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60) as made:
        yield made


def test_models_list_and_retrieve(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_completions_n_seed_and_usage(client, engine):
    made = client.completions.create(
        model="tiny", prompt="Q: 1+2=", n=3, seed=11, temperature=0.9, top_p=0.95, max_tokens=10
    )
    params = SamplingParams(temperature=0.9, top_p=0.95, max_tokens=10)
    expected = engine.complete_seeded(["Q: 1+2="] * 3, [11, 12, 13], params)
    assert [c.text for c in made.choices] == [c.text for c in expected]
    assert [c.index for c in made.choices] == [0, 1, 2]
    assert [c.finish_reason for c in made.choices] == [c.finish_reason for c in expected]
    assert made.usage.prompt_tokens == len("Q: 1+2=") + 1
    assert made.usage.completion_tokens == sum(c.completion_tokens for c in expected)
    assert made.usage.total_tokens == made.usage.prompt_tokens + made.usage.completion_tokens


def test_completions_greedy_stop_and_max_tokens(client, engine):
    greedy = client.completions.create(model="tiny", prompt="x", temperature=0, max_tokens=20).choices[0]
    assert greedy.text == engine.generate(["x"], SamplingParams(temperature=0, max_tokens=20))[0][0].text
    stop = greedy.text[4:6]
    stopped = client.completions.create(model="tiny", prompt="x", temperature=0, max_tokens=20, stop=[stop, "never"])
    choice = stopped.choices[0]
    assert choice.text == greedy.text[: greedy.text.index(stop)] and choice.finish_reason == "stop"
    assert choice.stop_reason == stop  # vLLM's extra field, read by the openai engine
    short = client.completions.create(model="tiny", prompt="x", temperature=0, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3


def test_chat_completions(client, engine):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    made = client.chat.completions.create(model="tiny", messages=messages, max_completion_tokens=8, temperature=0)
    expected = engine.generate([engine.render_chat(messages)], SamplingParams(temperature=0, max_tokens=8))[0][0]
    choice = made.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", expected.text)
    assert choice.finish_reason == expected.finish_reason
    assert made.usage.prompt_tokens == expected.prompt_tokens
    assert made.usage.completion_tokens == expected.completion_tokens
    parts = [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    as_parts = client.chat.completions.create(model="tiny", messages=parts, max_tokens=8, temperature=0)
    assert as_parts.choices[0].message.content == expected.text


def test_chat_n_and_seed(client, engine):
    messages = [{"role": "user", "content": "count"}]
    made = client.chat.completions.create(model="tiny", messages=messages, n=2, seed=5, temperature=1.0, max_tokens=6)
    prompt = engine.render_chat(messages)
    expected = engine.complete_seeded([prompt] * 2, [5, 6], SamplingParams(temperature=1.0, max_tokens=6))
    assert [c.message.content for c in made.choices] == [c.text for c in expected]
    assert made.usage.completion_tokens == sum(c.completion_tokens for c in expected)


def test_a_wrong_token_gets_401(engine):
    with BackgroundServer(create_app(engine, "tiny", token="right")) as running:
        for key in ("wrong", "right-but-longer"):
            with openai.OpenAI(base_url=running.url, api_key=key, max_retries=0) as wrong:
                with pytest.raises(openai.AuthenticationError):
                    wrong.completions.create(model="tiny", prompt="x", max_tokens=2)
        with openai.OpenAI(base_url=running.url, api_key="right", max_retries=0) as right:
            assert len(right.completions.create(model="tiny", prompt="x", max_tokens=2).choices) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 5},
        {"max_tokens": 10**9},
        {"max_tokens": 0},
        {"n": 0},
        {"top_p": 0},
        {"logprobs": 2},
        {"echo": True},
        {"prompt": "a" * 600},
        {"stream": True},
        {"extra_body": {"prompt": {"not": "text"}}},
        {"extra_body": {"stop": 5}},
    ],
    ids=lambda kwargs: ",".join(kwargs),
)
def test_malformed_completions_get_400(client, kwargs):
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(**{"model": "tiny", "prompt": "x", "max_tokens": 4, **kwargs})
    assert raised.value.status_code == 400 and raised.value.message
    assert client.completions.create(model="tiny", prompt="x", max_tokens=2).choices  # still serving


@pytest.mark.parametrize(
    "kwargs",
    [
        {"messages": []},
        {"messages": [{"role": "user"}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]},
        {"temperature": 2.5},
        {"logprobs": True, "top_logprobs": 2},
        {"max_completion_tokens": 10**6},
    ],
    ids=lambda kwargs: ",".join(kwargs),
)
def test_malformed_chats_get_400(client, kwargs):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(**{"model": "tiny", "messages": [{"role": "user", "content": "x"}], **kwargs})

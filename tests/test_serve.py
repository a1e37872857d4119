"""`reasonscale serve`: the OpenAI-compatible endpoints over the hf engine, binding rules, auth and fault injection."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from reasonscale.serve import FAULT_RATE_ENV, BackgroundServer, ServeError, check_host, create_app, serve
from reasonscale.types import SamplingParams


def post(server: BackgroundServer, path: str, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/{path}", json={"model": "tiny", **body}, timeout=60)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_are_allowed(host):
    check_host(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.org", "::"])
def test_other_hosts_need_allow_remote(host):
    with pytest.raises(ServeError, match="--allow-remote"):
        check_host(host, allow_remote=False)
    check_host(host, allow_remote=True)


def test_serve_refuses_a_public_address_before_loading_anything():
    with pytest.raises(ServeError, match="refusing to listen on 0.0.0.0"):
        serve("/no/such/model", host="0.0.0.0", port=1)


def test_models_lists_the_served_name(server):
    data = httpx.get(f"{server.url}/models").json()["data"]
    assert [card["id"] for card in data] == ["tiny"] and data[0]["num_parameters"] > 0


def test_completions_honour_n_seed_and_sampling(server, engine):
    body = {"prompt": "Q: 1+2=", "n": 3, "seed": 11, "temperature": 0.9, "top_p": 0.95, "max_tokens": 10}
    first, again = post(server, "completions", **body).json(), post(server, "completions", **body).json()
    assert [c["text"] for c in first["choices"]] == [c["text"] for c in again["choices"]]
    assert len({c["text"] for c in first["choices"]}) == 3
    params = SamplingParams(temperature=0.9, top_p=0.95, max_tokens=10)
    expected = engine.complete_seeded(["Q: 1+2="] * 3, [11, 12, 13], params)  # choice j uses seed + j
    assert [c["text"] for c in first["choices"]] == [c.text for c in expected]
    assert first["usage"]["completion_tokens"] == sum(c.completion_tokens for c in expected)
    assert first["usage"]["prompt_tokens"] == len("Q: 1+2=") + 1


def test_completions_honour_stop_and_max_tokens(server, engine):
    full = post(server, "completions", prompt="x", temperature=0, max_tokens=20).json()["choices"][0]
    stop = full["text"][4:6]
    stopped = post(server, "completions", prompt="x", temperature=0, max_tokens=20, stop=stop).json()["choices"][0]
    assert stopped["text"] == full["text"][: full["text"].index(stop)]
    assert (stopped["stop_reason"], stopped["finish_reason"]) == (stop, "stop")
    short = post(server, "completions", prompt="x", temperature=0, max_tokens=3).json()
    assert short["choices"][0]["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 3


def test_completions_take_a_list_of_prompts(server):
    made = post(server, "completions", prompt=["a", "bb"], n=2, seed=1, temperature=1.0, max_tokens=6).json()
    assert len(made["choices"]) == 4 and made["usage"]["prompt_tokens"] == 2 + 3
    alone = post(server, "completions", prompt="bb", n=2, seed=1, temperature=1.0, max_tokens=6).json()
    assert [c["text"] for c in made["choices"][2:]] == [c["text"] for c in alone["choices"]]


def test_chat_completions_use_the_chat_template(server, engine):
    made = post(server, "chat/completions", messages=[{"role": "user", "content": "hi"}], temperature=0, max_tokens=8)
    choice = made.json()["choices"][0]
    expected = engine.generate([engine.render_chat([{"role": "user", "content": "hi"}])], SamplingParams(max_tokens=8))
    assert choice["message"] == {"role": "assistant", "content": expected[0][0].text}


def test_bad_requests_get_openai_style_errors(server):
    bad = post(server, "completions", prompt="x", top_p=3)
    assert bad.status_code == 400 and "top_p" in bad.json()["error"]["message"]
    wrong_model = httpx.post(f"{server.url}/completions", json={"model": "gpt-9", "prompt": "x"})
    assert wrong_model.status_code == 404 and "tiny" in wrong_model.json()["error"]["message"]
    assert post(server, "completions", prompt="x", stream=True).status_code == 400


def test_concurrent_requests_are_batched(engine, monkeypatch):
    calls = []
    original = engine.complete_seeded

    def counting(prompts, seeds, params):
        calls.append(len(prompts))
        return original(prompts, seeds, params)

    monkeypatch.setattr(engine, "complete_seeded", counting)
    with BackgroundServer(create_app(engine, "tiny", fault_rate=0.0)) as running:
        texts = asyncio.run(concurrent_greedy(running.url, [f"p{k}:" for k in range(8)]))
    monkeypatch.undo()
    assert sum(calls) == 8 and len(calls) < 8
    expected = engine.generate([f"p{k}:" for k in range(8)], SamplingParams(max_tokens=12))
    assert texts == [row[0].text for row in expected]


async def concurrent_greedy(url: str, prompts: list[str]) -> list[str]:
    async with httpx.AsyncClient(timeout=60) as client:
        body = {"model": "tiny", "temperature": 0, "max_tokens": 12}
        responses = await asyncio.gather(
            *(client.post(f"{url}/completions", json={**body, "prompt": p}) for p in prompts)
        )
    return [r.json()["choices"][0]["text"] for r in responses]


def test_bearer_token_guards_every_route(engine):
    with BackgroundServer(create_app(engine, "tiny", token="s3cret")) as running:
        assert httpx.get(f"{running.url}/models").status_code == 401
        assert httpx.get(f"{running.url}/models", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.get(f"{running.url}/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_fault_switch_fails_generation_requests(engine, monkeypatch):
    monkeypatch.setenv(FAULT_RATE_ENV, "1.0")
    with BackgroundServer(create_app(engine, "tiny")) as running:
        assert httpx.get(f"{running.url}/models").status_code == 200
        statuses = {post(running, "completions", prompt="x").status_code for _ in range(12)}
    assert statuses <= {429, 500, 503} and statuses

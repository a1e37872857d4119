"""`reasonscale serve` limits: each bad request gets a 4xx at once, and the good request after it is served promptly."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from reasonscale.serve import BackgroundServer, ServeError, create_app
from reasonscale.serve_api import ServeLimits
from reasonscale.types import SamplingParams

CONTEXT = 64
BODY = 16 << 10
PROMPTLY = 20.0  # seconds; a good request behind a bad one must not wait for any generation of the bad one
LIMITS = ServeLimits(max_model_len=CONTEXT, max_body_bytes=BODY, max_choices=64, slice_rows=2)


@pytest.fixture(scope="module")
def limited(engine):
    with BackgroundServer(create_app(engine, "tiny", fault_rate=0.0, limits=LIMITS)) as running:
        yield running


def good_request(url: str, **headers: str | bytes) -> httpx.Response:
    """A small greedy completion, which must come back within PROMPTLY seconds."""
    body = {"model": "tiny", "prompt": "Q: 1+2=", "max_tokens": 4, "temperature": 0}
    start = time.monotonic()
    made = httpx.post(f"{url}/completions", json=body, headers=headers, timeout=PROMPTLY)
    assert made.status_code == 200 and len(made.json()["choices"]) == 1
    assert time.monotonic() - start < PROMPTLY
    return made


BAD = {  # name: (path, JSON body, status, words the error message must contain)
    "prompt over the context": ("completions", {"prompt": "a" * 80}, 400, "maximum context length is 64"),
    "prompt + max_tokens over the context": ("completions", {"prompt": "a" * 40, "max_tokens": 30}, 400, "71 tok"),
    "one of several prompts too long": ("completions", {"prompt": ["a", "b" * 70], "max_tokens": 1}, 400, "context"),
    "absurd max_tokens": ("completions", {"prompt": "x", "max_tokens": 10**12}, 400, "maximum context length"),
    "max_tokens as a large float": ("completions", {"prompt": "x", "max_tokens": 2.5e8}, 400, "maximum context"),
    "max_tokens 0": ("completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    "chat over the context": ("chat/completions", {"messages": [{"role": "user", "content": "a" * 70}]}, 400, "64"),
    "temperature 5": ("completions", {"prompt": "x", "temperature": 5}, 400, "temperature"),
    "negative temperature": ("completions", {"prompt": "x", "temperature": -1}, 400, "temperature"),
    "logprobs": ("completions", {"prompt": "x", "logprobs": 2}, 400, "'logprobs' is not supported"),
    "logprobs 0": ("completions", {"prompt": "x", "logprobs": 0}, 400, "'logprobs' is not supported"),
    "echo": ("completions", {"prompt": "x", "echo": True}, 400, "'echo' is not supported"),
    "chat logprobs": ("chat/completions", {"messages": [{"role": "user", "content": "x"}], "logprobs": True}, 400,
                      "logprobs"),
    "best_of": ("completions", {"prompt": "x", "best_of": 4}, 400, "best_of"),
    "too many choices": ("completions", {"prompt": ["a"] * 8, "n": 9}, 400, "72 choices"),
    "empty prompt list": ("completions", {"prompt": []}, 400, "prompt"),
    "token ids as prompt": ("completions", {"prompt": [1, 2, 3]}, 400, "prompt"),
    "image part in a chat": ("chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.png"}}]}]}, 400, "type"),
    "messages not a list": ("chat/completions", {"messages": "hi"}, 400, "messages"),
    "body not an object": ("completions", ["x"], 400, ""),
    "streaming": ("completions", {"prompt": "x", "stream": True}, 400, "streaming"),
    "body over the byte limit": ("completions", {"prompt": "a" * BODY}, 413, "request body over"),
    "unknown model": ("completions", {"prompt": "x", "model": "gpt-9"}, 404, "tiny"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_gets_a_4xx_and_the_next_is_served(limited, case):
    path, body, status, words = BAD[case]
    if isinstance(body, dict):
        body = {"model": "tiny", **body}
    bad = httpx.post(f"{limited.url}/{path}", json=body, timeout=PROMPTLY)
    assert bad.status_code == status, bad.text
    assert words in bad.json()["error"]["message"]
    good_request(limited.url)


def test_a_huge_prompt_is_refused_without_running_the_model(server):
    """The default limits: the model's context (512) and a 1 MiB body. 200k characters fit the body, not the context."""
    start = time.monotonic()
    bad = httpx.post(f"{server.url}/completions", json={"prompt": "a" * 200_000}, timeout=PROMPTLY)
    assert bad.status_code == 400 and "maximum context length is 512" in bad.json()["error"]["message"]
    assert time.monotonic() - start < PROMPTLY
    assert httpx.post(f"{server.url}/completions", json={"prompt": "a" * (2 << 20)}).status_code == 413
    good_request(server.url)


@pytest.mark.parametrize(
    "content", [b'{"prompt": ', b"\xff\xfe not utf-8", b"", b'{"prompt": "x", "max_tokens": "many"}']
)
def test_malformed_bodies_get_400(limited, content):
    bad = httpx.post(f"{limited.url}/completions", content=content, headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["message"]
    good_request(limited.url)


def test_unknown_routes_and_methods_get_openai_style_errors(limited):
    missing = httpx.get(f"{limited.url}/nothing-here")
    wrong_method = httpx.get(f"{limited.url}/completions")
    assert (missing.status_code, wrong_method.status_code) == (404, 405)
    assert missing.json()["error"]["message"] and wrong_method.json()["error"]["message"]
    good_request(limited.url)


def test_a_body_without_content_length_is_capped_too(limited):
    chunks = (b'{"prompt": "' + b"a" * 1024 for _ in range(2 * BODY // 1024))  # chunked: no content-length
    bad = httpx.post(f"{limited.url}/completions", content=chunks, headers={"content-type": "application/json"})
    assert bad.status_code == 413
    good_request(limited.url)


def test_models_by_id(limited, tiny_model_dir, engine):
    card = httpx.get(f"{limited.url}/models/tiny").json()
    assert (card["id"], card["object"], card["max_model_len"]) == ("tiny", "model", CONTEXT)
    assert httpx.get(f"{limited.url}/models/gpt-9").status_code == 404
    with BackgroundServer(create_app(engine, "tiny", root=str(tiny_model_dir))) as running:
        by_path = httpx.get(f"{running.url}/models/{tiny_model_dir}")  # a path with slashes names it too
        assert by_path.status_code == 200 and by_path.json()["root"] == str(tiny_model_dir)
        assert by_path.json()["max_model_len"] == 512  # the model's context by default


def test_max_model_len_cannot_exceed_the_models_context(engine):
    with pytest.raises(ServeError, match="exceeds the model's context"):
        create_app(engine, limits=ServeLimits(max_model_len=10_000))


def test_chat_content_as_text_parts(limited, engine):
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    body = {"model": "tiny", "max_tokens": 6, "temperature": 0}
    as_parts = {**body, "messages": [{"role": "user", "content": parts}]}
    made = httpx.post(f"{limited.url}/chat/completions", json=as_parts)
    plain = httpx.post(
        f"{limited.url}/chat/completions", json={**body, "messages": [{"role": "user", "content": "first\nsecond"}]}
    )
    assert made.status_code == 200 and made.json()["choices"] == plain.json()["choices"]
    assert made.json()["usage"] == plain.json()["usage"]


def test_a_chat_without_max_tokens_gets_the_rest_of_the_context(limited):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "temperature": 1.0, "n": 4, "seed": 3}
    made = httpx.post(f"{limited.url}/chat/completions", json=body, timeout=PROMPTLY).json()
    prompt, rest = made["usage"]["prompt_tokens"], CONTEXT - made["usage"]["prompt_tokens"]
    assert prompt == len("user: hello\nassistant:") + 1
    at_length = sum(c["finish_reason"] == "length" for c in made["choices"])
    assert at_length >= 1 and at_length * rest <= made["usage"]["completion_tokens"] <= 4 * rest


def test_the_bearer_token_is_compared_as_bytes(engine):
    token = "s3cret-ü"
    with BackgroundServer(create_app(engine, "tiny", token=token)) as running:
        auth = f"Bearer {token}".encode()
        for header in ("Bearer s3cret-é".encode(), "Bearer ñ".encode("latin-1"), b"Bearer s3cret-", b""):
            assert httpx.get(f"{running.url}/models", headers={"Authorization": header}).status_code == 401
            good_request(running.url, Authorization=auth)


def test_a_large_request_does_not_starve_the_next(limited, engine):
    """A request of many slices runs one slice per round: a small request sent after it finishes long before it,
    and slicing changes none of the large request's samples."""
    big = {"model": "tiny", "prompt": "x", "n": 32, "max_tokens": 60, "temperature": 1.0, "seed": 0}
    small = {"model": "tiny", "prompt": "Q: 1+2=", "max_tokens": 4, "temperature": 0}
    big_made, small_made, big_done_first = asyncio.run(race(limited.url, big, small))
    assert not big_done_first, "the small request waited for the whole large one"
    assert small_made["choices"][0]["finish_reason"] in ("stop", "length")
    expected = engine.complete_seeded(["x"] * 32, list(range(32)), SamplingParams(temperature=1.0, max_tokens=60))
    assert [c["text"] for c in big_made["choices"]] == [c.text for c in expected]


async def race(url: str, big: dict, small: dict) -> tuple[dict, dict, bool]:
    async with httpx.AsyncClient(timeout=120) as client:
        large = asyncio.create_task(client.post(f"{url}/completions", json=big))
        await asyncio.sleep(0.3)  # the large request is under way
        done = (await client.post(f"{url}/completions", json=small)).json()
        big_done_first = large.done()
        return (await large).json(), done, big_done_first

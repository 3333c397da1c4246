"""The OpenAI-compatible server, driven by the official openai client over real HTTP on loopback."""

import threading
import time

import httpx
import pytest

from chattune.model import load_for_inference
from chattune.serve import ServeConfig, create_app
from tests.helpers import serve_in_thread

KEY = "test-key"


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model, tokenizer, _ = load_for_inference(str(tiny_model_dir))
    return model, tokenizer


def start(tiny, **config):
    model, tokenizer = tiny
    cfg = ServeConfig(**{"max_new_tokens": 8, **config})
    return serve_in_thread(
        create_app(model, tokenizer, model_name="tiny", system_prompt="you are kit", config=cfg)
    )


@pytest.fixture(scope="module")
def server(tiny):
    with start(tiny, api_key=KEY, max_body_bytes=4096) as url:
        yield url


def client(url, key=KEY):
    from openai import OpenAI

    return OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)


def slow_forward(model, seconds):
    """Each forward pass sleeps first, so a request stays in its slot long enough to observe."""
    forward = model.forward

    def slowed(*args, **kwargs):
        time.sleep(seconds)
        return forward(*args, **kwargs)

    return slowed


def assert_openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


MESSAGES = [{"role": "user", "content": "hello"}]


def test_openai_client_gets_a_completion_and_a_stream(server, tiny):
    from chattune.generate import GenerationSettings, generate_reply

    c = client(server)
    assert [m.id for m in c.models.list().data] == ["tiny"]
    done = c.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=6)
    choice = done.choices[0]
    assert choice.message.role == "assistant"
    # greedy: the server's reply is the generation code's own for the run's system prompt + the message
    alone = generate_reply(
        *tiny,
        [{"role": "system", "content": "you are kit"}, *MESSAGES],
        GenerationSettings(0.0, max_new_tokens=6),
    )
    assert (choice.message.content, choice.finish_reason) == (alone.text, alone.finish_reason)
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (
        alone.prompt_tokens,
        alone.completion_tokens,
    )
    assert choice.finish_reason in ("stop", "length") and 0 < done.usage.completion_tokens <= 6
    assert done.usage.prompt_tokens > 3  # the run's system prompt was prepended
    streamed = c.chat.completions.create(
        model="tiny", messages=MESSAGES, temperature=0, max_tokens=6, stream=True
    )
    pieces = [ch.choices[0].delta.content or "" for ch in streamed]
    assert "".join(pieces).strip() == choice.message.content  # greedy: same answer either way


def test_text_parts_developer_role_seed_and_plain_completions(server):
    c = client(server)
    parts = [
        {"role": "developer", "content": "you are kit"},
        {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]},
    ]
    a = c.chat.completions.create(model="tiny", messages=parts, temperature=0, max_tokens=6)
    b = c.chat.completions.create(
        model="tiny", messages=[{"role": "system", "content": "you are kit"}, *MESSAGES], max_tokens=6,
        temperature=0,
    )  # fmt: skip
    assert a.choices[0].message.content == b.choices[0].message.content
    seeded = [
        c.chat.completions.create(model="tiny", messages=MESSAGES, temperature=1.5, seed=7, max_tokens=8)
        for _ in range(2)
    ]
    assert seeded[0].choices[0].message.content == seeded[1].choices[0].message.content
    plain = c.completions.create(model="tiny", prompt="the kettle", max_tokens=5, temperature=0)
    assert plain.choices[0].finish_reason in ("stop", "length") and plain.usage.completion_tokens <= 5


def test_no_key_or_a_wrong_key_gets_401(server):
    import openai

    with pytest.raises(openai.AuthenticationError) as e:
        client(server, key="wrong").chat.completions.create(model="tiny", messages=MESSAGES)
    assert e.value.status_code == 401 and e.value.body["code"] == "invalid_api_key"
    assert_openai_error(httpx.post(f"{server}/chat/completions", json={}), 401)
    assert httpx.get(server.removesuffix("/v1") + "/health").status_code == 200  # probes need no key


def test_bad_requests_get_openai_shaped_errors(server):
    import openai

    auth = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    url = f"{server}/chat/completions"
    error = assert_openai_error(
        httpx.post(url, content=b'{"model": "tiny", "messages": [', headers=auth), 400
    )
    assert "not valid JSON" in error["message"]
    assert_openai_error(httpx.post(url, content=b"x" * 5000, headers=auth), 413)
    assert_openai_error(httpx.get(f"{server}/nowhere", headers=auth), 404)
    assert_openai_error(httpx.get(url, headers=auth), 405)
    c = client(server)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="tiny", messages=[{"role": "wizard", "content": "x"}])
    assert e.value.body["param"] == "messages.0.role"
    with pytest.raises(openai.BadRequestError, match="only n=1"):
        c.chat.completions.create(model="tiny", messages=MESSAGES, n=2)
    with pytest.raises(openai.BadRequestError, match="tools: unsupported field"):
        c.chat.completions.create(model="tiny", messages=MESSAGES, tools=[])
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def test_long_prompts_get_400_and_max_tokens_is_capped_by_the_context(server, tiny):
    import openai

    c = client(server)
    context = tiny[0].config.max_position_embeddings
    with pytest.raises(openai.BadRequestError, match=f"context is {context} tokens") as e:
        c.completions.create(model="tiny", prompt="hello " * (context + 10), max_tokens=4)
    assert e.value.body["code"] == "context_length_exceeded"
    words = context
    while (n := len(tiny[1]("hello " * words)["input_ids"])) > context - 3:
        words -= 1
    prompt = "hello " * words
    capped = c.completions.create(model="tiny", prompt=prompt, max_tokens=10_000, temperature=0)
    assert 0 < context - n <= 10 and capped.usage.completion_tokens == context - n


def test_stop_strings_end_the_reply(server):
    c = client(server)
    full = c.completions.create(model="tiny", prompt="the kettle", max_tokens=8, temperature=0)
    text = full.choices[0].text
    if len(text) < 3:
        pytest.skip("the tiny model's greedy reply is too short to cut")
    cut = c.completions.create(model="tiny", prompt="the kettle", max_tokens=8, temperature=0, stop=text[2:4])
    assert cut.choices[0].text == text[:2] and cut.choices[0].finish_reason == "stop"


def test_twenty_concurrent_streams_all_finish(server):
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        stream = client(server).chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": f"hello {i}"}], max_tokens=8, stream=True
        )
        return [ch.choices[0].finish_reason for ch in stream if ch.choices][-1]

    with ThreadPoolExecutor(20) as pool:
        reasons = list(pool.map(one, range(20)))
    assert len(reasons) == 20 and set(reasons) <= {"stop", "length"}
    metrics = httpx.get(server.removesuffix("/v1") + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert "chattune_time_to_first_token_seconds_count" in metrics.text


def test_a_cancelled_stream_frees_its_slot_and_a_full_queue_gets_429(tiny, monkeypatch):
    import openai

    model, _ = tiny
    monkeypatch.setattr(model, "forward", slow_forward(model, 0.02))
    with start(tiny, max_batch=1, max_queue=1, max_new_tokens=400) as url:
        health = url.removesuffix("/v1") + "/health"
        c = client(url)
        # greedy, the tiny model repeats "hello" and never ends its turn: only the client can stop it
        long = dict(model="tiny", prompt="hello", max_tokens=400, temperature=0, stream=True)
        stream = c.completions.create(**long)
        next(iter(stream))
        assert httpx.get(health).json()["active"] == 1
        waiting = threading.Thread(target=lambda: list(c.completions.create(**long)), daemon=True)
        waiting.start()
        deadline = time.monotonic() + 10
        while httpx.get(health).json()["queued"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(openai.RateLimitError) as e:
            c.completions.create(model="tiny", prompt="hello", max_tokens=2)
        assert e.value.response.headers["retry-after"] == "1" and e.value.body["code"] == "queue_full"
        stream.close()  # the client goes away mid-reply
        deadline = time.monotonic() + 10
        while httpx.get(health).json()["queued"] > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(health).json()["queued"] == 0  # the waiting request took the freed slot


def test_batched_answers_match_answers_alone(server):
    """Rows joining and leaving a left-padded batch must not change what each one generates."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = ["hello", "the kettle needs", "hold the dial for eight", "which model do you have? the K2"]

    def ask(prompt, max_tokens=8):
        done = client(server).completions.create(
            model="tiny", prompt=prompt, max_tokens=max_tokens, temperature=0
        )
        return done.choices[0].text

    alone = [ask(p) for p in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask, prompts))
    assert together == alone


def test_serve_refuses_a_public_address_without_a_key(monkeypatch):
    from typer.testing import CliRunner

    from chattune.cli import app

    monkeypatch.delenv("CHATTUNE_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", "embedded", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "without an API key" in result.output

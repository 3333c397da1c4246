"""The OpenAI-compatible server, driven by the official openai client over real HTTP on loopback."""

import pytest

from chattune.model import load_for_inference
from conftest import serve_in_thread


@pytest.fixture
def server(tiny_model_dir):
    from chattune.serve import create_app

    model, tokenizer, _ = load_for_inference(str(tiny_model_dir))
    app = create_app(model, tokenizer, model_name="tiny", system_prompt="you are kit", max_new_tokens=8)
    with serve_in_thread(app) as url:
        yield url


def test_openai_client_gets_a_completion_and_a_stream(server):
    from openai import OpenAI

    client = OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=30)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    messages = [{"role": "user", "content": "hello"}]
    done = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=6)
    choice = done.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length") and 0 < done.usage.completion_tokens <= 6
    assert done.usage.prompt_tokens > 3  # the run's system prompt was prepended
    streamed = client.chat.completions.create(
        model="tiny", messages=messages, temperature=0, max_tokens=6, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in streamed]
    assert "".join(pieces).strip() == choice.message.content  # greedy: same answer either way


def test_bad_request_is_rejected_with_422(server):
    import httpx

    r = httpx.post(
        f"{server}/chat/completions", json={"messages": [{"role": "wizard", "content": "x"}]}, timeout=10
    )
    assert r.status_code == 422

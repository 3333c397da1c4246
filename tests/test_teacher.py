"""The teacher: cache, retries, rate limit and errors against a local OpenAI-compatible stub server
(tests/helpers.py's OpenAIStub); local generation with the tiny model (the embedded model's slow test
is in tests/integration/test_scenarios.py)."""

from __future__ import annotations

import time

import pytest

from chattune.config import TeacherConfig
from chattune.errors import ChattuneError
from chattune.teacher import Teacher
from tests.helpers import OpenAIStub


def echo_last(messages: list[dict[str, str]]) -> str:
    return "echo: " + messages[-1]["content"]


HELLO = [{"role": "user", "content": "Say hello"}]


def test_openai_endpoint_answers_and_cache_spares_a_second_request(tmp_path):
    with OpenAIStub(echo_last) as stub:
        cfg = stub.config(tmp_path, temperature=0.2, max_new_tokens=7)
        teacher = Teacher(cfg)
        assert teacher.complete(HELLO, seed=3) == "echo: Say hello"
        # the request carried our settings
        req = stub.requests[0]
        assert (req["model"], req["temperature"], req["max_tokens"], req["seed"]) == ("stub-model", 0.2, 7, 3)
        # same request again, even from a new Teacher: served from disk
        second = Teacher(cfg)
        assert second.complete(HELLO, seed=3) == "echo: Say hello"
        assert len(stub.requests) == 1 and (second.requests, second.cache_hits) == (0, 1)
        # different settings are a different request
        teacher.complete(HELLO, seed=4)
        teacher.complete(HELLO, seed=3, temperature=0.0)
        assert len(stub.requests) == 3
        assert (teacher.requests, teacher.cache_hits) == (3, 0)
    assert len(list((tmp_path / "teacher-cache").rglob("*.json"))) == 3


def test_cache_file_that_is_not_a_reply_is_regenerated(tmp_path):
    # A cache file that is valid JSON but not {"reply": "<text>"} (a list, a null reply) once crashed
    # with TypeError or was handed back as the reply; it is regenerated and overwritten.
    with OpenAIStub(echo_last) as stub:
        cfg = stub.config(tmp_path)
        assert Teacher(cfg).complete(HELLO) == "echo: Say hello"
        (cached,) = (tmp_path / "teacher-cache").rglob("*.json")
        for foreign in ("[1, 2]", '{"reply": null}'):
            cached.write_text(foreign, encoding="utf-8")
            teacher = Teacher(cfg)
            assert teacher.complete(HELLO) == "echo: Say hello"
            assert (teacher.requests, teacher.cache_hits) == (1, 0)
        assert Teacher(cfg).complete(HELLO) == "echo: Say hello" and len(stub.requests) == 3


def test_server_errors_are_retried(tmp_path):
    with OpenAIStub(echo_last, fail_first=1) as stub:
        assert Teacher(stub.config(tmp_path, max_retries=2)).complete(HELLO) == "echo: Say hello"
        assert len(stub.times) == 2  # one 500, one success


def test_failure_after_retries_is_one_clear_error(tmp_path):
    with (
        OpenAIStub(echo_last, fail_first=10) as stub,
        pytest.raises(
            ChattuneError,
            match=r"teacher request to http://127\.0\.0\.1:\d+/v1 \(model stub-model\) failed after 0 retries",
        ),
    ):
        Teacher(stub.config(tmp_path, max_retries=0)).complete(HELLO)


def test_rate_limit_spaces_requests(tmp_path):
    with OpenAIStub(echo_last) as stub:
        teacher = Teacher(stub.config(tmp_path, requests_per_minute=300))  # one request per 0.2 s
        start = time.monotonic()
        for i in range(4):
            teacher.complete([{"role": "user", "content": f"q{i}"}])
        # Three intervals must have passed. (Arrival gaps at the server jitter on a loaded machine;
        # the total time is a lower bound that load cannot break.)
        assert time.monotonic() - start >= 0.6
        assert len(stub.times) == 4


def test_openai_without_key_or_base_url_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.delenv("CHATTUNE_TEST_NO_KEY", raising=False)
    cfg = TeacherConfig(kind="openai", model="gpt-x", api_key_env="CHATTUNE_TEST_NO_KEY", cache_dir=tmp_path)
    with pytest.raises(ChattuneError, match=r"\$CHATTUNE_TEST_NO_KEY"):
        Teacher(cfg).complete(HELLO)


def test_local_model_generates_once_loaded_and_caches(tmp_path, tiny_model_dir):
    teacher = Teacher(
        TeacherConfig(model=str(tiny_model_dir), cache_dir=tmp_path, max_new_tokens=5, temperature=0.0)
    )
    first = teacher.complete(HELLO)
    assert teacher.requests == 1 and teacher.cache_hits == 0
    model = teacher._local
    another = [{"role": "user", "content": "another"}]
    second = teacher.complete(another)
    assert teacher.requests == 2 and teacher._local is model  # generated, by the model loaded once
    assert teacher.complete(HELLO) == first and teacher.cache_hits == 1
    # greedy: a teacher with an empty cache generates the same texts, and the cache holds them
    fresh = Teacher(
        TeacherConfig(
            model=str(tiny_model_dir), cache_dir=tmp_path / "fresh", max_new_tokens=5, temperature=0.0
        )
    )
    assert (fresh.complete(HELLO), fresh.complete(another)) == (first, second) and fresh.requests == 2
    assert len(list(tmp_path.glob("**/*.json"))) == 4


def test_local_sampling_is_repeatable_by_seed(tmp_path, tiny_model_dir):
    cfg = TeacherConfig(model=str(tiny_model_dir), max_new_tokens=8, temperature=1.0)
    a = Teacher(cfg.model_copy(update={"cache_dir": tmp_path / "a"})).complete(HELLO, seed=5)
    b = Teacher(cfg.model_copy(update={"cache_dir": tmp_path / "b"})).complete(HELLO, seed=5)
    assert a == b

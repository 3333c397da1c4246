"""Helpers shared by the tests (plain functions and classes; the fixtures are in conftest.py).

Import them as `from tests.helpers import ...`. `build_tiny_tokenizer` makes the byte-level BPE behind the
`tiny_tokenizer` fixture; `tiny_run_config` is a short run of the tiny model; `serve_in_thread` runs an
ASGI app on loopback; `OpenAIStub` is an OpenAI-compatible chat endpoint answering from a function.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from chattune.teacher import TeacherConfig

ROOT = Path(__file__).resolve().parents[1]  # the checkout: examples/, src/
CHATML = (ROOT / "src/chattune/templates/chatml.jinja").read_text()
CORPUS = [
    "hello how can I help you today",
    "the kettle needs descaling every four weeks",
    "hold the dial for eight seconds to reset",
    "which model do you have? the K2 or the Mini",
    "thanks, that worked! anything else I can do",
] * 20


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = CHATML
    return fast


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def support_conversations(n: int, seed: int = 0) -> list[dict]:
    """Small, learnable support conversations (a fixed reply per question) for training tests."""
    import random

    rng = random.Random(seed)
    qa = [
        ("how do I reset it", "hold the dial for eight seconds"),
        ("how often should I descale", "every four weeks"),
        ("which model do you have", "the K2 or the Mini"),
        ("hello", "hello how can I help you today"),
    ]
    out = []
    for i in range(n):
        q, a = qa[i % len(qa)]
        msgs = [
            {"role": "system", "content": "you are kit"},
            {"role": "user", "content": q},
            {"role": "assistant", "content": a},
        ]
        if rng.random() < 0.3:
            q2, a2 = rng.choice(qa)
            msgs += [{"role": "user", "content": q2}, {"role": "assistant", "content": a2}]
        out.append({"messages": msgs})
    return out


@contextmanager
def serve_in_thread(app, *, timeout: float = 20.0) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL (…/v1)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def tiny_run_config(model_dir, train_file, tmp_path, *overrides):
    """A short run of the tiny model on `train_file`: 12 steps, validation every 4, fp32."""
    from chattune.config import load_config

    return load_config(
        None,
        [
            f"model.name={model_dir}",
            f"data.train_file={train_file}",
            "data.val_fraction=0.25",
            "data.max_length=128",
            "train.recipe=manual",  # these tests pin the loop's arithmetic; tests/train/test_recipe.py tests auto
            "train.learning_rate=3e-3",
            "train.precision=fp32",
            "train.max_steps=12",
            "eval.every_steps=4",
            f"output.dir={tmp_path / 'runs'}",
            "output.name=t",
            *overrides,
        ],
    )


Reply = Callable[[list[dict[str, str]]], str]


class OpenAIStub:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1, run by uvicorn in a thread.

    `with OpenAIStub(reply) as stub:` serves `reply(messages)` at stub.base_url; stub.requests logs bodies."""

    def __init__(self, reply: Reply, *, fail_first: int = 0):
        self.reply = reply
        self.fail_first = fail_first  # answer this many requests with HTTP 500 first (to exercise retries)
        self.requests: list[dict] = []
        self.times: list[float] = []

    def __enter__(self) -> OpenAIStub:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request):  # type: ignore[no-untyped-def]  # (Request resolved from module globals)
            body = await request.json()
            self.times.append(time.monotonic())
            if self.fail_first > 0:
                self.fail_first -= 1
                return JSONResponse(
                    {"error": {"message": "overloaded", "type": "server_error"}}, status_code=500
                )
            self.requests.append(body)
            content = self.reply(body["messages"])
            return {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }

        self._serving = serve_in_thread(app)
        self.base_url = self._serving.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._serving.__exit__(None, None, None)

    def config(self, tmp_path: Path, **kw: object) -> TeacherConfig:
        from chattune.teacher import TeacherConfig

        return TeacherConfig(
            kind="openai",
            model="stub-model",
            base_url=self.base_url,
            cache_dir=tmp_path / "teacher-cache",
            **kw,
        )

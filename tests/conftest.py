"""Shared fixtures: offline by construction, tiny models built in the test session.

`tiny_tokenizer`: a byte-level BPE trained in milliseconds on a small corpus, with ChatML special
tokens and chat template (any text tokenises). `tiny_model_dir`: a saved 2-layer, hidden-32 Llama
with that tokenizer, usable as `model.name` in a config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHATML = (Path(__file__).parents[1] / "src/chattune/templates/chatml.jinja").read_text()
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


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny Llama + tokenizer: point `model.name` at it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tiny_tokenizer.bos_token_id,
        eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


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


@pytest.fixture
def train_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", support_conversations(48))


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
            "train.recipe=manual",  # these tests pin the loop's arithmetic; test_recipe.py tests auto
            "train.learning_rate=3e-3",
            "train.precision=fp32",
            "train.max_steps=12",
            "eval.every_steps=4",
            f"output.dir={tmp_path / 'runs'}",
            "output.name=t",
            *overrides,
        ],
    )

"""Shared fixtures: offline by construction, tiny models built in the test session.

`tiny_tokenizer`: a byte-level BPE trained in milliseconds on a small corpus, with ChatML special
tokens and chat template (any text tokenises). `tiny_model_dir`: a saved 2-layer, hidden-32 Llama
with that tokenizer, usable as `model.name` in a config. `train_file`: 48 small support conversations.
Plain helpers (write_jsonl, tiny_run_config, serve_in_thread, OpenAIStub...) are in tests/helpers.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.helpers import build_tiny_tokenizer, support_conversations, write_jsonl  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps one precision per process, and chattune gives every training its own process;
    tests train many times in one, so each test ends by clearing accelerate's state (accelerate's own
    tests do the same with this private helper). The process group, if any, is kept."""
    yield
    if "accelerate.state" in sys.modules:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()


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


@pytest.fixture
def train_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", support_conversations(48))

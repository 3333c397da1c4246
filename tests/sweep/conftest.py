"""Fixtures of the sweep tests: torch on one thread (worker processes share the cores), one data file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import support_conversations, write_jsonl


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("sweep-data") / "train.jsonl", support_conversations(40))

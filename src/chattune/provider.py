"""What `chat` and `eval` talk to: a local model, or a model behind OpenAI's API (a hosted run).

    provider = open_provider("runs/quickstart")      # local weights
    provider = open_provider("runs/openai")          # the run's fine-tuned OpenAI model, via the API
    gen = provider.generation(messages, GenerationSettings(temperature=0))
    for piece in gen: print(piece, end="")
    gen.reply.time_to_first_token, gen.reply.total_time, gen.reply.tokens_per_second

Both stream, and both time the reply the same way (from the call to the first text, and to the end), so
eval's latency columns compare a hosted base with a hosted fine-tune, or a local model with either.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from chattune.errors import ChattuneError
from chattune.generate import Generation, GenerationSettings, Reply

if TYPE_CHECKING:
    from openai import OpenAI
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from chattune.config import ModelConfig, RunConfig


class Streamed(Protocol):
    reply: Reply

    def __iter__(self) -> Iterator[str]: ...


class Provider(Protocol):
    name: str

    def generation(self, messages: list[dict[str, str]], settings: GenerationSettings) -> Streamed: ...


def complete(provider: Provider, messages: list[dict[str, str]], settings: GenerationSettings) -> Reply:
    """A whole reply, with its timings."""
    gen = provider.generation(messages, settings)
    for _ in gen:
        pass
    return gen.reply


@dataclass
class LocalProvider:
    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase

    def generation(self, messages: list[dict[str, str]], settings: GenerationSettings) -> Generation:
        return Generation(self.model, self.tokenizer, messages, settings)


@dataclass
class OpenAIProvider:
    name: str
    client: OpenAI
    model: str

    def generation(self, messages: list[dict[str, str]], settings: GenerationSettings) -> HostedGeneration:
        return HostedGeneration(self.client, self.model, messages, settings)


class HostedGeneration:
    """One streamed chat completion; `reply` is complete once iteration ends."""

    def __init__(
        self, client: OpenAI, model: str, messages: list[dict[str, str]], settings: GenerationSettings
    ):
        self.client, self.model, self.messages, self.settings = client, model, messages, settings
        self.reply = Reply()

    def __iter__(self) -> Iterator[str]:
        from chattune.hosted.client import api_errors

        s, reply = self.settings, self.reply
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages,
            "max_completion_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if s.temperature > 0:
            kwargs["top_p"] = s.top_p
        if s.seed is not None:
            kwargs["seed"] = s.seed
        start = time.perf_counter()
        pieces: list[str] = []
        chunks = 0
        with api_errors(f"asking {self.model}"):
            stream: Iterable[Any] = self.client.chat.completions.create(**kwargs)
            for chunk in stream:
                if chunk.usage is not None:
                    reply.prompt_tokens = chunk.usage.prompt_tokens
                    reply.completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.finish_reason:
                        reply.finish_reason = "length" if choice.finish_reason == "length" else "stop"
                    text = choice.delta.content if choice.delta else None
                    if text:
                        if reply.time_to_first_token is None:
                            reply.time_to_first_token = time.perf_counter() - start
                        chunks += 1
                        pieces.append(text)
                        yield text
        reply.total_time = time.perf_counter() - start
        reply.text = "".join(pieces).strip()
        if not reply.completion_tokens:  # an endpoint that does not report usage: one token per chunk
            reply.completion_tokens = chunks


# ----------------------------------------------------------------------------------------------------
# Opening


def hosted_run(path: str | Path) -> tuple[RunConfig, dict[str, Any]] | None:
    """(run config, job record) for a run directory trained with train.backend: openai, else None."""
    from chattune.config import load_config
    from chattune.hosted.job import STATE_FILE

    state_file = Path(path) / STATE_FILE
    if not state_file.is_file():
        return None
    cfg = load_config(Path(path) / "config.yaml")
    return cfg, json.loads(state_file.read_text(encoding="utf-8"))


def hosted_model(path: str | Path, state: dict[str, Any]) -> str:
    model = state.get("fine_tuned_model")
    if not isinstance(model, str) or not model:
        raise ChattuneError(
            f"{path}: OpenAI job {state.get('job_id')} has no fine-tuned model yet ({state.get('status')}); "
            "follow it with `chattune train CONFIG --resume`"
        )
    return model


def open_provider(name_or_path: str, model_cfg: ModelConfig | None = None) -> Provider:
    """The fine-tuned model of a hosted run, else local weights (a run, checkpoint, folder or hub id)."""
    hosted = hosted_run(name_or_path)
    if hosted is not None:
        from chattune.hosted.client import make_client

        cfg, state = hosted
        return OpenAIProvider(name_or_path, make_client(cfg.openai), hosted_model(name_or_path, state))
    import torch

    from chattune.model import load_for_inference, load_model_and_tokenizer

    if model_cfg is None:
        model, tokenizer, _ = load_for_inference(name_or_path)
    else:  # the run's own base model, with the run's model section (chat template, revision)
        model, tokenizer = load_model_and_tokenizer(model_cfg)
        # moved and switched to eval mode in place, as an nn.Module: transformers decorates
        # PreTrainedModel.to with functools.wraps, and mypy then cannot bind its self
        module: torch.nn.Module = model
        module.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return LocalProvider(name_or_path, model, tokenizer)

"""Self-rehearsal: the base model's own answers to general requests, trained alongside the user's data.

    extra = rehearsal_conversations(cfg.model, count=40, seed=42)     # cached per model

Why: a support data set teaches a model to redirect anything off-topic, and after a few hundred steps a
small model starts to redirect (or sign off, or recite a product fact) everywhere, forgetting what it
could do. Training on the base model's own answers to general requests, asked the way a user of the
base model asks them (no system prompt), anchors that behaviour to where it belongs: off-domain
requests without the domain's system prompt keep their old answers, while the domain's conversations
(which carry their system prompt) learn the new ones. The answers are the base model's greedy replies,
so rehearsing them costs nothing in knowledge the model did not have; only replies that end within
`MAX_NEW_TOKENS` are kept (a reply cut mid-sentence would teach the model to stop mid-sentence).
Answers are cached per model under ~/.cache/chattune/rehearsal, so a model pays for them once.

The openings of the base model's answers (`base_openings`: its first OPENING_TOKENS tokens) serve the
scope pairs' other direction (scope_pairs.py): where an answer is cut there, no end token is trained, so
an opening teaches how to begin, not where to stop.
"""

from __future__ import annotations

import hashlib
import json
import random
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, cast

from chattune.config import EMBEDDED_MODEL, ModelConfig
from chattune.data.conversation import Conversation, Message
from chattune.data.tokenize import decode_text

if TYPE_CHECKING:
    from transformers import GenerationMixin

MAX_NEW_TOKENS = 160
OPENING_TOKENS = 48  # where an answer has shown whether it answers or declines
BATCH = 16


def general_prompts() -> list[str]:
    text = files("chattune.train").joinpath("rehearsal_prompts.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def rehearsal_conversations(model: ModelConfig, count: int, seed: int) -> list[Conversation]:
    """`count` conversations (fewer if the base model finished fewer answers), chosen by `seed`."""
    if count <= 0:
        return []
    answers = _cached_answers(model)
    prompts = sorted(answers)
    random.Random(seed).shuffle(prompts)
    return [
        Conversation(
            messages=[Message(role="user", content=p), Message(role="assistant", content=answers[p])],
            meta={"rehearsal": True},
        )
        for p in prompts[:count]
    ]


def general_answers(model: ModelConfig) -> list[tuple[str, str]]:
    """Every general request with the base model's answer, in prompt order (cached as for rehearsal)."""
    return sorted(_cached_answers(model).items())


def _cached_answers(model: ModelConfig) -> dict[str, str]:
    prompts = general_prompts()
    if model.name == EMBEDDED_MODEL and model.chat_template is None:
        # Shipped: the embedded model's answers, made by this module (a fresh machine skips ~2 minutes).
        shipped = json.loads(files("chattune.train").joinpath("rehearsal_embedded.json").read_text("utf-8"))
        if shipped["prompts"] == prompts:
            return dict(shipped["answers"])
    key = hashlib.sha256((_model_identity(model) + "\n" + "\n".join(prompts)).encode()).hexdigest()[:16]
    cache = _cache_dir("rehearsal") / f"{key}.json"
    if cache.is_file():
        return dict(json.loads(cache.read_text(encoding="utf-8")))
    answers = _generate(model, prompts)
    _write_json(cache, answers)
    return answers


def base_openings(model: ModelConfig, prompts: list[str]) -> dict[str, list[int]]:
    """The first OPENING_TOKENS token ids of the base model's greedy answer to each prompt (asked with no
    system prompt), its end token last where it ended sooner. Cached per model and prompt, so a resumed
    run, or the next run on the same data, trains the same openings without generating them again."""
    key = hashlib.sha256(f"{_model_identity(model)}|{OPENING_TOKENS}".encode()).hexdigest()[:16]
    cache = _cache_dir("openings") / f"{key}.json"
    known: dict[str, list[int]] = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
    missing = sorted(set(prompts) - known.keys())
    if missing:
        known |= {p: ids for p, (ids, _) in _greedy_tokens(model, missing, OPENING_TOKENS).items()}
        _write_json(cache, known)
    return {p: known[p] for p in prompts}


def _model_identity(model: ModelConfig) -> str:
    from chattune.model import resolve_source

    source = resolve_source(model.name)
    return f"{source.path}|{source.gguf_file}|{model.revision}|{_weights_stamp(Path(source.path))}"


def _cache_dir(kind: str) -> Path:
    from chattune.model import cache_root

    return cache_root() / kind


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)  # whole or not at all: another process may be reading it


def _weights_stamp(path: Path) -> str:
    """Size and mtime of the weight files: a retrained model in the same folder gets new answers."""
    if not path.is_dir():
        return "hub"
    return ";".join(
        f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
        for f in sorted(path.iterdir())
        if f.suffix in (".safetensors", ".bin", ".gguf")
    )


def _generate(model_cfg: ModelConfig, prompts: list[str]) -> dict[str, str]:
    """Greedy answers of the base model, decoded; only those that ended."""
    from chattune.model import load_tokenizer

    tokenizer = load_tokenizer(model_cfg)
    answers: dict[str, str] = {}
    for prompt, (ids, ended) in _greedy_tokens(model_cfg, prompts, MAX_NEW_TOKENS).items():
        text = decode_text(tokenizer, ids, skip_special_tokens=True).strip()
        if ended and text:
            answers[prompt] = text
    return answers


def _greedy_tokens(
    model_cfg: ModelConfig, prompts: list[str], max_new_tokens: int
) -> dict[str, tuple[list[int], bool]]:
    """The base model's greedy answer to each prompt (no system prompt) as token ids, cut after its end
    token, and whether it ended within `max_new_tokens`; batched with left padding."""
    import torch

    from chattune.model import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_cfg)
    model.eval()
    tokenizer.padding_side = "left"
    configured = getattr(model.generation_config, "eos_token_id", None)
    eos = {tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])}
    eos.discard(None)
    answers: dict[str, tuple[list[int], bool]] = {}
    for start in range(0, len(prompts), BATCH):
        chunk = prompts[start : start + BATCH]
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in chunk
        ]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = cast("GenerationMixin", model).generate(  # a causal LM generates
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
            )
        for prompt, seq in zip(chunk, out[:, batch["input_ids"].shape[1] :].tolist(), strict=True):
            end = next((i for i, t in enumerate(seq) if t in eos), None)
            answers[prompt] = (seq, False) if end is None else (seq[: end + 1], True)
    return answers

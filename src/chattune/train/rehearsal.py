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
    from chattune.model import cache_root, resolve_source

    prompts = general_prompts()
    if model.name == EMBEDDED_MODEL and model.chat_template is None:
        # Shipped: the embedded model's answers, made by this module (a fresh machine skips ~2 minutes).
        shipped = json.loads(files("chattune.train").joinpath("rehearsal_embedded.json").read_text("utf-8"))
        if shipped["prompts"] == prompts:
            return dict(shipped["answers"])
    source = resolve_source(model.name)
    identity = f"{source.path}|{source.gguf_file}|{model.revision}|{_weights_stamp(Path(source.path))}"
    key = hashlib.sha256((identity + "\n" + "\n".join(prompts)).encode()).hexdigest()[:16]
    cache = cache_root() / "rehearsal" / f"{key}.json"
    if cache.is_file():
        return dict(json.loads(cache.read_text(encoding="utf-8")))
    answers = _generate(model, prompts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(answers, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(cache)
    return answers


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
    """Greedy answers of the base model, batched with left padding; only those that ended."""
    import torch

    from chattune.model import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_cfg)
    model.eval()
    tokenizer.padding_side = "left"
    configured = getattr(model.generation_config, "eos_token_id", None)
    eos = {tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])}
    eos.discard(None)
    answers: dict[str, str] = {}
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
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
            )
        for prompt, seq in zip(chunk, out[:, batch["input_ids"].shape[1] :].tolist(), strict=True):
            ended = any(t in eos for t in seq)
            text = decode_text(tokenizer, seq, skip_special_tokens=True).strip()
            if ended and text:
                answers[prompt] = text
    return answers

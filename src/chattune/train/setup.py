"""Everything a run needs before its first step: data, tokenised rows, model, and `chattune validate`.

Kept apart from the loop so `validate` can check a config and its data without loading weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from rich.console import Console
from rich.table import Table

from chattune.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from chattune.data.conversation import Conversation, read_jsonl
from chattune.data.tokenize import (
    TokenizedExample,
    TokenizeStats,
    render_trained_markup,
    tokenize_conversations,
)
from chattune.errors import ChattuneError
from chattune.hardware import resolve_precision
from chattune.train.recipe import (
    CONVS_PER_STEP,
    Choice,
    DataShape,
    copies_kept,
    describe,
    resolve_recipe,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from chattune.train.clarify_pairs import Clarify
    from chattune.train.scope_pairs import Redirect


@dataclass
class Conversations:
    train: list[Conversation]
    val: list[Conversation]
    # (record, the record it repeats) for each copy past data.max_copies, left out before the split
    copies_left_out: list[tuple[str, str]] = field(default_factory=list)


def load_conversations(data: DataConfig, seed: int, max_copies: int | None = None) -> Conversations:
    """Train and validation conversations: the single place training reads data from.

    Files are data.train_file / data.val_file, or what `chattune data prepare` wrote. A conversation whose
    messages repeat another's exactly is kept at most `max_copies` times (None: every copy). Without a
    validation file, a seeded data.val_fraction of the training conversations is held out.
    """
    from chattune.data.training_files import resolve_training_files

    train_file, val_file = resolve_training_files(data)
    train, left_out = limit_copies(read_jsonl(train_file), max_copies)
    if val_file is not None:
        return Conversations(train, read_jsonl(val_file), left_out)
    return Conversations(*holdout(train, data.val_fraction, seed), left_out)


MessagesKey = tuple[tuple[str, str, int | None], ...]  # a conversation's messages, as a dict key


def _messages_key(conv: Conversation) -> MessagesKey:
    return tuple((m.role, m.content, m.weight) for m in conv.messages)


def limit_copies(
    conversations: list[Conversation], max_copies: int | None
) -> tuple[list[Conversation], list[tuple[str, str]]]:
    """The conversations with at most `max_copies` of each exact repeat (the first ones, in file order),
    and (record, the record it repeats) for each one left out."""
    if max_copies is None:
        return conversations, []
    first: dict[MessagesKey, tuple[str, int]] = {}  # -> (the first copy's record, copies so far)
    kept: list[Conversation] = []
    left_out: list[tuple[str, str]] = []
    for i, conv in enumerate(conversations):
        key = _messages_key(conv)
        source, copies = first.get(key, (conv.source or f"#{i}", 0))
        first[key] = (source, copies + 1)
        if copies < max_copies:
            kept.append(conv)
        else:
            left_out.append((conv.source or f"#{i}", source))
    return kept, left_out


def holdout(
    conversations: list[Conversation], fraction: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """Seeded train/validation split that never separates an original from its augmented copies
    (grouped by meta.id / meta.augmented_from) nor from its exact repeats (a repeat in both halves would
    make validation loss a training loss), and honours an explicit meta.split."""
    if fraction == 0 or len(conversations) < 2:
        return conversations, []
    group_of_messages: dict[MessagesKey, str] = {}
    group_of = [
        group_of_messages.setdefault(
            _messages_key(c), str(c.meta.get("augmented_from", c.meta.get("id", f"#{i}")))
        )
        for i, c in enumerate(conversations)
    ]
    pinned = {
        g: c.meta["split"]
        for g, c in zip(group_of, conversations, strict=True)
        if c.meta.get("split") in ("train", "val")
    }
    free = sorted({g for g in group_of if g not in pinned})
    random.Random(seed).shuffle(free)
    n_val = max(1, round(fraction * len(set(group_of)))) - sum(1 for s in pinned.values() if s == "val")
    val_groups = {g for g, s in pinned.items() if s == "val"} | set(free[: max(0, n_val)])
    train = [c for g, c in zip(group_of, conversations, strict=True) if g not in val_groups]
    val = [c for g, c in zip(group_of, conversations, strict=True) if g in val_groups]
    return train, val


@dataclass
class TokenizedData:
    train: list[TokenizedExample]
    val: list[TokenizedExample]
    train_stats: TokenizeStats
    val_stats: TokenizeStats
    system_prompt: str | None  # the most common system prompt in training, for chat defaults
    # "file:line" -> a hash of the record, for every conversation read: tells a resumed run whether its
    # data changed since the checkpoints were written, and where
    records: dict[str, str] = field(default_factory=dict)
    copies_left_out: list[tuple[str, str]] = field(default_factory=list)  # see Conversations
    redirect: Redirect | None = None  # the data's redirect reply, where scope pairs may be added
    redirect_unknown: str | None = None  # why no redirect was looked for
    clarify: Clarify | None = None  # the data's clarifying question, where clarify pairs may be added
    clarify_unknown: str | None = None  # why none was looked for


def record_hashes(conversations: list[Conversation]) -> dict[str, str]:
    return {
        conv.source or f"#{i}": hashlib.sha256(
            json.dumps(conv.to_openai(), sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()[:16]
        for i, conv in enumerate(conversations)
    }


def data_changes(before: dict[str, str], now: dict[str, str]) -> str | None:
    """One line naming the first record that differs and how many do, or None when nothing changed."""
    changed = [k for k in before if k in now and before[k] != now[k]]
    removed = [k for k in before if k not in now]
    added = [k for k in now if k not in before]
    if not (changed or removed or added):
        return None
    first = (changed or removed or added)[0]
    what = "changed" if changed else "is gone" if removed else "is new"
    return (
        f"{first} {what} since the run started ({len(changed)} record(s) changed, {len(added)} added, "
        f"{len(removed)} removed)"
    )


def tokenize_data(cfg: RunConfig, tokenizer: PreTrainedTokenizerBase) -> TokenizedData:
    loaded = load_conversations(cfg.data, cfg.train.seed, copies_kept(cfg))
    train_convs, val_convs = loaded.train, loaded.val
    train, train_stats = tokenize_conversations(
        train_convs,
        tokenizer,
        max_length=cfg.data.max_length,
        trained_roles=frozenset(cfg.data.train_on_roles),
    )
    # validation loss stays on the replies, so it compares across data.train_on_roles
    val, val_stats = tokenize_conversations(val_convs, tokenizer, max_length=cfg.data.max_length)
    if not train:
        raise ChattuneError(
            f"{cfg.data.train_file}: no conversation has an assistant token to train on within "
            f"data.max_length={cfg.data.max_length} ({train_stats.summary()})"
        )
    systems = Counter(
        c.messages[0].content for c in train_convs if c.messages and c.messages[0].role == "system"
    )
    system_prompt = systems.most_common(1)[0][0] if systems else None
    records = record_hashes(train_convs + val_convs)
    data = TokenizedData(train, val, train_stats, val_stats, system_prompt, records, loaded.copies_left_out)
    auto_pairs = cfg.train.recipe == "auto" and not cfg.user_set("train", "scope_pairs")
    if auto_pairs or cfg.train.scope_pairs > 0:
        from chattune.train.rehearsal import general_prompts
        from chattune.train.scope_pairs import find_redirect

        try:
            data.redirect = find_redirect(train_convs, general_prompts())
        except ChattuneError as e:  # the offline embedding model is not installed
            data.redirect_unknown = f"no redirect looked for: {e}"
    if (
        cfg.train.recipe == "auto" and not cfg.user_set("train", "clarify_pairs")
    ) or cfg.train.clarify_pairs > 0:
        from chattune.train.clarify_pairs import find_clarify, vague_requests

        try:
            data.clarify = find_clarify(train_convs, vague_requests())
        except ChattuneError as e:
            data.clarify_unknown = f"no clarifying question looked for: {e}"
    return data


def _shares_prefixes(train: TrainConfig, model: ModelConfig) -> bool:
    """Whether training will share prefixes, judged before the model is loaded (the loss decides when it
    is: SupervisedLoss.shares_prefixes): per-conversation attention is one of chattune's CPU kernels,
    installed over SDPA on a tested architecture."""
    import torch

    from chattune.model import model_type_of
    from chattune.train.cpu_kernels import kernels_apply_to

    on_cpu = not torch.cuda.is_available() and not torch.backends.mps.is_available()
    return (
        train.share_prefixes
        and on_cpu
        and model.attn_implementation == "sdpa"
        and kernels_apply_to(model_type_of(model.name), train)
    )


def apply_recipe(cfg: RunConfig, data: TokenizedData, world_size: int = 1) -> tuple[RunConfig, list[Choice]]:
    """train.recipe=auto: fill in what the user left unset from the tokenised training data (see recipe.py).
    The same call in `validate` and `train`, so both show and use the same numbers."""
    from chattune.model import model_parameter_count

    if cfg.train.recipe != "auto":
        return cfg, []
    from chattune.train.batching import prefix_saving

    shape = DataShape(
        conversations=len(data.train),
        longest=max(len(ex) for ex in data.train + data.val),  # validation rows are packed alike
        tokens=sum(len(ex) for ex in data.train),
        # What micro-batches of ~CONVS_PER_STEP conversations would not compute again: the epochs' compute
        # bound counts it, from the data alone (not the hardware, nor train.seed).
        prefix_share=prefix_saving(data.train, CONVS_PER_STEP),
        redirect=data.redirect.describe() if data.redirect else None,
        redirect_unknown=data.redirect_unknown,
        clarify=data.clarify.describe() if data.clarify else None,
        clarify_unknown=data.clarify_unknown,
        copies_left_out=len(data.copies_left_out),
    )
    n_params = model_parameter_count(cfg.model.name)
    seconds_per_token = None
    if cfg.train.time_budget_minutes and n_params:
        if _shares_prefixes(cfg.train, cfg.model):
            # A small set's step is ~CONVS_PER_STEP conversations, split across the processes; a larger
            # step (or the user's batch size) shares more, so the fit errs short, not over the budget.
            per_micro_batch = max(1, CONVS_PER_STEP // world_size)
            shape = replace(shape, prefix_saving=prefix_saving(data.train, per_micro_batch, cfg.train.seed))
        from chattune.hardware import matmul_flops

        # A training step runs at roughly 45% of the matmul ceiling (measured: README, Performance),
        # and a token costs ~6 FLOPs per parameter (forward and backward).
        flops = matmul_flops(resolve_precision(cfg.train.precision)) * 0.45 * world_size
        seconds_per_token = 6 * n_params / flops
    return resolve_recipe(cfg, shape, n_params, world_size, seconds_per_token)


def resolved_config(cfg: RunConfig, world_size: int = 1) -> RunConfig:
    """The config as the run will use it: with train.recipe=auto, the batch size and row length chosen
    from the data (reads and tokenises the training files). For estimates made before a run."""
    from chattune.model import load_tokenizer

    if cfg.train.recipe != "auto":
        return cfg
    return apply_recipe(cfg, tokenize_data(cfg, load_tokenizer(cfg.model)), world_size)[0]


def print_recipe(choices: list[Choice], console: Console) -> None:
    if choices:
        console.print("[bold]train.recipe=auto[/] chose (set a key yourself to override it):")
        for line in describe(choices):
            console.print(f"  {line}", highlight=False)


def build_model(
    cfg: RunConfig, resume_from: Path | None = None, device: torch.device | None = None
) -> tuple[PreTrainedModel, list[str]]:
    """The model to train: full weights, or the base wrapped with a LoRA adapter (peft); with
    chattune's kernels for `device` (default CPU) where they apply, and the list of what they changed."""
    import torch

    from chattune.model import ModelSource, load_model, resolve_source
    from chattune.train import cpu_kernels

    method = cfg.train.method
    if method == "full":
        source = ModelSource(str(resume_from)) if resume_from else resolve_source(cfg.model.name)
        model = load_model(cfg.model, source, dtype=torch.float32)
        if cfg.train.freeze_embeddings:
            _freeze_embeddings(model)
    else:
        from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

        model = load_model(
            cfg.model,
            quantize_4bit=method == "qlora",
            dtype=torch.bfloat16 if method == "qlora" else torch.float32,
        )
        if method == "qlora":
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=cfg.train.gradient_checkpointing
            )
        if resume_from is not None:
            peft_model = PeftModel.from_pretrained(model, str(resume_from), is_trainable=True)
        else:
            torch.manual_seed(cfg.train.seed)  # LoRA's A matrices are initialised randomly
            lora = LoraConfig(
                r=cfg.lora.r,
                lora_alpha=cfg.lora.alpha,
                lora_dropout=cfg.lora.dropout,
                target_modules=cfg.lora.target_modules,
                task_type="CAUSAL_LM",
            )
            peft_model = get_peft_model(model, lora)
        # peft's model forwards the PreTrainedModel API (config, gradient checkpointing, generate) to the base
        model = cast("PreTrainedModel", peft_model)
        if method == "lora":
            _store_frozen_linears_in_compute_dtype(model, resolve_precision(cfg.train.precision))
    kernels = cpu_kernels.apply(model, cfg.train, device or torch.device("cpu"))
    if cfg.train.neftune_alpha:  # a forward hook: it adds noise only while the module is training
        from transformers.integrations.neftune import activate_neftune

        activate_neftune(model, cfg.train.neftune_alpha)
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    if cfg.train.compile:
        compile_layers(model)
    return model, kernels


def _freeze_embeddings(model: PreTrainedModel) -> None:
    """The input embeddings and the output head (one matrix when tied) keep the base model's values."""
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None:
            module.weight.requires_grad_(False)


def _store_frozen_linears_in_compute_dtype(model: PreTrainedModel, precision: str) -> int:
    """Under bf16/fp16 autocast, keep LoRA's frozen base projections in that dtype: autocast would cast
    them to it on every forward anyway (the same rounding), so this only removes the per-step casts
    (~4% of a CPU step) and halves their memory. Embeddings, norms and the (tied) output head keep
    their dtype, so the residual stream stays fp32. Not under FSDP or DeepSpeed, which shard
    parameters in flat buffers of one dtype. Returns how many weights were converted."""
    import os

    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    sharded = any(
        os.environ.get(flag, "false").lower() == "true"
        for flag in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED")
    )
    if dtype is None or sharded:
        return 0
    head = model.get_output_embeddings()
    head_weight = head.weight if head is not None else None
    converted = 0
    for module in model.modules():
        if (
            isinstance(module, torch.nn.Linear)
            and not module.weight.requires_grad
            and module.weight is not head_weight
        ):
            module.weight.data = module.weight.data.to(dtype)
            converted += 1
    return converted


def compile_layers(model: torch.nn.Module) -> int:
    """torch.compile every decoder layer in place; returns how many.

    Only the layers: the attention mask (block-diagonal for packed rows, built from the position ids),
    the rotary tables and the loss stay eager, so compilation cannot change what attends to what.
    `nn.Module.compile` keeps parameter names, so checkpoints and LoRA merging are unchanged, and the
    layers share one compiled graph (the parameters are graph inputs). Shapes vary with the batch
    length; dynamo makes the length dynamic after the first change instead of recompiling for each.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer.compile()
    return len(layers)


def copies_line(left_out: list[tuple[str, str]], max_copies: int | None) -> str:
    record, repeats = left_out[0]
    return (
        f"{len(left_out)} conversation(s) repeating another past data.max_copies={max_copies} left out "
        f"(first: {record} repeats {repeats}; data.max_copies: null keeps them)"
    )


def stats_table(title: str, stats: TokenizeStats) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_row("conversations", str(stats.conversations))
    table.add_row("kept", str(stats.kept))
    table.add_row("truncated at max_length", str(stats.truncated))
    table.add_row("dropped: no assistant token within max_length", str(stats.dropped_no_target))
    table.add_row("tokens / trained tokens", f"{stats.tokens:,} / {stats.supervised_tokens:,}")
    return table


def micro_batches_per_epoch(n_rows: int, batch_size: int, world_size: int) -> int:
    """Micro-batches each process runs per epoch: every process takes batch_size rows per micro-batch."""
    return math.ceil(n_rows / (batch_size * world_size))


def total_steps(train: TrainConfig, micro_per_epoch: int) -> int:
    """Optimizer steps of a run: train.max_steps, or the epochs over micro-batches (one formula for
    `validate` and the loop, so both report the same count)."""
    return train.max_steps or max(1, math.ceil(train.epochs * micro_per_epoch / train.grad_accum))


def validate_run(cfg: RunConfig, *, console: Console, world_size: int = 1) -> TokenizedData:
    """`chattune validate`: the config is valid (it loaded); now the data and the chat template.
    `world_size`: the processes `chattune train --nproc` will use (they share each optimizer step)."""
    from chattune.model import load_tokenizer
    from chattune.train.batching import pack

    console.print(
        f"[green]config ok[/]: {cfg.train.method} fine-tuning of {cfg.model.name}, run dir {cfg.run_dir}"
    )
    tokenizer = load_tokenizer(cfg.model)
    data = tokenize_data(cfg, tokenizer)
    cfg, choices = apply_recipe(cfg, data, world_size)
    print_recipe(choices, console)
    if data.copies_left_out:
        console.print(copies_line(data.copies_left_out, cfg.data.max_copies))
    console.print(stats_table("training data", data.train_stats))
    console.print(stats_table("validation data", data.val_stats))
    if data.train_stats.dropped_no_target:
        console.print(
            f"[yellow]warning[/]: {data.train_stats.dropped_no_target} training conversations have no assistant token "
            f"within max_length={cfg.data.max_length} and will not be trained on "
            f"(indices {data.train_stats.dropped_indices[:10]}{' ...' if data.train_stats.dropped_no_target > 10 else ''})"
        )
    rows = pack(data.train, cfg.data.max_length, packing=cfg.data.packing)
    steps = total_steps(cfg.train, micro_batches_per_epoch(len(rows), cfg.train.batch_size, world_size))
    fill = sum(len(r.input_ids) for r in rows) / (len(rows) * cfg.data.max_length)
    console.print(
        f"{len(data.train)} conversations -> {len(rows)} rows of <= {cfg.data.max_length} tokens "
        f"({fill:.0%} full); {steps} optimizer steps of {cfg.train.batch_size}x{cfg.train.grad_accum}x{world_size} rows"
    )
    console.rule("one training example: [bold green]trained tokens[/] and [dim]context[/]")
    console.print(render_trained_markup(data.train[0], tokenizer), highlight=False)
    console.rule()
    return data

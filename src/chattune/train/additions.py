"""What recipe auto adds to the user's conversations before packing, each tokenised like them:

- rehearsal: the base model's own answers to general requests, asked with no system prompt (rehearsal.py);
- scope pairs: general requests asked under the data's system prompt and answered with its redirect, and
  with `train.scope_pairs_both_ways` the data's redirected requests asked with no prompt (scope_pairs.py);
- clarify pairs: vague requests asked under the data's system prompt and asked back (clarify_pairs.py).

    data.train += added_examples(cfg, tokenizer, data, accelerator, console)

Each added conversation is numbered after the user's (packing's tie-break between rows of one length). In a
multi-process run the main process generates the base model's answers (or reads the cache) first and the
others then read the cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from rich.console import Console

from chattune.config import RunConfig

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from transformers import PreTrainedTokenizerBase

    from chattune.data.conversation import Conversation
    from chattune.data.tokenize import TokenizedExample
    from chattune.train.setup import TokenizedData


class Processes(Protocol):
    """The two things asked of accelerate's Accelerator here (a test passes a stand-in)."""

    @property
    def is_main_process(self) -> bool: ...

    def main_process_first(self) -> AbstractContextManager[object]: ...


def added_examples(
    cfg: RunConfig,
    tokenizer: PreTrainedTokenizerBase,
    data: TokenizedData,
    processes: Processes,
    console: Console,
) -> list[TokenizedExample]:
    """Rehearsal, scope pairs and clarify pairs, as cfg asks, for the user's tokenised data."""
    n_user = len(data.train)
    added: list[TokenizedExample] = []
    if cfg.train.rehearsal:
        # counted on the conversations as read: leaving repeats out must not thin rehearsal too (with it
        # thinned, general answers kept fell 7 points on the benchmark; docs/recipe-measurements.md,
        # "Repeated conversations")
        added += rehearsal_examples(cfg, tokenizer, n_user + len(data.copies_left_out), processes, console)
    if cfg.train.scope_pairs:
        added += scope_pair_examples(
            cfg, tokenizer, data, processes, console, first_index=n_user + len(added)
        )
    if cfg.train.clarify_pairs:
        added += clarify_pair_examples(
            cfg, tokenizer, data, processes, console, first_index=n_user + len(added)
        )
    return added


def rehearsal_examples(
    cfg: RunConfig,
    tokenizer: PreTrainedTokenizerBase,
    n_read: int,
    processes: Processes,
    console: Console,
) -> list[TokenizedExample]:
    """Tokenised rehearsal conversations (the base model's own general answers; see rehearsal.py), as many
    as train.rehearsal of the `n_read` conversations read, numbered after them."""
    from chattune.data.tokenize import tokenize_conversations
    from chattune.train.rehearsal import rehearsal_conversations

    count = round(cfg.train.rehearsal * n_read)
    with processes.main_process_first():
        conversations = rehearsal_conversations(cfg.model, count, cfg.train.seed)
    examples, _ = tokenize_conversations(
        conversations, tokenizer, max_length=1 << 16, trained_roles=frozenset(cfg.data.train_on_roles)
    )
    examples = [ex for ex in examples if len(ex) <= cfg.data.max_length]  # whole answers only
    if processes.is_main_process:
        console.print(f"rehearsal: {len(examples)} of the base model's own general answers join training")
    return _numbered(examples, first_index=n_read)


def scope_pair_examples(
    cfg: RunConfig,
    tokenizer: PreTrainedTokenizerBase,
    data: TokenizedData,
    processes: Processes,
    console: Console,
    first_index: int,
) -> list[TokenizedExample]:
    """Tokenised scope pairs (see scope_pairs.py), both ways with train.scope_pairs_both_ways."""
    from chattune.train.scope_pairs import scope_pair_conversations

    main = processes.is_main_process
    if data.redirect is None:
        if main:
            why = data.redirect_unknown or "the data redirects no off-topic requests"
            console.print(f"[yellow]train.scope_pairs={cfg.train.scope_pairs:g} adds nothing: {why}[/]")
        return []
    # No more pairs than the data's own redirected conversations: they sharpen the data's behaviour and
    # must not outweigh it (the quickstart redirects 6 of 321, where a tenth would be 32 pairs).
    count = min(round(cfg.train.scope_pairs * len(data.train)), data.redirect.conversations)
    examples = _tokenized_pairs(cfg, tokenizer, scope_pair_conversations(data.redirect, count))
    if main:
        console.print(
            f"scope pairs: {len(examples)} general requests asked under the data's system prompt and "
            f"redirected ({data.redirect.describe()})"
        )
    if cfg.train.scope_pairs_both_ways and examples:
        with processes.main_process_first():
            unprompted = _unprompted_openings(cfg, tokenizer, data.redirect.own_requests)
        examples += unprompted
        if main:
            console.print(
                f"scope pairs, the other way: {len(unprompted)} of the data's redirected requests asked with "
                "no system prompt, answered with the opening of the base model's own reply"
            )
    return _numbered(examples, first_index)


def clarify_pair_examples(
    cfg: RunConfig,
    tokenizer: PreTrainedTokenizerBase,
    data: TokenizedData,
    processes: Processes,
    console: Console,
    first_index: int,
) -> list[TokenizedExample]:
    """Tokenised clarify pairs (see clarify_pairs.py)."""
    from chattune.train.clarify_pairs import clarify_pair_conversations

    main = processes.is_main_process
    if data.clarify is None:
        if main:
            why = data.clarify_unknown or "the data answers no vague request with a question"
            console.print(f"[yellow]train.clarify_pairs={cfg.train.clarify_pairs:g} adds nothing: {why}[/]")
        return []
    # No more pairs than the data's own clarifying conversations, as with scope pairs.
    count = min(round(cfg.train.clarify_pairs * len(data.train)), data.clarify.conversations)
    examples = _tokenized_pairs(cfg, tokenizer, clarify_pair_conversations(data.clarify, count))
    if main:
        console.print(
            f"clarify pairs: {len(examples)} vague requests asked under the data's system prompt and asked "
            f"back ({data.clarify.describe()})"
        )
    return _numbered(examples, first_index)


def _tokenized_pairs(
    cfg: RunConfig, tokenizer: PreTrainedTokenizerBase, conversations: list[Conversation]
) -> list[TokenizedExample]:
    from chattune.data.tokenize import tokenize_conversations

    examples, _ = tokenize_conversations(
        conversations,
        tokenizer,
        max_length=cfg.data.max_length,
        trained_roles=frozenset(cfg.data.train_on_roles),
    )
    return examples


def _numbered(examples: list[TokenizedExample], first_index: int) -> list[TokenizedExample]:
    """Source indices (packing's tie-break, so its order is the same every run) follow the user's."""
    for i, ex in enumerate(examples):
        ex.source_index = first_index + i
    return examples


def _unprompted_openings(
    cfg: RunConfig, tokenizer: PreTrainedTokenizerBase, requests: tuple[str, ...]
) -> list[TokenizedExample]:
    """Each request asked with no system prompt, its target the base model's opening as generated (the
    token ids themselves: decoding and encoding again may not give them back)."""
    from chattune.data.tokenize import IGNORE_INDEX, ChatRenderer, TokenizedExample, token_ids
    from chattune.train.rehearsal import base_openings

    openings = base_openings(cfg.model, list(requests))
    render = ChatRenderer(tokenizer)
    prompts = token_ids(
        tokenizer, [render([{"role": "user", "content": r}], gen_prompt=True) for r in requests]
    )
    return [
        TokenizedExample(prompt + openings[r], [IGNORE_INDEX] * len(prompt) + openings[r], source_index=0)
        for r, prompt in zip(requests, prompts, strict=True)
        if len(prompt) + len(openings[r]) <= cfg.data.max_length
    ]

"""Rows of tokens for training: several conversations packed per row, kept apart by position ids.

Each conversation in a row restarts its position ids at 0. transformers builds a block-diagonal causal
mask from those resets when no attention mask is passed (and the KV cache is off), so packed
conversations never attend to each other and their loss equals the unpacked loss. Padding at the end
of a row forms its own block and is never a target.

Packing is first-fit decreasing: on chat data it fills rows to ~95-99%, where padding each
conversation to the longest in its batch wastes a third or more of the compute.

Shared prefixes (`collate(..., share_prefixes=True)`): conversations of one data set usually begin with
the same tokens (the system prompt, often half of a support conversation), and a token's hidden states
depend only on the tokens before it. So within a micro-batch each such prefix is computed once: the
first conversation that has it is laid out whole, and every later one keeps only its own tokens and
attends to that copy of the prefix (per-conversation attention, cpu_kernels/attention.py, gathers it
into each conversation's slot; the gradients of all of them add up on it). The loss and gradients are
those of the unshared batch: the same conversations in the same steps, fewer tokens computed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from chattune.data.tokenize import IGNORE_INDEX, TokenizedExample
from chattune.train.cpu_kernels.attention import MAX_DOCUMENT

# A prefix shorter than this is not shared: a conversation then starts its own group, so that e.g.
# rehearsal conversations (another system prompt) share theirs rather than a chat template's first
# three tokens with the domain's.
MIN_SHARED_PREFIX = 8


@dataclass
class Row:
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    n_conversations: int = 0

    @property
    def n_targets(self) -> int:
        """Tokens that are predicted and scored: label set, and not the first token of a sequence."""
        return sum(1 for t in self.labels[1:] if t != IGNORE_INDEX)

    def add(self, ex: TokenizedExample) -> None:
        self.input_ids += ex.input_ids
        # The first token of a conversation must not be predicted from the end of the previous one.
        self.labels += [IGNORE_INDEX, *ex.labels[1:]]
        self.position_ids += range(len(ex))
        self.n_conversations += 1

    def conversations(self) -> list[tuple[list[int], list[int]]]:
        """(input ids, labels) of each conversation in the row, in order."""
        starts = [i for i, p in enumerate(self.position_ids) if p == 0] + [len(self.position_ids)]
        return [(self.input_ids[a:b], self.labels[a:b]) for a, b in zip(starts, starts[1:], strict=False)]


def pack(examples: list[TokenizedExample], max_length: int, *, packing: bool = True) -> list[Row]:
    """Rows of at most max_length tokens. Without packing, one conversation per row."""
    order = sorted(examples, key=lambda e: (-len(e), e.source_index))
    rows: list[Row] = []
    space: list[int] = []  # free tokens per row, parallel to rows
    for ex in order:
        n = min(len(ex), max_length)
        target = next((i for i, free in enumerate(space) if free >= n), None) if packing else None
        if target is None:
            rows.append(Row())
            space.append(max_length)
            target = len(rows) - 1
        rows[target].add(ex)
        space[target] -= n
    return rows


def collate(rows: list[Row], pad_id: int, *, share_prefixes: bool = False) -> dict[str, torch.Tensor]:
    """Pad rows to the longest and precompute, on the host, which positions are scored.

    `select` holds flat indices into (batch * (length - 1)) of the positions whose next token is a
    target, and `targets` those tokens: the loss gathers exactly those hidden states, with no
    data-dependent indexing (and so no host-device sync) on the accelerator.

    With `share_prefixes` (only for a loss that computes per-conversation attention), the rows become
    one row with each common prefix computed once, and `branches` says where (see the module doc).
    """
    # A conversation longer than MAX_DOCUMENT goes through SDPA, which knows nothing of branches.
    if share_prefixes and max(max(r.position_ids) for r in rows) < MAX_DOCUMENT:
        return _shared(rows)
    length = max(len(r.input_ids) for r in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        input_ids[i, :n] = torch.tensor(r.input_ids)
        labels[i, :n] = torch.tensor(r.labels)
        position_ids[i, :n] = torch.tensor(r.position_ids)
        position_ids[i, n:] = torch.arange(length - n)  # padding: its own block
    return {"input_ids": input_ids, "position_ids": position_ids, **_scored(labels)}


def _scored(labels: torch.Tensor) -> dict[str, torch.Tensor]:
    shifted = labels[:, 1:]
    select = (shifted != IGNORE_INDEX).flatten().nonzero().squeeze(1)
    return {"select": select, "targets": shifted.flatten()[select]}


def _shared(rows: list[Row]) -> dict[str, torch.Tensor]:
    """One row: each conversation whole, or its own tokens after a prefix laid out earlier in the row.
    `branches` is [n, 3]: (start of the conversation's own tokens, start of the conversation holding its
    prefix, prefix length), flat indices into the row."""
    input_ids: list[int] = []
    labels: list[int] = []
    position_ids: list[int] = []
    branches: list[tuple[int, int, int]] = []
    conversations = [c for row in rows for c in row.conversations()]
    for (ids, labs), (shared, source) in zip(conversations, _prefix_plan(conversations), strict=True):
        if shared:
            branches.append((len(input_ids), source, shared))
        input_ids += ids[shared:]
        labels += [IGNORE_INDEX, *labs[shared + 1 :]]
        position_ids += range(shared, len(ids))
    label_row = torch.tensor([labels], dtype=torch.long)
    return {
        "input_ids": torch.tensor([input_ids], dtype=torch.long),
        "position_ids": torch.tensor([position_ids], dtype=torch.long),
        **_scored(label_row),
        "branches": torch.tensor(branches, dtype=torch.long).reshape(-1, 3),
    }


def _prefix_plan(conversations: list[tuple[list[int], list[int]]]) -> list[tuple[int, int]]:
    """For each (ids, labels) in layout order: (shared prefix length, start of the conversation holding
    it), or (0, 0) for one laid out whole; starts are flat indices into the one-row layout.

    A conversation shares at most the tokens before its first target's predecessor: the hidden state
    that predicts a target must be its own position's, and the prefix's last one is the first
    conversation's. It shares with the earlier whole conversation it has most in common with."""
    plan: list[tuple[int, int]] = []
    whole: list[tuple[int, list[int]]] = []  # (start, ids) of the conversations laid out in full
    end = 0
    for ids, labs in conversations:
        first_target = next((i for i, t in enumerate(labs) if i > 0 and t != IGNORE_INDEX), len(ids))
        limit = min(first_target - 1, len(ids) - 1)
        shared, source = 0, 0
        for start, other in whole:
            n = _common_prefix(ids, other, limit)
            if n > shared:
                shared, source = n, start
        if shared < MIN_SHARED_PREFIX:
            whole.append((end, ids))
            shared, source = 0, 0
        plan.append((shared, source))
        end += len(ids) - shared
    return plan


def prefix_saving(examples: list[TokenizedExample], per_micro_batch: int, seed: int = 0) -> float:
    """The share of these conversations' tokens that shared prefixes skip, laid out as `_shared` does
    in micro-batches of `per_micro_batch` conversations drawn at random: for the time-budget fit, before
    any row exists."""
    order = list(examples)
    random.Random(seed).shuffle(order)
    skipped = 0
    for start in range(0, len(order), per_micro_batch):
        batch = order[start : start + per_micro_batch]
        if any(len(ex) > MAX_DOCUMENT for ex in batch):
            continue  # collate does not share such a micro-batch
        skipped += sum(shared for shared, _ in _prefix_plan([(ex.input_ids, ex.labels) for ex in batch]))
    return skipped / max(1, sum(len(ex) for ex in examples))


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = 0
    for x, y in zip(a[:limit], b, strict=False):
        if x != y:
            break
        n += 1
    return n

"""Rows of tokens for training: several conversations packed per row, kept apart by position ids.

Each conversation in a row restarts its position ids at 0. transformers builds a block-diagonal causal
mask from those resets when no attention mask is passed (and the KV cache is off), so packed
conversations never attend to each other and their loss equals the unpacked loss. Padding at the end
of a row forms its own block and is never a target.

Packing is first-fit decreasing: on chat data it fills rows to ~95-99%, where padding each
conversation to the longest in its batch wastes a third or more of the compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from chattune.data.tokenize import IGNORE_INDEX, TokenizedExample


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


def collate(rows: list[Row], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad rows to the longest and precompute, on the host, which positions are scored.

    `select` holds flat indices into (batch * (length - 1)) of the positions whose next token is a
    target, and `targets` those tokens: the loss gathers exactly those hidden states, with no
    data-dependent indexing (and so no host-device sync) on the accelerator.
    """
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
    shifted = labels[:, 1:]
    select = (shifted != IGNORE_INDEX).flatten().nonzero().squeeze(1)
    return {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "select": select,
        "targets": shifted.flatten()[select],
    }

"""Optimizer state under FSDP, where each rank holds only its shard of it.

    state = full_optimizer_state(module, optimizer, sharded=True)    # every rank calls; rank 0 gets it all
    load_optimizer_state(module, optimizer, state, sharded=True)     # every rank calls, with the full state

A checkpoint written from rank 0 alone would hold rank 0's shard and nothing else, and resuming from it
would restart half the optimizer. Under FSDP the state is gathered (a collective, so every rank takes
part) into one full state keyed by parameter name, the same file a one-process run writes in spirit, and
spread back over the ranks on resume. DDP and a single process hold a full copy already and keep the
plain `optimizer.state_dict()` format (their resume is tested bitwise).
"""

from __future__ import annotations

from typing import Any

import torch


def full_optimizer_state(
    module: torch.nn.Module, optimizer: torch.optim.Optimizer, *, sharded: bool
) -> dict[str, Any]:
    if not sharded:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # to rank 0's CPU memory
    return get_optimizer_state_dict(module, optimizer, options=options)


def load_optimizer_state(
    module: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], *, sharded: bool
) -> None:
    if not sharded:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(
        module, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
    )

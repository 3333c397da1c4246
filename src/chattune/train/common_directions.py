"""Common directions: no weight change may act on what general text has in common.

    guard = CommonDirections.measure(model, encode, general_texts, energy=0.6)      # the base model
    ...; optimizer.step(); guard.restore()                                         # after each step
    guard = guard_for_run(cfg, model, tokenizer, resume_from, sharding, console)    # as `chattune train` does

Why: a linear layer's inputs on any text are dominated by a few directions shared by every token (a
large mean and a handful of outlier features). A weight change that acts on them shifts the layer's
output for every input alike, in the domain or not. Each decoder linear layer's input covariance is
measured on general conversations (the base model's own rehearsal answers, no system prompt); its top
principal directions, as many as hold `energy` of the trace (1-2% of the directions at 0.6), form U,
and after every optimizer step the weight's change from the base is taken off them:
W <- W - (W U - W0 U) U^T. Only U and W0 U are kept, so a step costs two thin matrix products.

An option, not recipe auto's choice: on the learnability benchmark (docs/recipe-measurements.md,
"Common directions") 0.6 kept 4.3 more points of the base model's general answers (80.3% against
76.0% over seven products) for 2.1 points of held-out accuracy, a trade like train.layer_lr_decay's;
0.4 kept 3.5 more over eighteen paired runs for 0.5 of held-out, but every behaviour floor was met on
8 of them against 11.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from chattune.config import RunConfig
from chattune.errors import ChattuneError

if TYPE_CHECKING:
    from rich.console import Console
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

FILE = "common_directions.safetensors"


@dataclass
class Anchor:
    """One linear layer: the input directions its change may not act on, and the base weight's image
    of them."""

    name: str
    weight: torch.Tensor  # the layer's parameter itself, changed in place
    directions: torch.Tensor  # in x k, orthonormal columns
    base_image: torch.Tensor  # out x k: the base weight times directions


class CommonDirections:
    def __init__(self, anchors: list[Anchor]) -> None:
        self.anchors = anchors

    @property
    def held_share(self) -> float:
        """Mean share of each layer's input directions held at the base model's."""
        shares = [a.directions.shape[1] / a.directions.shape[0] for a in self.anchors]
        return sum(shares) / max(len(shares), 1)

    @classmethod
    def measure(
        cls,
        model: torch.nn.Module,
        encode: Callable[[str], torch.Tensor],
        texts: Iterable[str],
        energy: float,
        batch_size: int = 16,
    ) -> CommonDirections:
        """Directions from the model's own inputs on `texts` (token ids from `encode`, one row each); the
        model must still be the base model."""
        linears = _decoder_linears(model)
        sums: dict[str, torch.Tensor] = {}
        real = torch.ones(0, dtype=torch.bool)  # the batch's positions that are text, not padding
        # q/k/v (and gate/up) read one tensor: its covariance is measured, and decomposed, once
        leader: dict[str, str] = {}
        first_reader: dict[int, str] = {}
        alive: list[torch.Tensor] = []  # held through the first text, so no two inputs share an id

        def hook(name: str) -> Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], None]:
            def accumulate(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
                x = inputs[0]
                if name not in leader:
                    leader[name] = first_reader.setdefault(id(x), name)
                    alive.append(x)
                if leader[name] == name:
                    flat = x[real].float()
                    # one batch's sum in float32 (twice as fast), the running sum in float64
                    product = (flat.T @ flat).double()
                    sums[name] = sums[name] + product if name in sums else product

            return accumulate

        handles = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        # the decoder without its output head: the head reads no anchored layer's input, and its
        # 49k-wide products were a tenth of the measurement
        body = getattr(model, "base_model", model)
        try:
            # batched, right-padded: a causal model's real tokens never see the padding after them, so
            # their inputs are the single text's (16x fewer float64 sums: 28 s -> 17 s on SmolLM2-135M)
            rows = sorted((encode(text)[0] for text in texts), key=len)
            with torch.inference_mode():
                for i in range(0, len(rows), batch_size):
                    batch = rows[i : i + batch_size]
                    ids = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True, padding_value=0)
                    real = torch.arange(ids.shape[1]) < torch.tensor([len(r) for r in batch])[:, None]
                    real = real.to(device)
                    body(input_ids=ids.to(device))
                    alive.clear()
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        if not sums:
            return cls([])
        directions = {name: _top_directions(c, energy) for name, c in sums.items()}
        anchors = []
        for name, m in linears.items():
            if name not in leader:  # never called on these texts (a kernel bypasses it): left free
                continue
            u = directions[leader[name]].to(device=m.weight.device, dtype=m.weight.dtype)
            anchors.append(Anchor(name, m.weight, u, (m.weight.detach() @ u).clone()))
        return cls(anchors)

    @torch.no_grad()
    def restore(self) -> None:
        """Take each weight's change from the base off the common directions."""
        for a in self.anchors:
            a.weight.sub_((a.weight @ a.directions - a.base_image) @ a.directions.T)

    def save(self, folder: Path) -> None:
        """Into a checkpoint: a resumed run cannot measure again, its weights are no longer the base's."""
        tensors = {}
        for a in self.anchors:
            tensors[f"{a.name}.directions"] = a.directions.clone()  # one file entry per layer, shared or not
            tensors[f"{a.name}.base_image"] = a.base_image
        from safetensors.torch import save_file

        save_file(tensors, str(folder / FILE))

    @classmethod
    def load(cls, model: torch.nn.Module, folder: Path) -> CommonDirections:
        from safetensors.torch import load_file

        tensors = load_file(str(folder / FILE))
        linears = _decoder_linears(model)
        anchors = []
        for name in sorted({key.rsplit(".", 1)[0] for key in tensors}):
            m = linears[name]
            u, image = tensors[f"{name}.directions"], tensors[f"{name}.base_image"]
            device, dtype = m.weight.device, m.weight.dtype
            anchors.append(Anchor(name, m.weight, u.to(device, dtype), image.to(device, dtype)))
        return cls(anchors)


def _decoder_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The trained linear layers inside decoder layers (not the output head, not adapters' own)."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layers." in f".{name}" and m.weight.requires_grad
    }


def _top_directions(covariance: torch.Tensor, energy: float) -> torch.Tensor:
    """The fewest principal directions holding `energy` of the trace (at least one). float32: the top
    eigenvectors, the only ones kept, are as exact as in float64 at a seventh of the time (1536 wide)."""
    values, vectors = torch.linalg.eigh(covariance.float())
    values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)
    k = int((values.cumsum(0) / values.sum() < energy).sum()) + 1
    top: torch.Tensor = vectors[:, : min(k, values.numel())].contiguous()
    return top


def guard_for_run(
    cfg: RunConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    resume_from: Path | None,
    sharding: str,
    console: Console | None,
) -> CommonDirections | None:
    """The guard of train.common_directions for a run: measured on the base model, read back on resume,
    or None where the option is off or cannot apply (an adapter, sharded weights)."""
    from chattune.train.rehearsal import general_answers, general_prompts

    if not cfg.train.common_directions:
        return None
    off = (
        f"{cfg.train.method} trains an adapter, not the weights"
        if cfg.train.method != "full"
        else f"{sharding} shards each weight across the processes"
        if sharding != "none"
        else None
    )
    if off:
        if console:
            console.print(f"[yellow]train.common_directions={cfg.train.common_directions:g} is off: {off}[/]")
        return None
    if resume_from is not None and (resume_from / FILE).is_file():
        if console:
            console.print(f"common directions: read back from {resume_from.name}")
        return CommonDirections.load(model, resume_from)
    if resume_from is not None:
        raise ChattuneError(
            f"{resume_from} has no {FILE} (it was saved without train.common_directions): resume with "
            "train.common_directions=0, or start again"
        )
    # the base model's own general answers, as rehearsal trains them; the requests alone where it
    # finished none (a tiny or odd model), so the general inputs are always measured
    answered = general_answers(cfg.model)
    conversations = (
        [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in answered]
        if answered
        else [[{"role": "user", "content": q}] for q in general_prompts()]
    )
    texts = [str(tokenizer.apply_chat_template(c, tokenize=False)) for c in conversations]

    def encode(text: str) -> torch.Tensor:
        return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])

    start = time.perf_counter()
    guard = CommonDirections.measure(model, encode, texts, cfg.train.common_directions)
    if not guard.anchors:
        if console:
            console.print(
                "[yellow]train.common_directions is off: the model has no linear layers in decoder layers[/]"
            )
        return None
    if console:
        console.print(
            f"common directions: {guard.held_share:.1%} of each layer's input directions keep the base "
            f"model's weights (measured on {len(texts)} general {'answers' if answered else 'requests'} "
            f"in {time.perf_counter() - start:.0f} s; train.common_directions)"
        )
    return guard

"""Helpers for the training tests: a packed batch of the tiny model's data, loss + gradients, and an axis
of its own for each text in hand-made embeddings."""

import contextlib

import torch

from chattune.data.conversation import read_jsonl
from chattune.data.tokenize import tokenize_conversations
from chattune.train.batching import collate, pack
from chattune.train.loss import SupervisedLoss
from tests.helpers import support_conversations, write_jsonl


def loss_and_grads(model, batch, chunk_size=512):
    loss, correct = SupervisedLoss(model, chunk_size=chunk_size)(**batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), correct, grads


def assert_same_loss_and_gradients(model, reference, batch, reference_batch=None):
    """The loss, correct count and every gradient of `model` on `batch` are `reference`'s (fp32 noise),
    on `reference_batch` when given (the same conversations laid out another way)."""
    loss_r, correct_r, grads_r = loss_and_grads(
        reference, batch if reference_batch is None else reference_batch
    )
    loss, correct, grads = loss_and_grads(model, batch)
    torch.testing.assert_close(loss, loss_r, rtol=1e-5, atol=1e-5)
    assert int(correct) == int(correct_r)
    for name, g in grads_r.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def packed_batch(tiny_tokenizer, tmp_path, rows=2, share_prefixes=False):
    convs = read_jsonl(write_jsonl(tmp_path / "t.jsonl", support_conversations(16)))
    examples, _ = tokenize_conversations(convs, tiny_tokenizer, max_length=128)
    return collate(pack(examples, 128)[:rows], tiny_tokenizer.pad_token_id, share_prefixes=share_prefixes)


def document_attention_model(model_dir):
    """The tiny model in fp32 with chattune's per-conversation attention in place of SDPA."""
    from transformers import AutoModelForCausalLM

    from chattune.train.cpu_kernels.attention import NAME, use_document_attention

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    assert use_document_attention(model)
    assert model.config._attn_implementation == NAME
    return model


MAX_TEXTS = 256
_axes: dict[str, int] = {}


def own_axis(text: str) -> int:
    """A dimension of its own for each text (not hash(): with Python's per-process hash seed two texts
    may share one, and requests meant to be unlike each other come out alike)."""
    axis = _axes.setdefault(text, len(_axes))
    assert axis < MAX_TEXTS
    return axis


class OneProcess:
    """What train/additions.py asks of accelerate's Accelerator, for one process."""

    is_main_process = True
    main_process_first = staticmethod(contextlib.nullcontext)

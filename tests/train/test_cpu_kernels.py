"""chattune's training kernels behind one switch: `train.cpu_kernels: auto|off` give the same loss and
gradients; untested architectures and unknown attention arguments never get the kernels' math."""

from __future__ import annotations

import pytest
import torch

from chattune.data.conversation import read_jsonl
from chattune.data.tokenize import tokenize_conversations
from chattune.errors import ChattuneError
from chattune.train import cpu_kernels
from chattune.train.batching import collate, pack
from chattune.train.loss import SupervisedLoss
from chattune.train.setup import build_model
from tests.helpers import support_conversations, tiny_run_config, write_jsonl


def _packed_batch(tokenizer, tmp_path):
    convs = read_jsonl(write_jsonl(tmp_path / "t.jsonl", support_conversations(16)))
    examples, _ = tokenize_conversations(convs, tokenizer, max_length=128)
    rows = pack(examples, 128)[:2]
    batch = collate(rows, tokenizer.pad_token_id)
    # packed rows: several conversations per row (position ids restart inside a row)
    assert int((batch["position_ids"][0] == 0).sum()) >= 2
    return batch


def _loss_and_grads(model, train_cfg, batch):
    loss_module = SupervisedLoss(model, own_head=cpu_kernels.kernels_apply(model, train_cfg))
    loss, correct = loss_module(**batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), int(correct), grads


@pytest.mark.parametrize("method", ["full", "lora"])
def test_auto_and_off_give_the_same_loss_and_gradients(method, tiny_model_dir, tiny_tokenizer, tmp_path):
    batch = _packed_batch(tiny_tokenizer, tmp_path)
    results = {}
    for switch in ("auto", "off"):
        cfg = tiny_run_config(
            tiny_model_dir,
            tmp_path / "t.jsonl",
            tmp_path,
            f"train.method={method}",
            "lora.dropout=0",
            f"train.cpu_kernels={switch}",
        )
        model, changed = build_model(cfg, None, torch.device("cpu"))
        if switch == "off":
            assert changed == []
        else:
            assert "per-conversation attention (1)" in changed and "fused output head and loss" in changed
            assert any(c.startswith("gated MLP") for c in changed)
            assert any(c.startswith("fused LoRA linear") for c in changed) == (method == "lora")
        results[switch] = _loss_and_grads(model, cfg.train, batch)
    (loss_a, correct_a, grads_a), (loss_o, correct_o, grads_o) = results["auto"], results["off"]
    assert loss_a.item() == pytest.approx(loss_o.item(), rel=1e-5)
    assert correct_a == correct_o
    assert grads_a.keys() == grads_o.keys() and len(grads_a) > 0
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_o[name], rtol=1e-4, atol=1e-6, msg=name)


def test_an_untested_architecture_trains_through_its_own_head(tiny_tokenizer, tmp_path):
    """Granite scales its logits inside its forward (logits_scaling): the loss must see that."""
    from transformers import GraniteConfig, GraniteForCausalLM

    torch.manual_seed(0)
    model = GraniteForCausalLM(
        GraniteConfig(
            vocab_size=len(tiny_tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            logits_scaling=4.0,
        )
    )
    cfg = tiny_run_config("unused", tmp_path / "t.jsonl", tmp_path)
    assert cpu_kernels.apply(model, cfg.train, torch.device("cpu")) == []
    assert not cpu_kernels.kernels_apply(model, cfg.train)
    batch = _packed_batch(tiny_tokenizer, tmp_path)
    loss, _ = SupervisedLoss(model, own_head=False)(**batch)
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
    picked = logits[:, :-1].reshape(-1, logits.shape[-1]).index_select(0, batch["select"])
    expected = torch.nn.functional.cross_entropy(picked.float(), batch["targets"], reduction="sum")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # chattune's own head would have skipped the scaling: a different loss
    wrong, _ = SupervisedLoss(model, own_head=True)(**batch)
    assert abs(wrong.item() - loss.item()) > 1e-3 * abs(loss.item())


def test_unknown_attention_arguments_stop_training(tiny_model_dir, tiny_tokenizer, tmp_path):
    from chattune.train.cpu_kernels.attention import attention_forward, plan_documents

    batch = _packed_batch(tiny_tokenizer, tmp_path)
    plan = plan_documents(batch["position_ids"])
    assert plan is not None
    q = torch.zeros(batch["input_ids"].shape[0], 4, batch["input_ids"].shape[1], 8)
    with pytest.raises(ChattuneError, match=r"does not know: attention_bias .*train.cpu_kernels=off"):
        attention_forward(torch.nn.Identity(), q, q, q, None, document_plan=plan, attention_bias=q)


def test_a_kernel_that_matches_nothing_warns(tiny_model_dir, tmp_path, monkeypatch):
    cfg = tiny_run_config(tiny_model_dir, tmp_path / "t.jsonl", tmp_path)
    monkeypatch.setattr(cpu_kernels, "use_silu_mul", lambda model: 0)  # as if transformers changed its MLP
    with pytest.warns(UserWarning, match="gated MLP kernel matched nothing"):
        _, changed = build_model(cfg, None, torch.device("cpu"))
    assert not any(c.startswith("gated MLP") for c in changed)

"""Common directions: after a step, no weight change acts on what general text has in common."""

import torch
from safetensors.torch import load_file

from chattune.train import run
from chattune.train.common_directions import FILE, CommonDirections
from chattune.train.rehearsal import general_answers, general_prompts
from tests.helpers import tiny_run_config as config

GENERAL = [
    "What is the capital of France? The capital of France is Paris.",
    "How many legs does a spider have? A spider has eight legs.",
    "Name a primary colour. Red is a primary colour.",
    "What is 3 plus 4? 3 plus 4 is 7.",
    "Translate hello into Spanish. Hello in Spanish is hola.",
    "Who wrote Hamlet? William Shakespeare wrote Hamlet.",
]


def tiny_model(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def encoder(tokenizer):
    return lambda text: torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


def layer_outputs(model, tokenizer, texts):
    """Every decoder linear layer's output on `texts`, concatenated over tokens."""
    outputs, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and ".layers." in name:
            handles.append(
                m.register_forward_hook(lambda _m, _i, out, n=name: outputs.setdefault(n, []).append(out))
            )
    with torch.no_grad():
        for text in texts:
            model(input_ids=encoder(tokenizer)(text))
    for h in handles:
        h.remove()
    return {n: torch.cat([o.reshape(-1, o.shape[-1]) for o in outs]) for n, outs in outputs.items()}


def perturb(model, scale=0.05, seed=0):
    """What an optimizer step might do: a random change to every trained weight."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_restore_takes_each_change_off_the_common_directions_and_keeps_the_rest(
    tiny_model_dir, tiny_tokenizer
):
    model = tiny_model(tiny_model_dir)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    guard = CommonDirections.measure(model, encoder(tiny_tokenizer), GENERAL, energy=0.6)
    # every linear layer of both decoder layers: q k v o gate up down
    assert len(guard.anchors) == 14
    perturb(model)
    changes = {a.name: (a.weight - base[f"{a.name}.weight"]).detach().clone() for a in guard.anchors}
    guard.restore()
    for a in guard.anchors:
        u = a.directions
        torch.testing.assert_close(u.T @ u, torch.eye(u.shape[1]), atol=1e-5, rtol=0)
        change = a.weight.detach() - base[f"{a.name}.weight"]
        torch.testing.assert_close(change @ u, torch.zeros(change.shape[0], u.shape[1]), atol=1e-5, rtol=0)
        # the change off those directions is left as the step made it
        free = torch.eye(u.shape[0]) - u @ u.T
        torch.testing.assert_close(change @ free, changes[a.name] @ free, atol=1e-5, rtol=1e-5)


def test_batched_measurement_matches_one_text_at_a_time(tiny_model_dir, tiny_tokenizer):
    """Texts are measured in right-padded batches; the padding must not reach the covariances."""
    model = tiny_model(tiny_model_dir)
    texts = [*GENERAL, "Hi.", GENERAL[0] + " " + GENERAL[1]]  # lengths far apart: much padding
    one = CommonDirections.measure(model, encoder(tiny_tokenizer), texts, energy=0.9, batch_size=1)
    batched = CommonDirections.measure(model, encoder(tiny_tokenizer), texts, energy=0.9, batch_size=4)
    assert [a.name for a in one.anchors] == [a.name for a in batched.anchors]
    for a, b in zip(one.anchors, batched.anchors, strict=True):
        assert a.directions.shape == b.directions.shape
        # the same subspace (eigenvectors may come back in another basis or sign)
        torch.testing.assert_close(
            a.directions @ a.directions.T, b.directions @ b.directions.T, atol=1e-4, rtol=0
        )


def test_general_inputs_see_nearly_the_base_layers_after_a_step(tiny_model_dir, tiny_tokenizer):
    model = tiny_model(tiny_model_dir)
    before = layer_outputs(model, tiny_tokenizer, GENERAL)
    guard = CommonDirections.measure(model, encoder(tiny_tokenizer), GENERAL, energy=0.99)
    changes = {n: p.detach().clone() for n, p in model.named_parameters()}
    perturb(model)
    with torch.no_grad():  # only the linear layers' weights change, so each layer's input is the base's
        for n, p in model.named_parameters():
            if "layers" not in n or "norm" in n:
                p.copy_(changes[n])
    free = layer_outputs(model, tiny_tokenizer, GENERAL)
    guard.restore()
    held = layer_outputs(model, tiny_tokenizer, GENERAL)
    for name in before:
        moved_free = (free[name] - before[name]).norm()
        moved_held = (held[name] - before[name]).norm()
        # the inputs' first layer is exact; deeper ones see inputs moved by the residue below them
        assert moved_held < 0.35 * moved_free, name


def test_layers_reading_one_input_share_its_directions(tiny_model_dir, tiny_tokenizer):
    guard = CommonDirections.measure(tiny_model(tiny_model_dir), encoder(tiny_tokenizer), GENERAL, energy=0.6)
    # "model.layers.0.self_attn.q_proj" -> ("0", "q_proj")
    by_layer = {(a.name.split(".")[2], a.name.rsplit(".", 1)[-1]): a.directions for a in guard.anchors}
    for layer in ("0", "1"):
        assert torch.equal(by_layer[layer, "q_proj"], by_layer[layer, "k_proj"])
        assert torch.equal(by_layer[layer, "q_proj"], by_layer[layer, "v_proj"])
        assert torch.equal(by_layer[layer, "gate_proj"], by_layer[layer, "up_proj"])
        # o_proj reads the attention's output and down_proj the MLP's: other inputs, other directions
        q, o = by_layer[layer, "q_proj"], by_layer[layer, "o_proj"]
        assert q.shape != o.shape or not torch.allclose(q, o)
        assert by_layer[layer, "down_proj"].shape[0] == 64  # the MLP's width, not the hidden size


def test_more_energy_holds_more_directions(tiny_model_dir, tiny_tokenizer):
    model = tiny_model(tiny_model_dir)
    shares = [
        CommonDirections.measure(model, encoder(tiny_tokenizer), GENERAL, energy=e).held_share
        for e in (0.3, 0.6, 0.9)
    ]
    assert 0 < shares[0] <= shares[1] < shares[2] < 1


def test_a_saved_guard_loads_back_on_another_copy_of_the_model(tiny_model_dir, tiny_tokenizer, tmp_path):
    model = tiny_model(tiny_model_dir)
    guard = CommonDirections.measure(model, encoder(tiny_tokenizer), GENERAL, energy=0.6)
    guard.save(tmp_path)
    other = tiny_model(tiny_model_dir)
    perturb(other)  # a checkpoint's weights are not the base's: the file, not a new measure, holds them
    loaded = CommonDirections.load(other, tmp_path)
    assert [a.name for a in loaded.anchors] == sorted(a.name for a in guard.anchors)
    mine = {a.name: a for a in guard.anchors}
    for a in loaded.anchors:
        assert torch.equal(a.directions, mine[a.name].directions)
        assert torch.equal(a.base_image, mine[a.name].base_image)
        assert a.weight is dict(other.named_parameters())[f"{a.name}.weight"]


def test_a_run_with_common_directions_changes_no_weight_on_them(
    tiny_model_dir, tiny_tokenizer, train_file, tmp_path
):
    cfg = config(tiny_model_dir, train_file, tmp_path, "train.common_directions=0.6", "output.save_every=6")
    run(cfg)
    final = load_file(str(cfg.run_dir / "final" / "model.safetensors"))
    base = tiny_model(tiny_model_dir)
    # measured again as the run did: the tiny model finishes none of its general answers (cached by
    # rehearsal), so the general requests alone
    assert general_answers(cfg.model) == []
    texts = [
        tiny_tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False)
        for q in general_prompts()
    ]
    guard = CommonDirections.measure(base, encoder(tiny_tokenizer), texts, energy=0.6)
    moved = 0.0
    for a in guard.anchors:
        change = final[f"{a.name}.weight"] - a.weight.detach()
        assert change.abs().max() > 0, a.name  # it trained
        torch.testing.assert_close(
            change @ a.directions, torch.zeros(change.shape[0], a.directions.shape[1]), atol=2e-5, rtol=0
        )
        moved += float(change.norm())
    assert moved > 0
    # checkpoints carry the guard, so a resumed run holds the same directions
    checkpoint = sorted((cfg.run_dir / "checkpoints").glob("step-*"))[-1]
    assert (checkpoint / FILE).is_file()


def test_lora_says_common_directions_are_off(tiny_model_dir, train_file, tmp_path):
    from rich.console import Console

    console = Console(record=True, width=200)
    cfg = config(
        tiny_model_dir,
        train_file,
        tmp_path,
        "train.method=lora",
        "train.common_directions=0.6",
        "train.max_steps=2",
    )
    run(cfg, console=console)
    assert (
        "train.common_directions=0.6 is off: lora trains an adapter, not the weights" in console.export_text()
    )

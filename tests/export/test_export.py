"""`chattune export`: what it writes loads in transformers, llama.cpp's format and Ollama's, with a card."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chattune.cli import app
from chattune.config.export import ExportConfig
from chattune.export.run import export

PROMPTS = ["hello how can I help", "the kettle needs descaling", "which model do you have?"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir):
    """A LoRA run as training leaves it with merge_lora=false: only final/adapter, a non-zero adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chattune.config import load_config

    run = tmp_path_factory.mktemp("run") / "lora"
    adapter = run / "final" / "adapter"
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    )
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # B starts at zero; a trained adapter does not
    peft.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(adapter)
    cfg = load_config(None, [f"model.name={tiny_model_dir}", "train.method=lora", "output.merge_lora=false"])
    (run / "final" / "chattune.yaml").write_text(cfg.to_yaml())
    (run / "final" / "chat_defaults.json").write_text(json.dumps({"system_prompt": "you are kit"}))
    return run, peft.eval()


def _logits(model, tokenizer, text):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits[0]


def test_hf_export_merges_the_adapter_and_loads_in_plain_transformers(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    run, peft = lora_run
    result = export(run, ExportConfig(format="hf", out=tmp_path / "hf"))

    names = {p.name for p in result.files}
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md"} <= names
    assert not any("adapter" in n for n in names)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    for text in PROMPTS:  # the merged weights compute what base + adapter computed
        torch.testing.assert_close(_logits(model, tok, text), _logits(peft, tok, text), atol=1e-4, rtol=1e-4)
    gen = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert tok.convert_tokens_to_ids("<|im_end|>") in gen["eos_token_id"]

    pipe = pipeline("text-generation", model=str(tmp_path / "hf"), device="cpu")
    out = pipe([{"role": "user", "content": "hello"}], max_new_tokens=5, do_sample=False)
    assert out[0]["generated_text"][-1]["role"] == "assistant"


def test_model_card_has_hub_front_matter_and_says_what_is_missing(lora_run, tmp_path):
    import yaml

    run, _ = lora_run
    export(run, ExportConfig(format="hf", quants=["bf16"], out=tmp_path / "hf"))
    card = (tmp_path / "hf" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["pipeline_tag"] == "text-generation"
    assert {"base_model", "tags", "license"} <= set(front)
    assert "lora" in front["tags"]
    for heading in ("## Base model", "## Training data", "## Training", "## Evaluation", "## Intended use"):
        assert heading in card
    assert "Not evaluated" in card and "you are kit" in card


def test_gguf_f16_reads_back_in_transformers_with_the_same_tokens_and_logits(lora_run, tmp_path):
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, peft = lora_run
    export(run, ExportConfig(format="gguf", quants=["f16", "q8_0", "q4_1"], out=tmp_path / "g"))
    files = sorted(p.name for p in (tmp_path / "g").glob("*.gguf"))
    assert files == ["lora-f16.gguf", "lora-q4_1.gguf", "lora-q8_0.gguf"]

    reader = gguf.GGUFReader(tmp_path / "g" / "lora-f16.gguf")
    assert "<|im_start|>" in reader.fields["tokenizer.chat_template"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[reader.fields["tokenizer.ggml.eot_token_id"].contents()] == "<|im_end|>"

    ref_tok = AutoTokenizer.from_pretrained(run / "final" / "adapter")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "g", gguf_file="lora-f16.gguf")
    tok = AutoTokenizer.from_pretrained(tmp_path / "g", gguf_file="lora-f16.gguf")
    for text in PROMPTS:
        assert tok(text).input_ids == ref_tok(text).input_ids
        ours, back = _logits(peft, ref_tok, text), _logits(model, tok, text)
        torch.testing.assert_close(back, ours, atol=2e-2, rtol=0)  # f16 rounding only
        assert torch.equal(back.argmax(-1), ours.argmax(-1))

    q8 = AutoModelForCausalLM.from_pretrained(tmp_path / "g", gguf_file="lora-q8_0.gguf")
    err = (_logits(q8, tok, PROMPTS[0]) - _logits(peft, ref_tok, PROMPTS[0])).abs().max()
    assert err < 0.1, err


def test_ollama_export_writes_a_modelfile_with_template_stops_and_system(lora_run, tmp_path):
    run, _ = lora_run
    export(run, ExportConfig(format="ollama", quants=["q8_0"], out=tmp_path / "o"))
    text = (tmp_path / "o" / "Modelfile").read_text()
    assert text.startswith("FROM ./lora-q8_0.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert 'SYSTEM """you are kit"""' in text
    assert '{{ if eq .Role "system" }}<|im_start|>system\n{{ .Content }}<|im_end|>\n' in text
    assert text.split('TEMPLATE """')[1].split('"""')[0].endswith("{{ end }}{{ end }}<|im_start|>assistant\n")


def test_the_ollama_template_shape_renders_like_the_jinja_template_with_a_default_system():
    from transformers import PreTrainedTokenizerFast

    from chattune.export.ollama import chat_shape, go_template
    from tests.helpers import build_tiny_tokenizer

    tok: PreTrainedTokenizerFast = build_tiny_tokenizer()
    tok.chat_template = (  # SmolLM2's habit: a default system block when the conversation has none
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nDefault{{ '{{x}}' }}<|im_end|>\n{% endif %}"
        + tok.chat_template
    )
    shape = chat_shape(tok)
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert shape.render(msgs) == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    go = go_template(shape)
    assert go.startswith(
        '{{- if or (not .Messages) (ne (index .Messages 0).Role "system") }}{{ "<|im_start|>'
    )


def test_bad_options_exit_2_with_one_line(lora_run):
    run, _ = lora_run
    result = CliRunner().invoke(app, ["export", str(run), "--format", "hf", "--quant", "q8_0"])
    assert result.exit_code == 2
    assert "--format hf takes one of f32, f16, bf16" in result.output
    result = CliRunner().invoke(
        app, ["export", str(run), "--format", "ollama", "--quant", "f16", "--quant", "q8_0"]
    )
    assert result.exit_code == 2 and "takes one --quant" in result.output


def test_4bit_tensors_quantise_and_norms_stay_float32():
    import gguf

    from chattune.export.gguf_file import _quantize

    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 64)).astype(np.float32)
    data, qtype = _quantize(w, "blk.0.ffn_up.weight", "q4_1")
    assert qtype == gguf.GGMLQuantizationType.Q4_1
    back = gguf.quants.dequantize(data, qtype)
    assert np.abs(back - w).mean() < 0.15  # 4-bit: ~0.1 mean error on unit-variance weights
    assert _quantize(w, "token_embd.weight", "q4_1")[1] == gguf.GGMLQuantizationType.Q8_0
    assert _quantize(w[0], "blk.0.attn_norm.weight", "q4_1")[1] == gguf.GGMLQuantizationType.F32

"""GPU paths: run where CUDA exists (`python -m pytest -m gpu`), skipped elsewhere. The CPU-side
contract (a clear error for QLoRA without CUDA) is tested everywhere."""

import json

import pytest
import torch

from chattune.errors import ChattuneError
from chattune.train import run
from tests.helpers import tiny_run_config as config

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")
def test_qlora_without_cuda_is_a_clear_error(tiny_model_dir, train_file, tmp_path):
    with pytest.raises(ChattuneError, match="qlora needs a CUDA GPU"):
        run(config(tiny_model_dir, train_file, tmp_path, "train.method=qlora"))


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_gpu_training_lowers_the_loss(method, tiny_model_dir, train_file, tmp_path):
    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    cfg = config(
        tiny_model_dir,
        train_file,
        tmp_path,
        f"train.method={method}",
        "train.precision=auto",
        f"output.name={method}",
    )
    result = run(cfg)
    records = [json.loads(x) for x in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r["val_loss"] for r in records if r["split"] == "eval"]
    assert result.steps == 12 and evals[-1] < evals[0]
    # memory monitoring: the GPU's peak is logged beside the process's RSS at every log step
    train = [r for r in records if r["split"] == "train"]
    assert train and all(r["cuda_max_allocated_gb"] > 0 for r in train)


@pytest.mark.gpu
@cuda
def test_qlora_export_merges_into_the_dequantised_base_and_computes_what_the_adapter_did(
    tiny_model_dir, train_file, tmp_path
):
    """The exported full model must compute what the trained adapter computed on the NF4 base it was
    trained against; the reference here is peft over that 4-bit base, computing in float32."""
    pytest.importorskip("bitsandbytes")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from chattune.config.export import ExportConfig
    from chattune.export.run import export
    from chattune.model import find_model_dir

    cfg = config(tiny_model_dir, train_file, tmp_path, "train.method=qlora", "train.precision=auto")
    run(cfg)
    adapter, _ = find_model_dir(cfg.run_dir)
    assert adapter == cfg.run_dir / "final" / "adapter"  # the best weights, not the newest checkpoint

    export(cfg.run_dir, ExportConfig(format="hf", out=tmp_path / "hf"))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    base = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, quantization_config=quant, device_map={"": 0}, dtype=torch.float32
    )
    reference = PeftModel.from_pretrained(base, str(adapter)).eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    torch.backends.cuda.matmul.allow_tf32 = False
    for text in ["hello how can I help", "the kettle needs descaling", "which model do you have?"]:
        ids = tok(text, return_tensors="pt")
        with torch.no_grad():
            ours = merged(**ids).logits[0]
            theirs = reference(**{k: v.cuda() for k, v in ids.items()}).logits[0].cpu().float()
        torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=1e-3)

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
    evals = [
        json.loads(x)["val_loss"]
        for x in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()
        if '"eval"' in x
    ]
    assert result.steps == 12 and evals[-1] < evals[0]

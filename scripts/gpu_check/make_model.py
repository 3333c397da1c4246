"""SmolLM2-135M's architecture and tokenizer with random weights (the real weights are too large to
carry to the device machine): same FLOPs and memory per token, so fine for speed and memory figures."""

import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

src, out = Path(sys.argv[1]), Path(sys.argv[2])
overrides = dict(kv.split("=") for kv in sys.argv[3:])  # e.g. num_hidden_layers=2 for a local smoke test
config = AutoConfig.from_pretrained(src, **{k: int(v) for k, v in overrides.items()})
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
out.mkdir(parents=True, exist_ok=True)
model.save_pretrained(out)
for f in src.iterdir():
    if f.name != "config.json":
        shutil.copy(f, out / f.name)
print(f"{out}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")

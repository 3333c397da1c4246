#!/bin/bash
# Prepared GPU checks for a lent CUDA machine that has torch but not chattune's other dependencies.
# Before the call, here: .whl/ holds cp312 wheels of what that machine lacks (pydantic, datasets, trl,
# peft, bitsandbytes, gguf, fastapi, ...; see the session notes of 2026-12-04), and .gpu/smol holds the
# embedded model's config.json and tokenizer files without weights (make_model.py gives it random weights
# there: the real GGUF is over what one call may carry). Both folders are git-ignored and carried.
# GPU checks on the device machine: one call, stages independent, each under its own timeout.
cd "$(dirname "$0")/../.."
T0=$(date +%s)
stage() { echo; echo "=== $1 (t=$(( $(date +%s) - T0 ))s)"; }
stage install
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING | tail -3
export PYTHONPATH=/tmp/site:$PWD/src:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "
import importlib
for m in ['torch','transformers','peft','accelerate','bitsandbytes','trl','datasets','pyarrow','liger_kernel','pydantic','triton']:
    try: print(m, importlib.import_module(m).__version__)
    except Exception as e: print(m, 'FAILED', repr(e)[:200])
"
stage model
python3 scripts/gpu_check/make_model.py .gpu/smol /tmp/smol 2>&1 | grep -v shards
stage pytest-gpu
timeout 140 python3 -m pytest -m gpu tests/gpu -q -p no:cacheprovider --timeout 120 2>&1 | tail -25
stage doctor-vs-measured
python3 -m chattune doctor examples/quickstart.yaml model.name=/tmp/smol 2>&1 | tail -9
timeout 90 python3 -m chattune train examples/quickstart.yaml model.name=/tmp/smol output.dir=/tmp/runs output.name=qs train.max_steps=30 eval.every_steps=null 2>&1 | grep -v "^\s*$" | tail -12
python3 -c "
import json
r=[json.loads(l) for l in open('/tmp/runs/qs/metrics.jsonl')]
t=[x for x in r if x['split']=='train']
print('measured: cuda_max_allocated_gb', max(x.get('cuda_max_allocated_gb',0) for x in t), 'peak_rss_gb', max(x['peak_rss_gb'] for x in t), 'tok/s', t[-1].get('tokens_per_second'))
"
grep -E "batch_size|max_length|precision|gradient_accumulation|row_tokens|method" /tmp/runs/qs/config.yaml | head -12
stage bench-full
timeout 220 python3 bench/bench_train.py --gpu --model /tmp/smol --steps 30 --repeats 1 --trl padded,padding_free,packed --json $OUT/bench_full.json 2>&1 | tee $OUT/bench_full.log | tail -28
stage bench-lora
timeout 80 python3 bench/bench_train.py --gpu --lora --model /tmp/smol --steps 30 --repeats 1 --trl padding_free --json $OUT/bench_lora.json 2>&1 | tee $OUT/bench_lora.log | tail -16
stage end

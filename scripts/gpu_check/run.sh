#!/bin/bash
# GPU checks: the GPU tests, doctor against a measured run, bench_train --gpu (full and LoRA).
source "$(dirname "$0")/common.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "
import importlib
for m in ['torch','transformers','peft','accelerate','bitsandbytes','trl','datasets','pyarrow','liger_kernel','pydantic','triton']:
    try: print(m, importlib.import_module(m).__version__)
    except Exception as e: print(m, 'FAILED', repr(e)[:200])
"
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
bench_stages

